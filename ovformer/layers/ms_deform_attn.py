"""Multi-scale deformable attention (Deformable DETR) in plain PyTorch, via ``grid_sample``.

No compiled op: the official CUDA kernel and this function compute the same sum, and on CPU the
reference implementation itself runs this path.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def ms_deform_attn_core(value: torch.Tensor, spatial_shapes: list[tuple[int, int]],
                        sampling_locations: torch.Tensor,
                        attention_weights: torch.Tensor) -> torch.Tensor:
    """Bilinearly sample every level at the given locations and sum with attention weights.

    Args:
        value: (N, S, M, D) values of all levels flattened, S = sum(H_l * W_l), M heads.
        spatial_shapes: [(H_l, W_l)] per level.
        sampling_locations: (N, Lq, M, L, P, 2) normalised (x, y) in [0, 1].
        attention_weights: (N, Lq, M, L, P), softmax-normalised over (L, P).
    Returns:
        (N, Lq, M * D)
    """
    n, _, m, d = value.shape
    _, lq, _, num_levels, num_points, _ = sampling_locations.shape
    value_list = value.split([h * w for h, w in spatial_shapes], dim=1)
    grids = 2 * sampling_locations - 1  # grid_sample wants [-1, 1]
    sampled = []
    for lvl, (h, w) in enumerate(spatial_shapes):
        v = value_list[lvl].flatten(2).transpose(1, 2).reshape(n * m, d, h, w)
        g = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)  # (N*M, Lq, P, 2)
        sampled.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros",
                                     align_corners=False))  # (N*M, D, Lq, P)
    attn = attention_weights.transpose(1, 2).reshape(n * m, 1, lq, num_levels * num_points)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * attn).sum(-1)  # (N*M, D, Lq)
    return out.view(n, m * d, lq).transpose(1, 2)


class MSDeformAttn(nn.Module):
    """Deformable attention over ``n_levels`` feature maps with ``n_points`` samples per head."""

    def __init__(self, d_model: int = 256, n_levels: int = 3, n_heads: int = 8,
                 n_points: int = 4) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} must be divisible by n_heads {n_heads}")
        self.n_levels, self.n_heads, self.n_points = n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        # Deformable DETR's init: offsets start on a ring of directions, weights uniform.
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * torch.pi / self.n_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(self.n_heads, 1, 1, 2)
        grid = grid.repeat(1, self.n_levels, self.n_points, 1)
        for i in range(self.n_points):
            grid[:, :, i, :] *= i + 1
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.view(-1))
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.constant_(self.value_proj.bias, 0.0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0.0)

    def forward(self, query: torch.Tensor, reference_points: torch.Tensor,
                value: torch.Tensor, spatial_shapes: list[tuple[int, int]]) -> torch.Tensor:
        """
        Args:
            query: (N, Lq, C) with positional encoding added.
            reference_points: (N, Lq, L, 2) normalised (x, y).
            value: (N, S, C) flattened multi-level input.
            spatial_shapes: [(H_l, W_l)] per level.
        Returns:
            (N, Lq, C)
        """
        n, lq, _ = query.shape
        m, lv, p = self.n_heads, self.n_levels, self.n_points
        v = self.value_proj(value).view(n, value.shape[1], m, -1)
        offsets = self.sampling_offsets(query).view(n, lq, m, lv, p, 2)
        weights = self.attention_weights(query).view(n, lq, m, lv * p).softmax(-1)
        weights = weights.view(n, lq, m, lv, p)
        # offsets are in pixels of each level: normalise by (W_l, H_l)
        normalizer = torch.tensor([[w, h] for h, w in spatial_shapes], dtype=query.dtype,
                                  device=query.device)
        locations = (reference_points[:, :, None, :, None, :]
                     + offsets / normalizer[None, None, None, :, None, :])
        return self.output_proj(ms_deform_attn_core(v, spatial_shapes, locations, weights))
