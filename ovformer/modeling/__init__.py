"""OVFormer modules."""
from .backbone import TimmResNet, build_backbone
from .classifier import EmbeddingAlignmentClassifier
from .decoder import ClipOutput, LayerPrediction, VideoMaskedTransformerDecoder
from .image_decoder import ImageMaskedTransformerDecoder, OVFormerImage
from .ovformer import OVFormer
from .pixel_decoder import MSDeformAttnPixelDecoder

__all__ = ["TimmResNet", "build_backbone", "EmbeddingAlignmentClassifier", "ClipOutput",
           "LayerPrediction", "VideoMaskedTransformerDecoder", "OVFormer",
           "ImageMaskedTransformerDecoder", "OVFormerImage",
           "MSDeformAttnPixelDecoder"]
