"""Sine positional encodings of Mask2Former: 2D for the pixel decoder, 3D for the video decoder."""
from __future__ import annotations

import math

import torch
from torch import nn


def _sine(embed: torch.Tensor, num_feats: int, temperature: float) -> torch.Tensor:
    """Interleaved sin/cos of ``embed[..., None] / temperature ** (2 * (i // 2) / num_feats)``.

    Args:
        embed: (...,) positions already scaled to [0, 2*pi].
    Returns:
        (..., num_feats)
    """
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=embed.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)
    pos = embed[..., None] / dim_t
    return torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), dim=-1).flatten(-2)


class PositionEmbeddingSine(nn.Module):
    """Normalised 2D sine encoding (DETR / Mask2Former), over a padding-free grid.

    ``forward(x (N, C, H, W)) -> (N, 2 * num_pos_feats, H, W)``.
    """

    def __init__(self, num_pos_feats: int = 128, temperature: float = 10000.0,
                 scale: float = 2 * math.pi) -> None:
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        eps = 1e-6
        # cumsum of ones / last value, exactly as the reference does with an all-False mask
        y = torch.arange(1, h + 1, dtype=torch.float32, device=x.device)
        xx = torch.arange(1, w + 1, dtype=torch.float32, device=x.device)
        y = y / (y[-1] + eps) * self.scale
        xx = xx / (xx[-1] + eps) * self.scale
        pos_y = _sine(y, self.num_pos_feats, self.temperature)  # (H, F)
        pos_x = _sine(xx, self.num_pos_feats, self.temperature)  # (W, F)
        pos = torch.cat(
            (pos_y[:, None, :].expand(h, w, -1), pos_x[None, :, :].expand(h, w, -1)), dim=-1
        )  # (H, W, 2F)
        return pos.permute(2, 0, 1).unsqueeze(0).expand(n, -1, -1, -1).to(x.dtype)


class PositionEmbeddingSine3D(nn.Module):
    """Normalised spatio-temporal sine encoding of Mask2Former-VIS.

    The spatial part is the 2D encoding; a temporal encoding with ``2 * num_pos_feats`` channels is
    added to it (not concatenated), so the width stays ``2 * num_pos_feats``.
    ``forward(x (B, T, C, H, W)) -> (B, T, 2 * num_pos_feats, H, W)``.
    """

    def __init__(self, num_pos_feats: int = 128, temperature: float = 10000.0,
                 scale: float = 2 * math.pi) -> None:
        super().__init__()
        self.spatial = PositionEmbeddingSine(num_pos_feats, temperature, scale)
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _, h, w = x.shape
        spatial = self.spatial(x[:1, 0])[0]  # (2F, H, W)
        z = torch.arange(1, t + 1, dtype=torch.float32, device=x.device)
        z = z / (z[-1] + 1e-6) * self.scale
        pos_z = _sine(z, 2 * self.num_pos_feats, self.temperature)  # (T, 2F)
        pos = spatial[None] + pos_z[:, :, None, None]  # (T, 2F, H, W)
        return pos.unsqueeze(0).expand(b, -1, -1, -1, -1).to(x.dtype)
