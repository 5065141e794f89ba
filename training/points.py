"""Point sampling of mask logits (PointRend's `point_sample`, pure PyTorch).

The losses compare masks at a few thousand points instead of every pixel: the predicted
masks live at 1/4 resolution and the targets at full resolution, and normalised [0, 1]
coordinates let both be sampled at the same places without resizing either.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def point_sample(inputs: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinearly sample ``inputs`` at normalised points.

    Args:
        inputs: (N, C, H, W).
        coords: (N, P, 2) points as (x, y) in [0, 1] x [0, 1] (align_corners=False).

    Returns:
        (N, C, P) sampled values (zero outside the image, as grid_sample's default padding).
    """
    out = F.grid_sample(inputs, 2.0 * coords.unsqueeze(2) - 1.0, align_corners=False)
    return out.squeeze(3)


def uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """-|logit|: the points closest to the decision boundary are the most uncertain."""
    return -logits.abs()


def uncertain_point_coords(logits: torch.Tensor, num_points: int, oversample_ratio: float,
                           importance_sample_ratio: float,
                           uncertainty_fn: Callable[[torch.Tensor], torch.Tensor] = uncertainty) -> torch.Tensor:
    """Points biased towards uncertain regions (Mask2Former's
    `get_uncertain_point_coords_with_randomness`).

    Draws ``num_points * oversample_ratio`` uniform points, keeps the
    ``importance_sample_ratio * num_points`` most uncertain ones and fills the rest with
    fresh uniform points.

    Args:
        logits: (R, 1, H, W) mask logits.

    Returns:
        (R, num_points, 2) coordinates in [0, 1].
    """
    r = logits.shape[0]
    num_sampled = int(num_points * oversample_ratio)
    coords = torch.rand(r, num_sampled, 2, device=logits.device)
    scores = uncertainty_fn(point_sample(logits, coords))  # (R, 1, num_sampled)
    num_uncertain = int(importance_sample_ratio * num_points)
    idx = torch.topk(scores[:, 0, :], k=num_uncertain, dim=1)[1]  # (R, num_uncertain)
    coords = torch.gather(coords, 1, idx.unsqueeze(-1).expand(-1, -1, 2))
    num_random = num_points - num_uncertain
    if num_random > 0:
        coords = torch.cat([coords, torch.rand(r, num_random, 2, device=logits.device)], dim=1)
    return coords
