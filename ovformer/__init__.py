"""OVFormer: open-vocabulary video instance segmentation in plain PyTorch.

Example:
    >>> from ovformer import OVFormerVideoPredictor
    >>> from ovformer.data.video import open_video
    >>> predictor = OVFormerVideoPredictor.from_pretrained("r50-lvvis", clip="openai")
    >>> predictor.set_vocabulary(["person", "bicycle"])
    >>> pred = predictor.predict(open_video("bikes.mp4"))
    >>> pred.tracks[0].label, pred.tracks[0].alternatives
"""
from __future__ import annotations

import importlib

# Resolved on first use, so that light users (``ovformer eval``, the file formats) do not pay
# for importing torch, timm and open_clip.
_EXPORTS = {
    "LoadedModel": "ovformer.api", "load_model": "ovformer.api",
    "ModelConfig": "ovformer.config", "get_preset": "ovformer.config",
    "list_presets": "ovformer.config", "create_model": "ovformer.factory",
    "OVFormerVideoPredictor": "ovformer.inference.predictor",
    "Track": "ovformer.inference.predictor", "VideoPrediction": "ovformer.inference.predictor",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ovformer' has no attribute {name!r}")
