"""OVFormer: backbone -> pixel decoder -> video decoder with the alignment classifier, per clip."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .decoder import ClipOutput, VideoMaskedTransformerDecoder


class OVFormer(nn.Module):
    """Runs one clip (or a batch of clips) and returns raw per-clip predictions.

    The module holds no per-video state and no vocabulary: CLIP image embeddings and class text
    embeddings are arguments of every call.

    Args:
        backbone: maps (N, 3, H, W) to {"res2".."res5"}.
        pixel_decoder: maps backbone features to (mask_features, three multi-scale maps).
        decoder: the video masked-attention decoder with its heads.
        pixel_mean, pixel_std: RGB normalisation on the 0..255 scale.
        size_divisibility: inputs are zero-padded (after normalisation) to a multiple of this.
    """

    def __init__(self, backbone: nn.Module, pixel_decoder: nn.Module,
                 decoder: VideoMaskedTransformerDecoder,
                 pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53),
                 pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375),
                 size_divisibility: int = 32) -> None:
        super().__init__()
        self.backbone = backbone
        self.pixel_decoder = pixel_decoder
        self.decoder = decoder
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(1, 3, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(1, 3, 1, 1), False)
        self.size_divisibility = size_divisibility

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB 0..255 -> normalised and zero-padded (N, 3, Hp, Wp)."""
        x = (frames - self.pixel_mean) / self.pixel_std
        d = self.size_divisibility
        h, w = x.shape[-2:]
        pad_h, pad_w = (d - h % d) % d, (d - w % d) % d
        return F.pad(x, (0, pad_w, 0, pad_h)) if pad_h or pad_w else x

    def features(self, frames: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(N, 3, H, W) RGB 0..255 -> mask features (N, mask_dim, Hp/4, Wp/4) and the three
        multi-scale maps (N, C, h_l, w_l), coarse first."""
        # channels-last (NHWC) convolutions are ~15% faster on CPU, and the pixel decoder's
        # token layout (N, H*W, C) is then a view of its input maps rather than a copy
        x = self.preprocess(frames).contiguous(memory_format=torch.channels_last)
        return self.pixel_decoder(self.backbone(x))

    def forward(self, frames: torch.Tensor, clip_embeds: torch.Tensor,
                text_embeds: torch.Tensor, aux_masks: bool | None = None) -> ClipOutput:
        """
        Args:
            frames: (B, T, 3, H, W) RGB 0..255 at model resolution.
            clip_embeds: (B, T, D) CLIP image embedding of every frame.
            text_embeds: (K, D) class text embeddings.
            aux_masks: masks of the earlier decoder layers too (``aux_outputs``); default: in
                training mode only (their ``pred_masks`` are None otherwise).
        Returns:
            :class:`ClipOutput`; masks are (B, Q, T, Hp/4, Wp/4) on the padded grid.
        """
        b, t = frames.shape[:2]
        if clip_embeds.shape[:2] != (b, t):
            raise ValueError(f"clip_embeds {tuple(clip_embeds.shape)} does not match frames "
                             f"{tuple(frames.shape)}: expected ({b}, {t}, D)")
        mask_features, multi_scale = self.features(frames.flatten(0, 1))
        return self.decoder(multi_scale, mask_features, clip_embeds.transpose(0, 1),
                            text_embeds, batch_size=b, aux_masks=aux_masks)
