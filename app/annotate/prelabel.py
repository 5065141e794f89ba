"""Pre-labelling a video with OVFormer in a background thread, with progress and live previews.

The page never waits on the model: :class:`JobRunner` starts a thread and the UI polls the
:class:`Job` (progress, ETA, the latest clip's provisional masks). Results are committed as one
undoable step ("prelabel") when the whole video is done, so a crash mid-run loses only the run.

The model sees the stored frames through :func:`ovformer.data.video.open_video` with the
frame-rate the page asks for, so the frames it skips follow the same rule as the import's. Its
vocabulary and settings are arguments of the one ``predict`` call: the shared predictor is
never changed.
"""
from __future__ import annotations

import math
import os
import shutil
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from ovformer.data.video import open_video
from ovformer.vocab import Vocabulary

from ..hub import ModelHub
from .edits import Editor
from .store import Store, VideoRow
from .ytvis_import import to_counts

if TYPE_CHECKING:
    from ovformer.inference.predictor import ClipProgress, VideoPrediction


@dataclass
class PrelabelSettings:
    """The knobs shown in the page."""

    min_size: int = 360          # shorter side the model sees (resolution)
    clip_length: int = 5         # frames per clip of the semi-online predictor
    fps: float = 0.0             # frames per second to run the model on; 0 = every stored frame
    score_threshold: float = 0.1  # tracks below this video-level score are dropped
    max_tracks: int = 20         # at most this many tracks, best first

    #: (low, high) of each knob: what the page's sliders allow, enforced for API callers too
    BOUNDS = {"min_size": (96, 1024), "clip_length": (1, 16), "fps": (0.0, 60.0),
              "score_threshold": (0.0, 1.0), "max_tracks": (1, 100)}

    @classmethod
    def from_page(cls, min_size: Any, clip_length: Any, fps: Any, score_threshold: Any,
                  max_tracks: Any) -> PrelabelSettings:
        """The page's values, each checked against :attr:`BOUNDS` (ValueError says which)."""
        raw = {"min_size": min_size, "clip_length": clip_length, "fps": fps or 0,
               "score_threshold": score_threshold, "max_tracks": max_tracks}
        out: dict[str, Any] = {}
        for name, value in raw.items():
            lo, hi = cls.BOUNDS[name]
            try:
                x = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"{name.replace('_', ' ')} must be a number") from None
            if not math.isfinite(x) or not lo <= x <= hi:
                raise ValueError(f"{name.replace('_', ' ')} must be between {lo} and {hi} (got {value})")
            out[name] = int(x) if isinstance(lo, int) else x
        return cls(**out)


@dataclass
class Job:
    """State of one pre-label run, read by the polling UI."""

    video_id: int
    total: int
    state: str = "starting"  # starting | running | done | error | cancelled
    frames_done: int = 0
    elapsed_s: float = 0.0
    eta_s: float | None = None
    message: str = ""
    preview_frame: int | None = None
    preview: list[tuple[int, str, float, np.ndarray]] = field(default_factory=list)  # (query, label, score, mask)
    preview_version: int = 0
    track_ids: list[int] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "error", "cancelled")


class Cancelled(Exception):
    pass


def sweep_spills(root: Path, at_start: bool = False) -> int:
    """Remove spill folders that no running job writes; returns how many. A folder is named
    ``<pid>-...`` by the process that writes it: another live process's are kept, and so are this
    process's own unless ``at_start`` (no job of ours runs yet: a same-pid folder is a killed
    app's, e.g. PID 1 in a restarted container)."""
    removed = 0
    if not root.is_dir():
        return 0
    for d in root.iterdir():
        pid = d.name.split("-", 1)[0]
        if pid.isdigit() and (int(pid) == os.getpid() and not at_start
                              or int(pid) != os.getpid() and pid_alive(int(pid))):
            continue
        shutil.rmtree(d, ignore_errors=True)
        removed += 1
    return removed


