"""Video-level scoring, top-k selection and mask resizing, as the official inference does."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def video_scores(class_logits: torch.Tensor, object_logits: torch.Tensor) -> torch.Tensor:
    """Score of every (query, class): ``sqrt(sigmoid(cls) * softmax(obj)[0])``.

    Args:
        class_logits: (Q, K+1) video-level (clip-averaged) class logits.
        object_logits: (Q, 2) video-level object logits.
    Returns:
        (Q, K) scores over the K real classes.
    """
    cls = class_logits[:, :-1].float().sigmoid()
    obj = F.softmax(object_logits.float(), dim=-1)[:, :1]
    return (cls * obj).sqrt()


def select_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top ``k`` (query, class) pairs over the flattened (Q, K) scores, best first.

    The official code takes ``topk(sorted=False)``; sorting does not change the set, and a sorted
    list reads better in files. Returns (scores (k,), queries (k,), labels (k,)).
    """
    num_classes = scores.shape[1]
    top, idx = scores.flatten().topk(min(k, scores.numel()), sorted=True)
    return top, torch.div(idx, num_classes, rounding_mode="floor"), idx % num_classes


def resize_mask_logits(mask_logits: torch.Tensor, padded_size: tuple[int, int],
                       image_size: tuple[int, int], output_size: tuple[int, int]) -> torch.Tensor:
    """Low-resolution mask logits to boolean masks at the output size.

    Upsample bilinearly to the padded input, crop the padding, resize bilinearly to the output
    size, threshold at 0. Works per frame, so callers can stream frames and chunk queries.

    Args:
        mask_logits: (N, F, Hp/4, Wp/4) logits (N queries, F frames).
        padded_size: (Hp, Wp) padded model input size.
        image_size: (h, w) model input size before padding.
        output_size: (H, W) original video size.
    Returns:
        (N, F, H, W) bool.
    """
    x = F.interpolate(mask_logits.float(), size=padded_size, mode="bilinear", align_corners=False)
    x = x[:, :, : image_size[0], : image_size[1]]
    x = F.interpolate(x, size=output_size, mode="bilinear", align_corners=False)
    return x > 0
