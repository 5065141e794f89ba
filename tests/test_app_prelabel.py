"""Pre-label job runner with a stand-in predictor (the real one is exercised in test_app_client)."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image

from app.annotate.prelabel import JobRunner, PrelabelSettings
from app.annotate.store import Store
from app.hub import ModelHub, ModelSpec, PredictorCache
from ovformer.inference.predictor import ClipProgress, PredictOptions, VideoPredictor
from ovformer.text_embeddings import TextEmbeddings
from ovformer.ytvis.rle import encode_mask

H, W, N = 16, 20, 8


class FakePredictor:
    """A VideoPredictor: embed_vocabulary, then predict(source, text, options, num_frames, on_clip)."""

    weights_label, untrained = "fake (UNTRAINED)", True

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.gate = gate
        self.calls: list[PredictOptions] = []

    @property
    def defaults(self) -> PredictOptions:
        return PredictOptions(min_size=800, max_size=1333, clip_length=5, top_k=50, preview_k=10)

    @property
    def default_text(self) -> TextEmbeddings | None:
        return None

    def embed_vocabulary(self, vocabulary, templates=None) -> TextEmbeddings:
        return TextEmbeddings(vocabulary, torch.zeros(len(vocabulary), 4), ("templates",) * len(vocabulary))

    def predict(self, source, text=None, options=None, *, num_frames=None, on_clip=None):
        self.calls.append(options)
        clip = options.clip_length
        frames = []
        m = np.zeros((H, W), bool)
        m[2:6, 3:9] = True
        for f in source:
            frames.append(f)
            if len(frames) % clip == 0:
                on_clip(ClipProgress(frames_done=len(frames), total_frames=num_frames, elapsed_s=0.1, eta_s=1.0,
                                     clip_index=0, frame_start=len(frames) - clip,
                                     preview=[(0, 1, 0.9, np.stack([m] * clip))]))
                if self.gate is not None:
                    self.gate.wait(5)
        seg = encode_mask(m)
        tracks = [SimpleNamespace(query=0, label=1, score=0.9, alternatives=[(1, 0.9), (0, 0.3), (2, 0.1)],
                                  segmentations=[seg] * len(frames)),
                  SimpleNamespace(query=3, label=0, score=0.05, alternatives=[(0, 0.05)],
                                  segmentations=[seg] * len(frames))]
        return SimpleNamespace(tracks=tracks, height=H, width=W, weights_label=self.weights_label, untrained=True,
                               num_frames=len(frames))


def hub_of(predictor_factory) -> ModelHub:
    return ModelHub(ModelSpec("fake", untrained=True), PredictorCache(predictor_factory))


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
    fake = FakePredictor(gate)
    assert isinstance(fake, VideoPredictor)  # the fake satisfies the protocol the app is typed with
    hub = hub_of(lambda spec: fake)
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
    # the page's settings travel with the call; the predictor's own defaults are untouched
    (options,) = fake.calls
    assert (options.min_size, options.clip_length, options.top_k, options.preview_k) == (360, 2, 15, 5)
    assert fake.defaults.min_size == 800


def test_frame_rate_rule_and_held_masks(tmp_path):
    """fps 3 on the 10 fps stored video keeps frames 0, 4, 7 (the first at or after each 1/3 s
    tick: 0, 0.33, 0.67 s); each mask is held until the next kept frame."""
    store, vid = make_video(tmp_path)
    fake = FakePredictor()
    job = JobRunner(store, hub_of(lambda spec: fake)).start(vid, ["a", "b"], PrelabelSettings(clip_length=1, fps=3))
    assert job.total == 3
    assert wait(job).state == "done", job.message
    (t,) = store.tracks(vid)
    assert t.frames == list(range(N))  # 0-3 from frame 0, 4-6 from frame 4, 7 from frame 7


def test_cancel_and_errors_change_nothing(tmp_path):
    store, vid = make_video(tmp_path)
    gate = threading.Event()
    runner = JobRunner(store, hub_of(lambda spec: FakePredictor(gate)))
    job = runner.start(vid, ["a"], PrelabelSettings(clip_length=2))
    assert runner.start(vid, ["a"], PrelabelSettings()) is job  # a second click joins the running job
    job.cancel.set()
    gate.set()
    assert wait(job).state == "cancelled" and store.tracks(vid) == []

    def broken(spec):
        raise FileNotFoundError("weights not found: put them in ~/.cache")
    job = JobRunner(store, hub_of(broken)).start(vid, ["a"], PrelabelSettings())
    assert wait(job).state == "error" and "weights not found" in job.message