def pid_alive(pid: int) -> bool:
    """Whether a process of that id runs (whoever's: one we may not signal runs too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobRunner:
    """Starts pre-label threads; one job per video at a time.

    The model's per-clip masks spill to ``<home>/spill/<pid>-<video>-<n>/`` (never to ``$TMPDIR``,
    which may be small and is never swept): the folder is removed when the job ends, and folders a
    killed process left are removed when the next app starts (:func:`sweep_spills`)."""

    def __init__(self, store: Store, hub: ModelHub) -> None:
        self.store, self.hub = store, hub
        self.editor = Editor(store)
        self.jobs: dict[int, Job] = {}
        self._lock = threading.Lock()
        self.spill_root = store.home / "spill"
        sweep_spills(self.spill_root, at_start=True)

    def start(self, video_id: int, vocabulary: list[str], settings: PrelabelSettings) -> Job:
        v = self.store.video(video_id)
        source = open_video(self.store.frames_dir(video_id), fps=settings.fps or None, folder_fps=v.fps)
        with self._lock:
            old = self.jobs.get(video_id)
            if old is not None and not old.finished:
                return old  # a second click (or a second tab) joins the running job
            job = Job(video_id, total=source.info.num_frames)
            self.jobs[video_id] = job
        threading.Thread(target=self._run, args=(job, v, source, vocabulary, settings),
                         name=f"prelabel-{video_id}", daemon=True).start()
        return job

    def _run(self, job: Job, v: VideoRow, source, vocabulary: list[str], settings: PrelabelSettings) -> None:
        from ovformer.inference.predictor import PredictOptions

        t0 = time.time()
        indices: list[int] = []  # stored frame of each frame the model saw
        spill = self.spill_root / f"{os.getpid()}-{v.id}-{time.time_ns()}"
        bank_new = query_bank_dir(self.store, v.id).with_name(f"{v.id}.new-{os.getpid()}-{time.time_ns()}")
        try:
            job.message = "waiting for the model" if self.hub.lock.locked() else "loading the model"
            with self.hub.lock:
                job.message = "loading the model"
                predictor = self.hub.get()
                text = predictor.embed_vocabulary(Vocabulary.from_names(vocabulary))
                names = text.vocabulary.names  # label k of the results is names[k]
                job.state, job.message = "running", f"segmenting (classes: {text.summary()})"
                options = PredictOptions(min_size=settings.min_size, clip_length=settings.clip_length,
                                         top_k=max(10, 3 * settings.max_tracks), preview_k=settings.max_tracks,
                                         spill_dir=spill, spill_half=True, keep_queries_dir=bank_new)
                t0 = time.time()

                def frames() -> Iterator[np.ndarray]:
                    for f in source:
                        if job.cancel.is_set():
                            raise Cancelled()
                        indices.append(f.source_index)
                        yield f.rgb

                def on_clip(p: ClipProgress) -> None:
                    job.frames_done, job.elapsed_s = int(p.frames_done), float(p.elapsed_s)
                    job.eta_s = None if p.eta_s is None else float(p.eta_s)
                    items = sorted(p.preview, key=lambda x: -float(x[2]))[: settings.max_tracks]
                    if items:
                        job.preview_frame = indices[p.frame_start]
                        job.preview = [(int(q), _name(names, int(lb)), float(s), np.asarray(m)[0].astype(bool))
                                       for q, lb, s, m in items]
                        job.preview_version += 1
                    if job.cancel.is_set():
                        raise Cancelled()

                result = predictor.predict(frames(), text, options, num_frames=job.total, on_clip=on_clip)
                label = result.weights_label or self.hub.label()
            tracks = convert(result, names, settings, indices, v.num_frames)
            job.track_ids = self.editor.replace_tracks(v.id, tracks, kind="prelabel")
            if getattr(result, "queries_dir", None):  # every query, for click-to-add (.clicks)
                keep_query_bank(self.store, v.id, bank_new, indices,
                                {tid: t["query"] for tid, t in zip(job.track_ids, tracks)})
            if result.untrained and "untrained" not in label.lower():
                label += " [UNTRAINED]"
            self.store.set_weights_label(v.id, label)
            job.frames_done, job.elapsed_s, job.eta_s = job.total, time.time() - t0, 0.0
            job.state = "done"
            job.message = (f"Done: {len(tracks)} tracks on {v.num_frames} frames in {job.elapsed_s:.1f} s "
                           f"(score ≥ {settings.score_threshold}, at most {settings.max_tracks})")
        except Cancelled:
            job.state, job.message = "cancelled", "Pre-labelling cancelled; nothing was changed."
        except Exception as e:  # shown in the page; the project is untouched
            from .media import disk_full

            traceback.print_exc()
            if disk_full(e) or "disk is full" in str(e):
                job.state, job.message = "error", ("Pre-labelling stopped: the server's disk is full. Nothing "
                                                   "was changed; free some space and run it again.")
            else:
                job.state, job.message = "error", f"Pre-labelling failed: {type(e).__name__}: {e}"
        finally:
            shutil.rmtree(spill, ignore_errors=True)
            shutil.rmtree(bank_new, ignore_errors=True)
            sweep_spills(self.spill_root)


def query_bank_dir(store: Store, video_id: int) -> Path:
    """Where pre-labelling keeps every query of a video (:mod:`ovformer.inference.queries`)."""
    return store.home / "queries" / str(int(video_id))


def keep_query_bank(store: Store, video_id: int, bank: Path, indices: list[int],
                    track_queries: dict[int, int]) -> None:
    """Move a finished bank into place (replacing the video's old one), with the stored frame of
    each model frame and the query of each pre-label track (``links.json``)."""
    import json

    (bank / "links.json").write_text(json.dumps({"indices": [int(i) for i in indices],
                                                 "tracks": {str(k): int(q) for k, q in track_queries.items()}}))
    dest = query_bank_dir(store, video_id)
    old = dest.with_name(f"{video_id}.old-{time.time_ns()}")
    if dest.exists():
        dest.rename(old)
    bank.rename(dest)
    shutil.rmtree(old, ignore_errors=True)


def _name(names: list[str], i: int) -> str:
    return names[i] if 0 <= i < len(names) else f"class {i + 1}"


def convert(result: VideoPrediction, names: list[str], settings: PrelabelSettings, indices: list[int],
            num_frames: int) -> list[dict]:
    """``VideoPrediction.tracks`` -> ``Editor.replace_tracks`` dicts (one track per query).

    ``indices[k]`` is the stored frame the model saw as its frame k. When the model skipped
    frames, each mask is held on the stored frames up to the next one it saw, so the reviewer
    starts from a full track rather than from gaps.
    """
    kept = sorted((t for t in result.tracks if float(t.score) >= settings.score_threshold), key=lambda t: -float(t.score))
    ends = indices[1:] + [num_frames]
    out = []
    for t in kept[: settings.max_tracks]:
        ms: dict[int, str] = {}
        for k, seg in enumerate(t.segmentations[: len(indices)]):
            counts = to_counts(seg, int(result.height), int(result.width)) if seg is not None else None
            if counts is not None:
                ms.update(dict.fromkeys(range(indices[k], min(num_frames, ends[k])), counts))
        if not ms:
            continue
        alts = [(_name(names, int(lb)), float(s)) for lb, s in t.alternatives if int(lb) != int(t.label)][:3]
        out.append({"label": _name(names, int(t.label)), "score": float(t.score), "alternatives": alts,
                    "source": "model", "masks": ms, "query": int(t.query)})
    return out
