"""Post-/pre-norm attention and FFN blocks of Mask2Former's decoder, and its MLP head.

The attention blocks keep ``nn.MultiheadAttention`` modules (the checkpoints' keys are
``in_proj_weight``, ``in_proj_bias``, ``out_proj.*``) but run them through :func:`attention`,
which is ``F.multi_head_attention_forward`` without its copies: the decoder's masked attention
passes a (B, 1, Lq, Lk) boolean mask that broadcasts over heads, where ``nn.MultiheadAttention``
wants it repeated per head and turns it into a float mask first.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _with_pos(x: torch.Tensor, pos: torch.Tensor | None) -> torch.Tensor:
    return x if pos is None else x + pos


def attention(mha: nn.MultiheadAttention, query: torch.Tensor, key: torch.Tensor,
              value: torch.Tensor, blocked: torch.Tensor | None = None) -> torch.Tensor:
    """``mha(query, key, value, attn_mask=blocked)[0]`` for sequence-first inputs.

    Args:
        query: (Lq, B, C); key, value: (Lk, B, C).
        blocked: bool, True = may not attend; (B, 1 or heads, Lq, Lk), or (B*heads, Lq, Lk) as
            ``nn.MultiheadAttention`` takes it.
    Returns:
        (Lq, B, C)
    """
    lq, b, c = query.shape
    h = mha.num_heads
    w_q, w_k, w_v = mha.in_proj_weight.chunk(3)
    b_q, b_k, b_v = mha.in_proj_bias.chunk(3)

    def heads(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return F.linear(x, w, bias).view(x.shape[0], b, h, c // h).permute(1, 2, 0, 3)

    mask = None
    if blocked is not None:
        mask = ~(blocked.view(b, h, lq, -1) if blocked.dim() == 3 else blocked)
    out = F.scaled_dot_product_attention(heads(query, w_q, b_q), heads(key, w_k, b_k),
                                         heads(value, w_v, b_v), attn_mask=mask)
    return F.linear(out.permute(2, 0, 1, 3).reshape(lq, b, c), mha.out_proj.weight,
                    mha.out_proj.bias)


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
        out = tgt + attention(self.self_attn, q, k, x)
        return out if self.normalize_before else self.norm(out)


class CrossAttentionLayer(nn.Module):
    """Queries attend to a memory; (Lq, B, C) x (Lk, B, C). ``memory_mask``: bool, True = may
    not attend, (B, 1, Lq, Lk) (shared by the heads) or (B*heads, Lq, Lk)."""

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
        out = tgt + attention(self.multihead_attn, _with_pos(x, query_pos),
                              _with_pos(memory, pos), memory, memory_mask)
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
        out = tgt + self.linear2(F.relu(self.linear1(x), inplace=True))
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
