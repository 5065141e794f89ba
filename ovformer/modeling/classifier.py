"""The unified-embedding-alignment classifier: queries aligned to CLIP space, scored against text."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import CrossAttentionLayer


class EmbeddingAlignmentClassifier(nn.Module):
    """Maps decoder queries to CLIP width, lets them attend to the clip's CLIP image embeddings,
    then scores them against class text embeddings given at call time.

    Args:
        hidden_dim: decoder width (256).
        clip_dim: CLIP embedding width (512 for ViT-B/32).
        num_heads: heads of the alignment cross-attention (8).
        temperature: scale of the cosine logits (50).
    """

    def __init__(self, hidden_dim: int = 256, clip_dim: int = 512, num_heads: int = 8,
                 temperature: float = 50.0) -> None:
        super().__init__()
        self.linear = nn.Sequential(nn.Linear(hidden_dim, clip_dim // 2), nn.ReLU(),
                                    nn.Linear(clip_dim // 2, clip_dim))
        self.cross_attention = CrossAttentionLayer(clip_dim, num_heads)
        self.temperature = temperature

    def embed(self, queries: torch.Tensor, clip_image_embeds: torch.Tensor) -> torch.Tensor:
        """(B, Q, C) queries and (T, B, D) image embeddings -> (B, Q, D) unit-norm query
        embeddings in CLIP space."""
        x = self.linear(queries).transpose(0, 1)  # (Q, B, D)
        x = self.cross_attention(x, clip_image_embeds).transpose(0, 1)
        return F.normalize(x, p=2, dim=-1)

    def forward(self, queries: torch.Tensor, clip_image_embeds: torch.Tensor,
                text_embeds: torch.Tensor) -> torch.Tensor:
        """
        Args:
            queries: (B, Q, C) normalised decoder outputs.
            clip_image_embeds: (T, B, D) one CLIP image embedding per frame of the clip.
            text_embeds: (K, D) class text embeddings, used as given: CLIP's are unit norm, and
                a checkpoint's stored ``zs_weight`` is used exactly as stored, as the reference
                does (its columns are not re-normalised after loading).
        Returns:
            (B, Q, K + 1) logits; the last column is the zero "no object" column.
        """
        x = self.temperature * self.embed(queries, clip_image_embeds)
        weight = text_embeds.to(x.dtype)
        weight = torch.cat([weight, weight.new_zeros(1, weight.shape[1])], 0)  # (K+1, D)
        return x @ weight.t()
