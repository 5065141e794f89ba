"""The model hub: which weights the app pre-labels with, loaded once and shared by all sessions.

A predictor holds only what is fixed for its life (model, CLIP, default options); every call
passes its own vocabulary and :class:`~ovformer.inference.predictor.PredictOptions`, so the
sessions that share it never change each other's settings. Loaded predictors are kept in a
:class:`PredictorCache` keyed by :class:`ModelSpec` (one per app, or one shared by several
apps in a test process), never in a module global.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # the protocol only: importing the predictor module loads torch
    from ovformer.inference.predictor import VideoPredictor


@dataclass(frozen=True)
class ModelSpec:
    """Which weights to load (from the command line, or a fine-tuned run's checkpoint)."""

    preset: str = "r50-lvvis"
    weights: str | None = None
    untrained: bool = False
    clip: str | None = None

    def describe(self) -> str:
        what = self.weights or self.preset
        return f"{what} (UNTRAINED, random weights)" if self.untrained else what


Factory = Callable[[ModelSpec], "VideoPredictor"]


def load_predictor(spec: ModelSpec) -> VideoPredictor:
    """The released predictor for ``spec`` (the hub's default factory)."""
    from ovformer.inference.predictor import OVFormerVideoPredictor

    kw: dict = {"untrained": spec.untrained}
    if spec.clip:
        kw["clip"] = spec.clip
    if spec.weights:
        return OVFormerVideoPredictor.from_pretrained(spec.weights, **kw)
    if spec.untrained:  # random weights: the preset only names the architecture
        return OVFormerVideoPredictor.from_pretrained(None, preset=spec.preset, **kw)
    return OVFormerVideoPredictor.from_pretrained(spec.preset, **kw)


class PredictorCache:
    """Loaded predictors by spec; one factory call per spec (several apps may share a cache)."""

    def __init__(self, factory: Factory | None = None) -> None:
        self.factory = factory or load_predictor
        self._loaded: dict[ModelSpec, VideoPredictor] = {}
        self._lock = threading.Lock()

    def get(self, spec: ModelSpec) -> VideoPredictor:
        with self._lock:
            if spec not in self._loaded:
                self._loaded[spec] = self.factory(spec)
            return self._loaded[spec]

    def peek(self, spec: ModelSpec) -> VideoPredictor | None:
        return self._loaded.get(spec)


class ModelHub:
    """The app's current weights: loaded lazily, swapped on request, described in the banner.

    ``lock`` serialises model runs (pre-label, closed loop, saving weights): one forward pass
    at a time keeps memory bounded on a CPU machine.
    """

    def __init__(self, spec: ModelSpec, cache: PredictorCache | None = None) -> None:
        self.spec = spec
        self.cache = cache or PredictorCache()
        self.lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self.cache.peek(self.spec) is not None

    def get(self) -> VideoPredictor:
        """The current predictor (loaded on first use)."""
        return self.cache.get(self.spec)

    def predictor_for(self, spec: ModelSpec) -> VideoPredictor:
        """A predictor for ``spec`` without swapping the app's weights (the closed loop's
        before/after models). Callers hold :attr:`lock` while they run it."""
        return self.cache.get(spec)

    def load(self, spec: ModelSpec) -> VideoPredictor:
        """Swap the app's weights (e.g. to a fine-tuned checkpoint) and load them now, so the
        banner is right at once and a bad file fails here rather than in the next pre-label."""
        with self.lock:  # never under a running pre-label
            predictor = self.cache.get(spec)  # raises before anything changed
            self.spec = spec
            return predictor

    def untrained(self) -> bool:
        p = self.cache.peek(self.spec)
        return p.untrained if p is not None else self.spec.untrained

    def label(self) -> str:
        p = self.cache.peek(self.spec)
        return (p.weights_label or self.spec.describe()) if p is not None else self.spec.describe()

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
