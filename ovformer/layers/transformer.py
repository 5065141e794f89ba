"""Post-/pre-norm attention and FFN blocks of Mask2Former's decoder, and its MLP head."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _with_pos(x: torch.Tensor, pos: torch.Tensor | None) -> torch.Tensor:
    return x if pos is None else x + pos


def _xavier(module: nn.Module) -> None:
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)


class SelfAttentionLayer(nn.Module):
    """Query self-attention with residual and LayerNorm. Tensors are sequence-first: (L, B, C)."""

    def __init__(self, d_model: int, nhead: int, normalize_before: bool = False) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead)
        self.norm = nn.LayerNorm(d_model)
        self.normalize_before = normalize_before
        _xavier(self)

    def forward(self, tgt: torch.Tensor, query_pos: torch.Tensor | None = None) -> torch.Tensor:
        x = self.norm(tgt) if self.normalize_before else tgt
        q = k = _with_pos(x, query_pos)
        out = tgt + self.self_attn(q, k, value=x, need_weights=False)[0]
        return out if self.normalize_before else self.norm(out)


class CrossAttentionLayer(nn.Module):
    """Queries attend to a memory; (Lq, B, C) x (Lk, B, C). ``memory_mask``: (B*heads, Lq, Lk)
    bool, True = may not attend."""

    def __init__(self, d_model: int, nhead: int, normalize_before: bool = False) -> None:
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead)
        self.norm = nn.LayerNorm(d_model)
        self.normalize_before = normalize_before
        _xavier(self)

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor,
                memory_mask: torch.Tensor | None = None, pos: torch.Tensor | None = None,
                query_pos: torch.Tensor | None = None) -> torch.Tensor:
        x = self.norm(tgt) if self.normalize_before else tgt
        out = tgt + self.multihead_attn(query=_with_pos(x, query_pos), key=_with_pos(memory, pos),
                                        value=memory, attn_mask=memory_mask,
                                        need_weights=False)[0]
        return out if self.normalize_before else self.norm(out)


class FFNLayer(nn.Module):
    """Two-layer ReLU feed-forward block with residual and LayerNorm."""

    def __init__(self, d_model: int, dim_feedforward: int = 2048,
                 normalize_before: bool = False) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.normalize_before = normalize_before
        _xavier(self)

    def forward(self, tgt: torch.Tensor) -> torch.Tensor:
        x = self.norm(tgt) if self.normalize_before else tgt
        out = tgt + self.linear2(F.relu(self.linear1(x)))
        return out if self.normalize_before else self.norm(out)


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU between them (keys ``layers.{i}``)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        outs = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims, outs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x
