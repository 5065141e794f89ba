"""Building blocks shared by the pixel decoder and the video decoder."""
from .ms_deform_attn import MSDeformAttn, ms_deform_attn_core
from .norm import ConvNorm, FrozenBatchNorm2d
from .position_encoding import PositionEmbeddingSine, PositionEmbeddingSine3D
from .transformer import MLP, CrossAttentionLayer, FFNLayer, SelfAttentionLayer

__all__ = ["MSDeformAttn", "ms_deform_attn_core", "ConvNorm", "FrozenBatchNorm2d",
           "PositionEmbeddingSine", "PositionEmbeddingSine3D", "MLP", "CrossAttentionLayer",
           "FFNLayer", "SelfAttentionLayer"]
