"""The image meta-architecture of the LVIS-trained checkpoints: every frame is its own image.

The official code runs these checkpoints on videos (``OVFormerVideo``) with Mask2Former's image
decoder: the same layers and heads as the video decoder (the checkpoints share one key layout),
but the batch axis is the frame, the position encoding is 2D over each frame's padded map, and
the classifier's cross-attention sees only the frame's own CLIP embedding (memory length 1).
That is exactly the video decoder run on clips of one frame with a 2D position encoding, so this
module reuses it and changes only the encoding and the shapes at the boundary.
"""
from __future__ import annotations

import torch

from ..layers import PositionEmbeddingSine
from .classifier import EmbeddingAlignmentClassifier
from .decoder import ClipOutput, LayerPrediction, VideoMaskedTransformerDecoder
from .ovformer import OVFormer


class ImageMaskedTransformerDecoder(VideoMaskedTransformerDecoder):
    """Mask2Former's image decoder with OVFormer's heads (arguments as the video decoder's).

    Queries are per frame; nothing is shared between the frames of a batch.
    """

    def __init__(self, classifier: EmbeddingAlignmentClassifier, hidden_dim: int = 256,
                 num_queries: int = 100, nheads: int = 8, dim_feedforward: int = 2048,
                 dec_layers: int = 9, mask_dim: int = 256, pre_norm: bool = False,
                 num_feature_levels: int = 3) -> None:
        super().__init__(classifier, hidden_dim, num_queries, nheads, dim_feedforward,
                         dec_layers, mask_dim, pre_norm, num_feature_levels)
        # no parameters either way, so the state dict is the video decoder's
        self.pe_layer = PositionEmbeddingSine(hidden_dim // 2)

    def position(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C, h, w) -> (B, T, hidden_dim, h, w): the 2D encoding of each frame on its own
        (normalised over the whole padded map, as the reference passes no padding mask)."""
        b, t, c, h, w = x.shape
        return self.pe_layer(x.reshape(b * t, c, h, w)).view(b, t, -1, h, w)

    def forward(self, multi_scale: list[torch.Tensor], mask_features: torch.Tensor,
                clip_image_embeds: torch.Tensor, text_embeds: torch.Tensor,
                aux_masks: bool | None = None) -> ClipOutput:
        """
        Args:
            multi_scale: three (N, C, h_l, w_l) maps of N independent frames, coarse first.
            mask_features: (N, mask_dim, Hp/4, Wp/4).
            clip_image_embeds: (N, D) one CLIP image embedding per frame.
            text_embeds: (K, D) class text embeddings.
            aux_masks: as for the video decoder.
        Returns:
            :class:`ClipOutput` with one row per frame: ``pred_logits`` (N, Q, K+1),
            ``pred_object_logits`` (N, Q, 2), ``pred_masks`` (N, Q, Hp/4, Wp/4),
            ``pred_embds`` (N, Q, C).
        """
        n = mask_features.shape[0]
        if clip_image_embeds.shape[0] != n:
            raise ValueError(f"{clip_image_embeds.shape[0]} CLIP embeddings for {n} frames")
        # a batch of N one-frame clips; the classifier's memory is (1, N, D): each frame's own
        out = super().forward(multi_scale, mask_features, clip_image_embeds[None], text_embeds,
                              batch_size=n, aux_masks=aux_masks)
        squeeze = lambda m: None if m is None else m[:, :, 0]  # noqa: E731  (N, Q, 1, h, w)
        aux = [LayerPrediction(p.pred_logits, p.pred_object_logits, squeeze(p.pred_masks))
               for p in out.aux_outputs or []]
        return ClipOutput(out.pred_logits, out.pred_object_logits, squeeze(out.pred_masks),
                          pred_embds=out.pred_embds, aux_outputs=aux)


class OVFormerImage(OVFormer):
    """OVFormer with the image decoder: frames are a batch of independent images.

    Built by :func:`ovformer.factory.create_model` for ``meta_arch: image`` (the LVIS-trained
    checkpoints). Same constructor and state dict as :class:`OVFormer`; ``decoder`` is an
    :class:`ImageMaskedTransformerDecoder`.
    """

    def forward(self, frames: torch.Tensor, clip_embeds: torch.Tensor,  # type: ignore[override]
                text_embeds: torch.Tensor, aux_masks: bool | None = None) -> ClipOutput:
        """
        Args:
            frames: (N, 3, H, W) RGB 0..255 at model resolution, N independent images (the frames
                of a window; the batch size changes nothing but speed).
            clip_embeds: (N, D) CLIP image embedding of each frame.
            text_embeds: (K, D) class text embeddings.
            aux_masks: masks of the earlier decoder layers too; default: in training mode only.
        Returns:
            :class:`ClipOutput` per frame: ``pred_logits`` (N, Q, K+1), ``pred_object_logits``
            (N, Q, 2), ``pred_masks`` (N, Q, Hp/4, Wp/4) logits on the padded grid,
            ``pred_embds`` (N, Q, C) (what the frame tracker matches).
        """
        if frames.dim() != 4 or clip_embeds.shape[:1] != frames.shape[:1]:
            raise ValueError(f"an image model takes frames (N, 3, H, W) and clip_embeds (N, D); "
                             f"got {tuple(frames.shape)} and {tuple(clip_embeds.shape)}")
        mask_features, multi_scale = self.features(frames)
        return self.decoder(multi_scale, mask_features, clip_embeds, text_embeds,
                            aux_masks=aux_masks)
