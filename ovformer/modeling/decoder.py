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
    pred_masks: (B, Q, T, H/4, W/4) mask logits on the padded grid; None for the earlier
        layers (``aux_outputs``) when their masks are not asked for (the default in eval mode).
    """
    pred_logits: torch.Tensor
    pred_object_logits: torch.Tensor
    pred_masks: torch.Tensor | None


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

    def position(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C, h, w) level map -> (B, T, hidden_dim, h, w) position encoding: spatio-temporal
        over the clip (image decoders override this with a per-frame 2D encoding)."""
        return self.pe_layer(x)

    def _heads(self, output: torch.Tensor, mask_tokens: torch.Tensor | None,
               attn_tokens: torch.Tensor | None, clip_image_embeds: torch.Tensor,
               text_embeds: torch.Tensor) -> tuple[LayerPrediction, torch.Tensor,
                                                    torch.Tensor | None]:
        """Heads on (Q, B, C) queries.

        Args:
            mask_tokens: (B, T, H/4, W/4, C) mask features, or None to skip the full masks.
            attn_tokens: (B, T*h*w, C) mask features resized to the next layer's level, or None
                (last layer).
        Returns:
            the predictions, the normalised queries (B, Q, C), and the next layer's attention
            mask (B, 1, Q, T*h*w) (True = blocked, shared by the heads) or None.
        """
        queries = self.decoder_norm(output).transpose(0, 1)
        obj = self.object_embed(queries)
        cls = self.class_embed(queries, clip_image_embeds, text_embeds)
        embed = self.mask_embed(queries)  # (B, Q, C)
        masks = blocked = None
        if mask_tokens is not None:
            # einsum("bqc,bthwc->bqthw") as one bmm reading the channels-last features in place
            b, t, hm, wm, c = mask_tokens.shape
            masks = torch.bmm(embed, mask_tokens.view(b, -1, c).transpose(1, 2))
            masks = masks.view(b, -1, t, hm, wm)
        if attn_tokens is not None:
            # The reference resizes the full masks to the level's size; resizing (bilinear) and
            # the mask product are both linear, so the product with resized features is the
            # same map (to rounding) without full-resolution masks.
            small = torch.bmm(embed, attn_tokens.transpose(1, 2))  # (B, Q, T*h*w)
            blocked = (small.sigmoid() < 0.5).unsqueeze(1).detach()
        return LayerPrediction(cls, obj, masks), queries, blocked

    def forward(self, multi_scale: list[torch.Tensor], mask_features: torch.Tensor,
                clip_image_embeds: torch.Tensor, text_embeds: torch.Tensor,
                batch_size: int, aux_masks: bool | None = None) -> ClipOutput:
        """
        Args:
            multi_scale: three (B*T, C, h_l, w_l) maps, coarse first.
            mask_features: (B*T, mask_dim, H/4, W/4).
            clip_image_embeds: (T, B, D).
            text_embeds: (K, D).
            batch_size: B (frames are grouped video-major: index = b * T + t).
            aux_masks: compute the earlier layers' full masks (deep supervision); default: in
                training mode only. Inference reads only the last layer's, and these products
                were ~8% of the model's time.
        """
        bt, cm, hm, wm = mask_features.shape
        b, t = batch_size, bt // batch_size
        aux_masks = self.training if aux_masks is None else aux_masks

        def tokens(x: torch.Tensor) -> torch.Tensor:
            """(B*T, C, h, w) -> (B, T, h, w, C); free for channels-last maps (the pixel
            decoder's are)."""
            return x.permute(0, 2, 3, 1).contiguous().view(b, t, *x.shape[-2:], x.shape[1])

        mask_tokens = tokens(mask_features)
        srcs, poss, attn_tokens = [], [], []
        for i, x in enumerate(multi_scale):
            h, w = x.shape[-2:]
            resized = F.interpolate(mask_features, size=(h, w), mode="bilinear",
                                    align_corners=False)
            attn_tokens.append(tokens(resized).view(b, t * h * w, cm))
            pos = self.position(x.view(b, t, -1, h, w)).flatten(3)  # (B, T, C, hw)
            src = x.flatten(2) + self.level_embed.weight[i][None, :, None]
            c = src.shape[1]
            # (B, T, C, hw) -> (T*hw, B, C): the memory runs frame-major over the whole clip
            poss.append(pos.view(b, t, c, h * w).permute(1, 3, 0, 2).flatten(0, 1))
            srcs.append(src.view(b, t, c, h * w).permute(1, 3, 0, 2).flatten(0, 1))
        query_pos = self.query_embed.weight.unsqueeze(1).expand(-1, b, -1)
        output = self.query_feat.weight.unsqueeze(1).expand(-1, b, -1)
        preds = []
        only = self.num_layers == 0  # the initial prediction is also the last
        pred, queries, blocked = self._heads(output, mask_tokens if aux_masks or only else None,
                                             None if only else attn_tokens[0], clip_image_embeds,
                                             text_embeds)
        preds.append(pred)
        for i in range(self.num_layers):
            level = i % self.num_feature_levels
            # a query whose mask is empty everywhere attends everywhere instead of nowhere
            blocked = blocked & ~blocked.all(-1, keepdim=True)
            output = self.transformer_cross_attention_layers[i](
                output, srcs[level], memory_mask=blocked, pos=poss[level], query_pos=query_pos)
            output = self.transformer_self_attention_layers[i](output, query_pos=query_pos)
            output = self.transformer_ffn_layers[i](output)
            last = i == self.num_layers - 1
            pred, queries, blocked = self._heads(
                output, mask_tokens if aux_masks or last else None,
                None if last else attn_tokens[(i + 1) % self.num_feature_levels],
                clip_image_embeds, text_embeds)
            preds.append(pred)
        last = preds[-1]
        return ClipOutput(last.pred_logits, last.pred_object_logits, last.pred_masks,
                          pred_embds=queries, aux_outputs=preds[:-1])
