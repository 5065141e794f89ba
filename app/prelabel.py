"""Pre-labelling a video with OVFormer in a background thread, with progress and live previews.

The page never waits on the model: :class:`JobRunner` starts a thread and the UI polls the
:class:`Job` (progress, ETA, the latest clip's provisional masks). Results are committed as one
undoable step ("prelabel") when the whole video is done, so a crash mid-run loses only the run.
"""
from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ovformer.vocab import Vocabulary

from . import masks as M
from .edits import Editor
from .media import load_frame
from .store import Store


@dataclass
class PrelabelSettings:
    """The knobs shown in the page."""

    min_size: int = 360          # shorter side the model sees (resolution)
    clip_length: int = 5         # frames per clip of the semi-online predictor
    fps: float = 0.0             # frames per second to run the model on; 0 = every stored frame
    score_threshold: float = 0.1  # tracks below this video-level score are dropped
    max_tracks: int = 20         # at most this many tracks, best first


@dataclass
class ModelSpec:
    """Which weights to load (from the command line)."""

    preset: str = "r50-lvvis"
    weights: str | None = None
    untrained: bool = False
    clip: str | None = None

    def describe(self) -> str:
        what = self.weights or self.preset
        return f"{what} (UNTRAINED, random weights)" if self.untrained else what


class PredictorHub:
    """Loads the predictor once (lazily, under a lock) and says which weights are loaded."""

    def __init__(self, spec: ModelSpec, factory: Callable[[ModelSpec], Any] | None = None) -> None:
        self.spec = spec
        self._factory = factory or _default_factory
        self._predictor: Any = None
        self.lock = threading.Lock()  # one model run at a time: the model is not re-entrant
        self.error: str | None = None

    @property
    def loaded(self) -> bool:
        return self._predictor is not None

    def _key(self, spec: ModelSpec) -> tuple:
        return (spec.preset, spec.weights, spec.untrained, spec.clip, id(self._factory))

    def get(self) -> Any:
        if self._predictor is None:
            key = self._key(self.spec)
            # one model per process and spec: several app instances (tests) share the weights
            if key not in _LOADED:
                _LOADED[key] = self._factory(self.spec)
            self._predictor = _LOADED[key]
        return self._predictor

    def load(self, spec: ModelSpec) -> Any:
        """Swap the app's weights (e.g. to a fine-tuned checkpoint) and load them now, so the
        banner is right at once and a bad file fails here rather than in the next pre-label."""
        with self.lock:  # never under a running pre-label
            old = (self.spec, self._predictor)
            self.spec, self._predictor = spec, None
            try:
                return self.get()
            except Exception:
                self.spec, self._predictor = old
                raise

    def predictor_for(self, spec: ModelSpec) -> Any:
        """A predictor for ``spec`` without swapping the app's weights (the closed loop's
        before/after models): the loaded one when it is ``spec``, else a shared or new one.
        Callers hold :attr:`lock` while they use it: it may be the app's own predictor."""
        if self._predictor is not None and self._key(spec) == self._key(self.spec):
            return self._predictor
        return _LOADED.get(self._key(spec)) or self._factory(spec)

    def untrained(self) -> bool:
        p = self._predictor
        return bool(getattr(p, "untrained", self.spec.untrained)) if p is not None else self.spec.untrained

    def label(self) -> str:
        p = self._predictor
        return str(getattr(p, "weights_label", "") or self.spec.describe()) if p is not None else self.spec.describe()

    def missing_weights(self) -> str | None:
        """Why the configured weights cannot load, without loading them (None when they can,
        as far as a cheap check tells): a new user learns it from the banner, not from a failed
        pre-label run."""
        if self.loaded or self.spec.untrained:
            return None
        from ovformer.weights import WeightsNotFoundError, resolve_weights
        try:
            resolve_weights(self.spec.weights or self.spec.preset, download=False)
        except WeightsNotFoundError as exc:
            return str(exc)
        except (KeyError, ValueError):  # e.g. a preset without released weights
            return None
        return None

    def banner(self) -> str:
        """Markdown for the always-visible weights banner."""
        missing = self.missing_weights()
        if missing is not None:
            return ("### ⚠️ No model weights: pre-labelling cannot run yet. You can still import, "
                    "edit and export labels.\n\n```\n" + missing + "\n```\n"
                    "Or restart with `ovformer app --preset tiny --untrained --clip tiny-random` "
                    "to try the flow on random weights.")
        state = "loaded" if self.loaded else "loads on the first pre-label run"
        if self.untrained():
            return (f"### ⚠️ UNTRAINED MODEL — weights are RANDOM: `{self.label()}` ({state}). "
                    "Pre-labels are noise; use them only to try the editor.")
        return f"### Model weights: `{self.label()}` ({state})"


_LOADED: dict[tuple, Any] = {}


def _default_factory(spec: ModelSpec) -> Any:
    from ovformer.inference.predictor import OVFormerVideoPredictor

    kw: dict[str, Any] = {"untrained": spec.untrained}
    if spec.clip:
        kw["clip"] = spec.clip
    if spec.weights:
        return OVFormerVideoPredictor.from_pretrained(spec.weights, **kw)
    if spec.untrained:  # random weights: the preset only names the architecture
        return OVFormerVideoPredictor.from_pretrained(None, preset=spec.preset, **kw)
    return OVFormerVideoPredictor.from_pretrained(spec.preset, **kw)


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


