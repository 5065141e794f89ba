"""Frozen batch norm and a convolution carrying its own norm and activation (detectron2 layout)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed statistics and affine parameters, all stored as buffers.

    The buffer names (including ``num_batches_tracked``) match ``nn.BatchNorm2d`` so released
    checkpoints load strictly; nothing here is trained.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features, self.eps = num_features, eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features) - eps)
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x * scale + shift in one pass over x (two with a separate mul and add); batch_norm in
        # eval mode is that affine map and still passes gradients to x.
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=False, momentum=0.0, eps=self.eps)

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """Return ``module`` with every BatchNorm2d replaced by a frozen copy."""
        if isinstance(module, nn.BatchNorm2d):
            frozen = cls(module.num_features, module.eps)
            frozen.weight.copy_(module.weight.detach())
            frozen.bias.copy_(module.bias.detach())
            frozen.running_mean.copy_(module.running_mean)
            frozen.running_var.copy_(module.running_var)
            return frozen
        for name, child in module.named_children():
            new = cls.convert(child)
            if new is not child:
                setattr(module, name, new)
        return module


class ConvNorm(nn.Conv2d):
    """Conv2d followed by an optional ``norm`` submodule and activation (keys ``weight``,
    ``bias``, ``norm.*``, as detectron2's ``Conv2d`` writes them)."""

    def __init__(self, *args, norm: nn.Module | None = None,
                 activation: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                     self.groups)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x
