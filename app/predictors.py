"""Which weights the app runs (:class:`ModelSpec`) and the predictors loaded for them.

A predictor holds only what is fixed for its life (model, CLIP, default options); every call
passes its own vocabulary and options, so the sessions sharing one never change each other's
settings. Loaded predictors live in a :class:`PredictorCache` keyed by spec (one per app, or one
shared by several apps in a test process), never in a module global.
"""
from __future__ import annotations

import functools
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


def load_predictor(spec: ModelSpec, device: str = "auto", dtype: str = "auto") -> VideoPredictor:
    """The released predictor for ``spec`` (the hub's default factory) on ``device`` in
    ``dtype`` ("auto": the GPU when there is one; the fastest dtype that keeps the masks)."""
    from ovformer.inference.predictor import OVFormerVideoPredictor

    kw: dict = {"untrained": spec.untrained, "device": device, "dtype": dtype}
    if spec.clip:
        kw["clip"] = spec.clip
    if spec.weights:
        return OVFormerVideoPredictor.from_pretrained(spec.weights, **kw)
    if spec.untrained:  # random weights: the preset only names the architecture
        return OVFormerVideoPredictor.from_pretrained(None, preset=spec.preset, **kw)
    return OVFormerVideoPredictor.from_pretrained(spec.preset, **kw)


class PredictorCache:
    """Loaded predictors by spec; one factory call per spec (several apps may share a cache).

    ``device`` and ``dtype`` (the app's ``--device``/``--dtype``) are where and how every
    predictor of the default factory runs; :meth:`runtime` says it in one line.
    """

    def __init__(self, factory: Factory | None = None, device: str = "auto",
                 dtype: str = "auto") -> None:
        self.device, self.dtype = device, dtype
        self.factory = factory or functools.partial(load_predictor, device=device, dtype=dtype)
        self._loaded: dict[ModelSpec, VideoPredictor] = {}
        self._lock = threading.Lock()

    def runtime(self, spec: ModelSpec) -> str:
        """Where and in which dtype ``spec`` runs: the loaded predictor's own, else what the
        settings resolve to on this machine (see :func:`ovformer.inference.runtime.describe_runtime`)."""
        from ovformer.inference.runtime import describe_runtime, resolve_runtime

        p = self._loaded.get(spec)
        device, dtype = getattr(p, "device", None), getattr(p, "dtype", None)
        if device is None or dtype is None:
            device, dtype = resolve_runtime(self.device, self.dtype)
        return describe_runtime(device, dtype)

    def get(self, spec: ModelSpec) -> VideoPredictor:
        with self._lock:
            if spec not in self._loaded:
                self._loaded[spec] = self.factory(spec)
            return self._loaded[spec]

    def peek(self, spec: ModelSpec) -> VideoPredictor | None:
        return self._loaded.get(spec)
