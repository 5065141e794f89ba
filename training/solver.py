"""Optimiser, learning-rate schedule and gradient clipping of the released recipe.

AdamW with Mask2Former's parameter groups (backbone at ``backbone_multiplier`` x lr, no
weight decay on normalisation layers, embeddings and Swin's position tables), a
warm-up + multi-step schedule (detectron2 `WarmupMultiStepLR`) and clipping of the whole
model's gradient norm (`CLIP_TYPE: full_model`).

The schedule is a pure function of the iteration, so resuming needs no scheduler state.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Iterable, Sequence

import torch
from torch import nn

_NORM_TYPES: tuple[type, ...] = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LayerNorm, nn.LocalResponseNorm,
)
#: parameters named like these get no weight decay (Swin's position tables)
_NO_DECAY_NAMES = ("relative_position_bias_table", "absolute_pos_embed")


def _is_norm(module: nn.Module) -> bool:
    # the project's FrozenBatchNorm has no parameters, but a norm class defined elsewhere
    # (e.g. ovformer.layers.norm) is recognised by name as detectron2 lists its own
    # (a Conv2d subclass with a norm attached, like ovformer's ConvNorm, is not a norm)
    if isinstance(module, _NORM_TYPES):
        return True
    name = type(module).__name__
    return name.endswith(("Norm", "Norm1d", "Norm2d", "Norm3d")) and not isinstance(module, (nn.Conv2d, nn.Linear))


def build_param_groups(model: nn.Module, base_lr: float, weight_decay: float,
                       backbone_multiplier: float = 0.1, weight_decay_norm: float = 0.0,
                       weight_decay_embed: float = 0.0) -> list[dict]:
    """Trainable parameters grouped by (lr, weight decay), Mask2Former's rules.

    A parameter of a module whose qualified name contains "backbone" gets
    ``base_lr * backbone_multiplier``. Frozen parameters (requires_grad False) are left out.

    Returns:
        groups for `torch.optim.AdamW`, each with "params", "lr", "weight_decay" and
        "lr_factor" (the multiplier the schedule applies to).
    """
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            factor = backbone_multiplier if "backbone" in module_name else 1.0
            wd = weight_decay
            if name in _NO_DECAY_NAMES:
                wd = 0.0
            if _is_norm(module):
                wd = weight_decay_norm
            if isinstance(module, nn.Embedding):
                wd = weight_decay_embed
            groups.setdefault((factor, wd), []).append(p)
    return [{"params": ps, "lr": base_lr * f, "weight_decay": wd, "lr_factor": f}
            for (f, wd), ps in groups.items()]


def lr_factor(iteration: int, steps: Sequence[int], gamma: float = 0.1, warmup_iters: int = 10,
              warmup_factor: float = 1.0) -> float:
    """detectron2 WarmupMultiStepLR with linear warm-up: the multiplier of the base lr at
    ``iteration`` (0-based, the iteration about to run). The released recipe has
    ``warmup_factor = 1.0``, which makes its 10 warm-up iterations a no-op."""
    factor = gamma ** bisect_right(list(steps), iteration)
    if iteration < warmup_iters:
        alpha = iteration / warmup_iters
        factor *= warmup_factor * (1 - alpha) + alpha
    return factor


def set_lr(optimizer: torch.optim.Optimizer, base_lr: float, factor: float) -> float:
    """Set every group's lr to ``base_lr * factor * group lr_factor``; returns base_lr * factor."""
    for g in optimizer.param_groups:
        g["lr"] = base_lr * factor * g.get("lr_factor", 1.0)
    return base_lr * factor


def clip_full_model(parameters: Iterable[nn.Parameter], max_norm: float) -> float:
    """Clip the gradient norm of all parameters together; returns the norm before clipping
    (0 when max_norm <= 0 disables clipping and nothing is measured)."""
    params = [p for p in parameters if p.grad is not None]
    if max_norm <= 0 or not params:
        return 0.0
    return float(torch.nn.utils.clip_grad_norm_(params, max_norm))


def build_optimizer(model: nn.Module, base_lr: float, weight_decay: float,
                    backbone_multiplier: float = 0.1, weight_decay_norm: float = 0.0,
                    weight_decay_embed: float = 0.0) -> torch.optim.AdamW:
    """AdamW over `build_param_groups` (detectron2's defaults: betas (0.9, 0.999), eps 1e-8)."""
    groups = build_param_groups(model, base_lr, weight_decay, backbone_multiplier,
                                weight_decay_norm, weight_decay_embed)
    return torch.optim.AdamW(groups, lr=base_lr)
