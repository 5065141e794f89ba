"""Pre-label job runner with a stand-in predictor (the real one is exercised in test_app_client)."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image

from app import masks as M
from app.prelabel import JobRunner, ModelSpec, PredictorHub, PrelabelSettings
from app.store import Store
from ovformer.text_embeddings import TextEmbeddings

H, W, N = 16, 20, 8


class FakePredictor:
    """Follows the predictor contract: set_vocabulary, predict(source, num_frames, on_clip)."""

    weights_label, untrained = "fake (UNTRAINED)", True

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.gate = gate
        self.clip_length, self.min_size, self.top_k = 2, 0, 0

    def set_vocabulary(self, vocabulary):
        self.vocab = vocabulary.names
        return TextEmbeddings(vocabulary, torch.zeros(len(vocabulary), 4),
                              ("templates",) * len(vocabulary))

    def predict(self, source, num_frames=None, on_clip=None):
        frames = []
        m = np.zeros((H, W), bool)
        m[2:6, 3:9] = True
        for f in source:
            frames.append(f)
            if len(frames) % self.clip_length == 0:
                on_clip(SimpleNamespace(frames_done=len(frames), total_frames=num_frames, elapsed_s=0.1,
                                        eta_s=1.0, clip_index=0, frame_start=len(frames) - 2,
                                        preview=[(0, 1, 0.9, np.stack([m, m]))]))
                if self.gate is not None:
                    self.gate.wait(5)
        seg = {"size": [H, W], "counts": M.encode(m)}
        tracks = [SimpleNamespace(query=0, label=1, score=0.9, alternatives=[(1, 0.9), (0, 0.3), (2, 0.1)],
                                  segmentations=[seg] * len(frames)),
                  SimpleNamespace(query=3, label=0, score=0.05, alternatives=[(0, 0.05)],
                                  segmentations=[seg] * len(frames))]
        return SimpleNamespace(tracks=tracks, height=H, width=W, weights_label=self.weights_label, untrained=True)


def make_video(tmp_path):
    store = Store(tmp_path)
    pid = store.create_project("p", ["person", "bicycle", "car"])
    staged = store.reserve_video_dir()
    for i in range(N):
        Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(staged / f"{i:05d}.jpg")
    return store, store.add_video(pid, "v", staged, W, H, N, 10.0)


def wait(job, timeout=20):
    t = time.time()
    while not job.finished and time.time() - t < timeout:
        time.sleep(0.02)
    return job


def test_job_previews_then_commits_one_track_per_query(tmp_path):
    store, vid = make_video(tmp_path)
    gate = threading.Event()
    hub = PredictorHub(ModelSpec("fake", untrained=True), lambda spec: FakePredictor(gate))
    runner = JobRunner(store, hub)
    # frame rate 5 on a 10 fps video: every 2nd frame is predicted, masks held on the frame after
    job = runner.start(vid, ["person", "bicycle", "car"], PrelabelSettings(clip_length=2, fps=5, score_threshold=0.1, max_tracks=5))
    t = time.time()
    while job.preview_frame is None and time.time() - t < 20:
        time.sleep(0.02)
    assert job.preview and job.preview[0][1] == "bicycle" and not job.finished  # preview before the end
    assert store.tracks(vid) == []
    gate.set()
    wait(job)
    assert job.state == "done", job.message
    (t,) = store.tracks(vid)  # the 0.05 track is under the threshold
    assert t.label == "bicycle" and t.alternatives == [("person", 0.3), ("car", 0.1)]
    assert t.frames == list(range(N))
    assert "UNTRAINED" in hub.banner() and "UNTRAINED" in store.video(vid).weights_label


def test_cancel_and_errors_change_nothing(tmp_path):
    store, vid = make_video(tmp_path)
    gate = threading.Event()
    runner = JobRunner(store, PredictorHub(ModelSpec("fake"), lambda spec: FakePredictor(gate)))
    job = runner.start(vid, ["a"], PrelabelSettings(clip_length=2))
    assert runner.start(vid, ["a"], PrelabelSettings()) is job  # a second click joins the running job
    job.cancel.set()
    gate.set()
    assert wait(job).state == "cancelled" and store.tracks(vid) == []

    def broken(spec):
        raise FileNotFoundError("weights not found: put them in ~/.cache")
    job = JobRunner(store, PredictorHub(ModelSpec("x"), broken)).start(vid, ["a"], PrelabelSettings())
    assert wait(job).state == "error" and "weights not found" in job.message
