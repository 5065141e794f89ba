"""OVFormer: open-vocabulary video instance segmentation in plain PyTorch.

Example:
    >>> from ovformer import OVFormerVideoPredictor
    >>> from ovformer.data.video import open_video
    >>> predictor = OVFormerVideoPredictor.from_pretrained("r50-lvvis", clip="openai")
    >>> predictor.set_vocabulary(["person", "bicycle"])
    >>> pred = predictor.predict(open_video("bikes.mp4"))
    >>> pred.tracks[0].label, pred.tracks[0].alternatives
"""
from .api import LoadedModel, load_model
from .config import ModelConfig, get_preset, list_presets
from .factory import create_model
from .inference.predictor import OVFormerVideoPredictor, Track, VideoPrediction

__all__ = ["LoadedModel", "load_model", "ModelConfig", "get_preset", "list_presets",
           "create_model", "OVFormerVideoPredictor", "Track", "VideoPrediction"]