class JobRunner:
    """Starts pre-label threads; one job per video at a time."""

    def __init__(self, store: Store, hub: PredictorHub) -> None:
        self.store, self.hub = store, hub
        self.editor = Editor(store)
        self.jobs: dict[int, Job] = {}
        self._lock = threading.Lock()

    def start(self, video_id: int, vocabulary: list[str], settings: PrelabelSettings) -> Job:
        v = self.store.video(video_id)
        stride = max(1, int(round(v.fps / settings.fps))) if settings.fps and settings.fps > 0 else 1
        indices = list(range(0, v.num_frames, stride))
        with self._lock:
            old = self.jobs.get(video_id)
            if old is not None and not old.finished:
                return old  # a second click (or a second tab) joins the running job
            job = Job(video_id, total=len(indices))
            self.jobs[video_id] = job
        threading.Thread(target=self._run, args=(job, v, vocabulary, settings, indices, stride),
                         name=f"prelabel-{video_id}", daemon=True).start()
        return job

    def _run(self, job: Job, v, vocabulary, settings: PrelabelSettings, indices: list[int], stride: int) -> None:
        t0 = time.time()
        try:
            job.message = "waiting for the model" if self.hub.lock.locked() else "loading the model"
            with self.hub.lock:
                job.message = "loading the model"
                pred = self.hub.get()
                for name, value in (("min_size", settings.min_size), ("clip_length", settings.clip_length),
                                    ("top_k", max(10, 3 * settings.max_tracks))):
                    if hasattr(pred, name):
                        setattr(pred, name, value)
                text = pred.set_vocabulary(Vocabulary.from_names(vocabulary))
                vocabulary = text.vocabulary.names  # label k of the results is this list's k
                job.state, job.message = "running", f"segmenting (classes: {text.summary()})"
                t0 = time.time()

                def frames():
                    for i in indices:
                        if job.cancel.is_set():
                            raise Cancelled()
                        yield load_frame(self.store.frame_path(v.id, i))

                def on_clip(p: Any) -> None:
                    job.frames_done, job.elapsed_s = int(p.frames_done), float(p.elapsed_s)
                    job.eta_s = None if p.eta_s is None else float(p.eta_s)
                    items = sorted(p.preview or [], key=lambda x: -float(x[2]))[: settings.max_tracks]
                    if items:
                        t = int(np.asarray(items[0][3]).shape[0])
                        job.preview_frame = indices[max(0, job.frames_done - t)]
                        job.preview = [(int(q), vocabulary[int(lb)] if 0 <= int(lb) < len(vocabulary) else str(lb),
                                        float(s), np.asarray(m)[0].astype(bool)) for q, lb, s, m in items]
                        job.preview_version += 1
                    if job.cancel.is_set():
                        raise Cancelled()

                result = pred.predict(frames(), num_frames=len(indices), on_clip=on_clip)
                label = str(getattr(result, "weights_label", "") or self.hub.label())
            tracks = convert(result, vocabulary, settings, indices, stride, v.num_frames)
            job.track_ids = self.editor.replace_tracks(v.id, tracks, kind="prelabel")
            if getattr(result, "untrained", False) and "untrained" not in label.lower():
                label += " [UNTRAINED]"
            self.store.set_weights_label(v.id, label)
            job.frames_done, job.elapsed_s, job.eta_s = job.total, time.time() - t0, 0.0
            job.state = "done"
            job.message = (f"Done: {len(tracks)} tracks on {v.num_frames} frames in {job.elapsed_s:.1f} s "
                           f"(score ≥ {settings.score_threshold}, at most {settings.max_tracks})")
        except Cancelled:
            job.state, job.message = "cancelled", "Pre-labelling cancelled; nothing was changed."
        except Exception as e:  # shown in the page; the project is untouched
            traceback.print_exc()
            job.state, job.message = "error", f"Pre-labelling failed: {type(e).__name__}: {e}"


def convert(result: Any, vocabulary: list[str], settings: PrelabelSettings, indices: list[int],
            stride: int, num_frames: int) -> list[dict]:
    """``VideoPrediction.tracks`` -> ``Editor.replace_tracks`` dicts (one track per query).

    With a frame stride > 1 each processed mask is held on the skipped frames after it, so the
    reviewer starts from a full track rather than from gaps.
    """
    def name(i: int) -> str:
        return vocabulary[i] if 0 <= i < len(vocabulary) else f"class {i + 1}"

    kept = [t for t in result.tracks if float(t.score) >= settings.score_threshold]
    kept.sort(key=lambda t: -float(t.score))
    out = []
    for t in kept[: settings.max_tracks]:
        ms: dict[int, str] = {}
        h, w = int(result.height), int(result.width)
        for k, seg in enumerate(t.segmentations):
            if seg is None or k >= len(indices):
                continue
            counts = M.to_counts(seg, h, w)
            if counts is None:
                continue
            for f in range(indices[k], min(num_frames, indices[k] + stride)):
                ms[f] = counts
        if not ms:
            continue
        alts = [(name(int(lb)), float(s)) for lb, s in t.alternatives if int(lb) != int(t.label)][:3]
        out.append({"label": name(int(t.label)), "score": float(t.score), "alternatives": alts,
                    "source": "model", "masks": ms})
    return out
