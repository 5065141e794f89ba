"""Mask2Former's multi-scale deformable-attention pixel decoder (``MSDeformAttnPixelDecoder``)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import ConvNorm, MSDeformAttn, PositionEmbeddingSine


class DeformableEncoderLayer(nn.Module):
    """Post-norm deformable self-attention + ReLU FFN over the flattened levels."""

    def __init__(self, d_model: int, dim_feedforward: int, n_levels: int, n_heads: int,
                 n_points: int) -> None:
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src: torch.Tensor, pos: torch.Tensor, reference_points: torch.Tensor,
                spatial_shapes: list[tuple[int, int]]) -> torch.Tensor:
        src = self.norm1(src + self.self_attn(src + pos, reference_points, src, spatial_shapes))
        # in-place ReLU: the (N, S, 1024) hidden layer is the largest tensor of the encoder
        return self.norm2(src + self.linear2(F.relu(self.linear1(src), inplace=True)))


class DeformableEncoder(nn.Module):
    """Stack of :class:`DeformableEncoderLayer` with a learned per-level embedding."""

    def __init__(self, d_model: int, num_layers: int, dim_feedforward: int, n_levels: int,
                 n_heads: int, n_points: int) -> None:
        super().__init__()
        self.level_embed = nn.Parameter(torch.empty(n_levels, d_model))
        nn.init.normal_(self.level_embed)
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList(
            DeformableEncoderLayer(d_model, dim_feedforward, n_levels, n_heads, n_points)
            for _ in range(num_layers))

    @staticmethod
    def reference_points(spatial_shapes: list[tuple[int, int]], device: torch.device,
                         dtype: torch.dtype) -> torch.Tensor:
        """Pixel centres of every level, normalised: (S, L, 2) as (x, y). No padding, so the
        valid ratios of the reference are all 1."""
        points = []
        for h, w in spatial_shapes:
            ys, xs = torch.meshgrid(torch.linspace(0.5, h - 0.5, h, dtype=dtype, device=device),
                                    torch.linspace(0.5, w - 0.5, w, dtype=dtype, device=device),
                                    indexing="ij")
            points.append(torch.stack((xs.reshape(-1) / w, ys.reshape(-1) / h), -1))
        ref = torch.cat(points, 0)
        return ref[:, None, :].expand(-1, len(spatial_shapes), -1)

    def forward(self, srcs: list[torch.Tensor], pos_embeds: list[torch.Tensor]) -> torch.Tensor:
        """srcs, pos_embeds: [(N, C, H_l, W_l)] -> (N, S, C), S = sum(H_l * W_l)."""
        shapes = [tuple(s.shape[-2:]) for s in srcs]
        src = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)
        pos = torch.cat([p.flatten(2).transpose(1, 2) + self.level_embed[i].view(1, 1, -1)
                         for i, p in enumerate(pos_embeds)], 1)
        ref = self.reference_points(shapes, src.device, src.dtype)
        ref = ref.unsqueeze(0).expand(src.shape[0], -1, -1, -1)
        for layer in self.encoder.layers:
            src = layer(src, pos, ref, shapes)
        return src


class MSDeformAttnPixelDecoder(nn.Module):
    """Deformable encoder on the three coarsest backbone levels, then an FPN step per finer level
    down to ``common_stride``, then a 1x1 ``mask_features`` conv.

    Args:
        in_channels: backbone channels, e.g. ``{"res2": 256, ..., "res5": 2048}``.
        in_strides: backbone strides for the same keys.
        conv_dim: hidden width (256 released).
        mask_dim: width of the per-pixel embeddings (256 released).
        num_encoder_layers, encoder_ffn, encoder_heads, encoder_points: deformable encoder sizes.
        common_stride: stride of the mask features (4).
    """

    def __init__(self, in_channels: dict[str, int], in_strides: dict[str, int], conv_dim: int = 256,
                 mask_dim: int = 256, num_encoder_layers: int = 6, encoder_ffn: int = 1024,
                 encoder_heads: int = 8, encoder_points: int = 4, common_stride: int = 4) -> None:
        super().__init__()
        names = sorted(in_channels, key=lambda k: in_strides[k])  # fine to coarse
        self.transformer_in = names[-3:][::-1]  # coarse to fine: res5, res4, res3
        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_channels[k], conv_dim, 1), nn.GroupNorm(32, conv_dim))
            for k in self.transformer_in)
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.constant_(proj[0].bias, 0)
        self.pe_layer = PositionEmbeddingSine(conv_dim // 2)
        self.transformer = DeformableEncoder(conv_dim, num_encoder_layers, encoder_ffn,
                                             len(self.transformer_in), encoder_heads,
                                             encoder_points)
        self.mask_features = nn.Conv2d(conv_dim, mask_dim, 1)
        nn.init.kaiming_uniform_(self.mask_features.weight, a=1)
        nn.init.constant_(self.mask_features.bias, 0)
        # FPN levels finer than the transformer's, coarse to fine (released: res2 only)
        self.fpn_in = [k for k in names if in_strides[k] >= common_stride][:-3][::-1]
        for i, k in enumerate(self.fpn_in, start=1):
            lateral = ConvNorm(in_channels[k], conv_dim, 1, bias=False,
                               norm=nn.GroupNorm(32, conv_dim))
            output = ConvNorm(conv_dim, conv_dim, 3, padding=1, bias=False,
                              norm=nn.GroupNorm(32, conv_dim), activation=F.relu)
            for conv in (lateral, output):
                nn.init.kaiming_uniform_(conv.weight, a=1)
            # names as the checkpoints write them
            self.add_module(f"adapter_{i}", lateral)
            self.add_module(f"layer_{i}", output)

    def forward(self, features: dict[str, torch.Tensor]
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """
        Args:
            features: backbone outputs {"res2": (N, C2, H/4, W/4), ...}.
        Returns:
            mask_features: (N, mask_dim, H/4, W/4).
            multi_scale: three (N, conv_dim, h, w) maps at strides 32, 16, 8 (decoder order).
        """
        # The official code casts the features to float32 here (its deformable-attention kernel
        # is float32 only); under autocast the convolutions would cast them straight back, and
        # in float32 the cast is a no-op, so the features go in as they are.
        srcs = [proj(features[k]) for proj, k in zip(self.input_proj, self.transformer_in)]
        pos = [self.pe_layer(s) for s in srcs]
        memory = self.transformer(srcs, pos)
        n, _, c = memory.shape
        # (N, h*w, C) tokens back to maps without a copy: NCHW views with channels-last strides
        outs = [m.view(n, *s.shape[-2:], c).permute(0, 3, 1, 2)
                for m, s in zip(memory.split([s.shape[-2] * s.shape[-1] for s in srcs], 1), srcs)]
        for i, k in enumerate(self.fpn_in, start=1):
            lateral = getattr(self, f"adapter_{i}")(features[k])
            up = F.interpolate(outs[-1], size=lateral.shape[-2:], mode="bilinear",
                               align_corners=False)
            outs.append(getattr(self, f"layer_{i}")(lateral + up))
        return self.mask_features(outs[-1]), outs[:3]
