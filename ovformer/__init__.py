"""OVFormer: open-vocabulary video instance segmentation in plain PyTorch.

Example:
    >>> from ovformer import OVFormerVideoPredictor
    >>> from ovformer.data.video import open_video
    >>> predictor = OVFormerVideoPredictor.from_pretrained("r50-lvvis", clip="openai")
    >>> text = predictor.embed_vocabulary(["person", "bicycle"])
    >>> pred = predictor.predict(open_video("bikes.mp4"), text)
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
    "OVFormerFramePredictor": "ovformer.inference.frame_predictor",
    "PredictOptions": "ovformer.inference.types", "VideoPredictor": "ovformer.inference.types",
    "Track": "ovformer.inference.types", "VideoPrediction": "ovformer.inference.types",
    "Vocabulary": "ovformer.vocab", "TextEmbeddings": "ovformer.text_embeddings",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ovformer' has no attribute {name!r}")
