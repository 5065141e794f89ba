"""timm ResNet backbone in the official OVFormer key layout (``backbone.base.*``)."""
from __future__ import annotations

import timm
import torch
from torch import nn

from ..layers import FrozenBatchNorm2d


class TimmResNet(nn.Module):
    """A timm ResNet whose four stages give ``res2..res5`` (strides 4, 8, 16, 32).

    Batch norm is frozen, as in the released models (detectron2 ``FrozenBN``); the official
    checkpoint stores the timm modules under ``base.``, which this class reproduces.

    Args:
        name: timm architecture, ``resnet50`` for the released models, ``resnet18`` for ``tiny``.
    """

    def __init__(self, name: str = "resnet50") -> None:
        super().__init__()
        base = timm.create_model(name, pretrained=False, features_only=True,
                                 out_indices=(1, 2, 3, 4))
        self.base = FrozenBatchNorm2d.convert(base)
        channels = base.feature_info.channels()
        self.out_channels = dict(zip(("res2", "res3", "res4", "res5"), channels))
        self.out_strides = dict(zip(("res2", "res3", "res4", "res5"), base.feature_info.reduction()))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(N, 3, H, W) normalised -> {"res2": (N, C2, H/4, W/4), ..., "res5": (N, C5, H/32, W/32)}."""
        return dict(zip(("res2", "res3", "res4", "res5"), self.base(x)))


def build_backbone(name: str, **swin_kwargs) -> nn.Module:
    """``resnet*`` names build :class:`TimmResNet`; ``swin`` builds the D2Swin layout."""
    if name.startswith("resnet"):
        return TimmResNet(name)
    if name == "swin":
        from .swin import SwinBackbone
        return SwinBackbone(**swin_kwargs)
    raise ValueError(f"unknown backbone {name!r}: expected 'resnet50', 'resnet18' or 'swin'")
