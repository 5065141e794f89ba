"""Which weights the app runs (:class:`ModelSpec`) and the predictors loaded for them.

A predictor holds only what is fixed for its life (model, CLIP, default options); every call
passes its own vocabulary and options, so the sessions sharing one never change each other's
settings. Loaded predictors live in a :class:`PredictorCache` keyed by spec (one per app, or one
shared by several apps in a test process), never in a module global.
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
