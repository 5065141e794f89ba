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


# --- image models run on video (official ``OVFormerVideo.instance_inference``) ---------------

def frame_gate(frame_scores: torch.Tensor, scores: torch.Tensor,
               ratio: float = 0.1) -> torch.Tensor:
    """Frames whose mask a selected pair drops: its per-frame score is under ``ratio`` times its
    video score (the reference then sets that frame's mask logits to -1, an empty mask).

    Args:
        frame_scores: (k, T) per-frame :func:`video_scores` of each selected (query, class).
        scores: (k,) their video-level scores.
    Returns:
        (k, T) bool, True where the frame is dropped.
    """
    return frame_scores < scores[:, None] * ratio


def mask_probability_sums(mask_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of sigmoid over the pixels with logit > 0, and their count, per row.

    Sums over any subset of frames add up, so a long video can be scored window by window.

    Args:
        mask_logits: (k, ...) low-resolution logits (padding included, as the reference).
    Returns:
        two (k,) float64 tensors: probability sum and pixel count.
    """
    x = mask_logits.flatten(1).float()
    fg = x > 0
    return (x.sigmoid() * fg).sum(1, dtype=torch.float64), fg.sum(1).double()


def rescore_by_mask(scores: torch.Tensor, prob_sum: torch.Tensor, count: torch.Tensor,
                    eps: float = 1e-6) -> torch.Tensor:
    """Final scores: class scores (k,) times the mean foreground probability of the pair's mask
    (``eps`` keeps an empty mask at score 0)."""
    return (scores.double() * prob_sum / (count + eps)).to(scores.dtype)
