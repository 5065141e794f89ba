"""Mask2Former-VIS masked-attention transformer decoder with OVFormer's heads."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import (MLP, CrossAttentionLayer, FFNLayer, PositionEmbeddingSine3D,
                      SelfAttentionLayer)
from .classifier import EmbeddingAlignmentClassifier


@dataclass
class LayerPrediction:
    """Predictions of one decoder layer.

    pred_logits: (B, Q, K+1) class logits, last column "no object".
    pred_object_logits: (B, Q, 2) [object, no object] logits.
    pred_masks: (B, Q, T, H/4, W/4) mask logits on the padded grid.
    """
    pred_logits: torch.Tensor
    pred_object_logits: torch.Tensor
    pred_masks: torch.Tensor


@dataclass
class ClipOutput(LayerPrediction):
    """Final predictions for one clip, plus ``pred_embds`` (B, Q, C) for association and the
    earlier layers' predictions in ``aux_outputs`` (deep supervision)."""
    pred_embds: torch.Tensor = None  # type: ignore[assignment]
    aux_outputs: list[LayerPrediction] | None = None


class VideoMaskedTransformerDecoder(nn.Module):
    """Queries describe an instance over every frame of the clip; each layer cross-attends to one
    feature level (round robin, coarse first) only where the query's current mask is > 0.5.

    Args:
        classifier: the open-vocabulary classification head.
        hidden_dim, num_queries, nheads, dim_feedforward: sizes (256, 100, 8, 2048 released).
        dec_layers: transformer layers, not counting the initial prediction (9 released).
        mask_dim: per-pixel embedding width (256).
        pre_norm: pre-LayerNorm blocks (False released).
        num_feature_levels: levels of the pixel decoder used round robin (3).
    """

    def __init__(self, classifier: EmbeddingAlignmentClassifier, hidden_dim: int = 256,
                 num_queries: int = 100, nheads: int = 8, dim_feedforward: int = 2048,
                 dec_layers: int = 9, mask_dim: int = 256, pre_norm: bool = False,
                 num_feature_levels: int = 3) -> None:
        super().__init__()
        self.num_heads, self.num_layers = nheads, dec_layers
        self.num_feature_levels = num_feature_levels
        self.pe_layer = PositionEmbeddingSine3D(hidden_dim // 2)
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(hidden_dim, nheads, pre_norm) for _ in range(dec_layers))
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(hidden_dim, nheads, pre_norm) for _ in range(dec_layers))
        self.transformer_ffn_layers = nn.ModuleList(
            FFNLayer(hidden_dim, dim_feedforward, pre_norm) for _ in range(dec_layers))
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.level_embed = nn.Embedding(num_feature_levels, hidden_dim)
        self.class_embed = classifier
        self.object_embed = MLP(hidden_dim, hidden_dim, 2, 2)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)

    def _heads(self, output: torch.Tensor, mask_features: torch.Tensor,
               clip_image_embeds: torch.Tensor, text_embeds: torch.Tensor,
               attn_size: tuple[int, int]) -> tuple[LayerPrediction, torch.Tensor, torch.Tensor]:
        """Heads on (Q, B, C) queries. Returns the predictions, the normalised queries (B, Q, C)
        and the attention mask (B*heads, Q, T*h*w) for the next layer (True = blocked)."""
        queries = self.decoder_norm(output).transpose(0, 1)
        obj = self.object_embed(queries)
        cls = self.class_embed(queries, clip_image_embeds, text_embeds)
        masks = torch.einsum("bqc,btchw->bqthw", self.mask_embed(queries), mask_features)
        b, q, t = masks.shape[:3]
        small = F.interpolate(masks.flatten(0, 1), size=attn_size, mode="bilinear",
                              align_corners=False)
        blocked = small.sigmoid().view(b, q, -1) < 0.5
        blocked = blocked.unsqueeze(1).expand(-1, self.num_heads, -1, -1).flatten(0, 1).detach()
        return LayerPrediction(cls, obj, masks), queries, blocked

    def forward(self, multi_scale: list[torch.Tensor], mask_features: torch.Tensor,
                clip_image_embeds: torch.Tensor, text_embeds: torch.Tensor,
                batch_size: int) -> ClipOutput:
        """
        Args:
            multi_scale: three (B*T, C, h_l, w_l) maps, coarse first.
            mask_features: (B*T, mask_dim, H/4, W/4).
            clip_image_embeds: (T, B, D).
            text_embeds: (K, D).
            batch_size: B (frames are grouped video-major: index = b * T + t).
        """
        bt, cm, hm, wm = mask_features.shape
        b, t = batch_size, bt // batch_size
        mask_features = mask_features.view(b, t, cm, hm, wm)
        srcs, poss, sizes = [], [], []
        for i, x in enumerate(multi_scale):
            h, w = x.shape[-2:]
            sizes.append((h, w))
            pos = self.pe_layer(x.view(b, t, -1, h, w)).flatten(3)  # (B, T, C, hw)
            src = x.flatten(2) + self.level_embed.weight[i][None, :, None]
            c = src.shape[1]
            # (B, T, C, hw) -> (T*hw, B, C): the memory runs frame-major over the whole clip
            poss.append(pos.view(b, t, c, h * w).permute(1, 3, 0, 2).flatten(0, 1))
            srcs.append(src.view(b, t, c, h * w).permute(1, 3, 0, 2).flatten(0, 1))
        query_pos = self.query_embed.weight.unsqueeze(1).expand(-1, b, -1)
        output = self.query_feat.weight.unsqueeze(1).expand(-1, b, -1)
        preds = []
        pred, queries, blocked = self._heads(output, mask_features, clip_image_embeds,
                                             text_embeds, sizes[0])
        preds.append(pred)
        for i in range(self.num_layers):
            level = i % self.num_feature_levels
            # a query whose mask is empty everywhere attends everywhere instead of nowhere
            blocked = blocked & ~blocked.all(-1, keepdim=True)
            output = self.transformer_cross_attention_layers[i](
                output, srcs[level], memory_mask=blocked, pos=poss[level], query_pos=query_pos)
            output = self.transformer_self_attention_layers[i](output, query_pos=query_pos)
            output = self.transformer_ffn_layers[i](output)
            pred, queries, blocked = self._heads(
                output, mask_features, clip_image_embeds, text_embeds,
                sizes[(i + 1) % self.num_feature_levels])
            preds.append(pred)
        last = preds[-1]
        return ClipOutput(last.pred_logits, last.pred_object_logits, last.pred_masks,
                          pred_embds=queries, aux_outputs=preds[:-1])
