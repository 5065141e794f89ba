"""Resize stage: shorter side to `short` (capped by `max_size`), the way the checkpoints saw it.

The released OVFormer models were trained and evaluated with detectron2's
`ResizeShortestEdge` (shape rule below) followed by `ResizeTransform.apply_image`, which
resizes uint8 images with PIL `Image.BILINEAR`. We call PIL too, so pixels match the
reference exactly rather than approximately. Note PIL's bilinear filter widens with the
scale when shrinking (it antialiases a downscale) and is plain half-pixel bilinear when
enlarging; `torch.nn.functional.interpolate(..., antialias=True)` is close but not equal.

Example:
    >>> nh, nw = resized_shape(272, 640, short=360, max_size=1333)   # (360, 847)
    >>> x = resize_frames(frames_to_tensor([f.rgb for f in clip]), (nh, nw))
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

__all__ = ["resized_shape", "resize_frames", "frames_to_tensor", "resize_shorter_side"]


def resized_shape(h: int, w: int, short: int, max_size: int = sys.maxsize) -> tuple[int, int]:
    """Output (height, width) of detectron2 `ResizeShortestEdge.get_output_shape`.

    The shorter side becomes `short`; if the longer side would then exceed `max_size`,
    both are scaled down so it equals `max_size`. Rounding is `int(x + 0.5)`, as in
    detectron2 (not Python's banker's `round`).

    Example: (272, 640, 360, 1333) -> (360, 847); (1080, 1920, 800, 1333) -> (750, 1333).
    """
    if h <= 0 or w <= 0 or short <= 0 or max_size <= 0:
        raise ValueError(f"sizes must be positive, got h={h} w={w} short={short} max_size={max_size}")
    size = short * 1.0
    scale = size / min(h, w)
    if h < w:
        newh, neww = size, scale * w
    else:
        newh, neww = scale * h, size
    if max(newh, neww) > max_size:
        scale = max_size * 1.0 / max(newh, neww)
        newh = newh * scale
        neww = neww * scale
    return int(newh + 0.5), int(neww + 0.5)


def frames_to_tensor(frames: Sequence[np.ndarray]) -> torch.Tensor:
    """Stack (H, W, 3) uint8 RGB frames into a (T, 3, H, W) float32 tensor with values 0..255."""
    if len(frames) == 0:
        raise ValueError("frames_to_tensor needs at least one frame")
    arr = np.stack([np.asarray(f) for f in frames])  # (T, H, W, 3)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"expected frames of shape (H, W, 3), got {arr.shape[1:]}")
    return torch.from_numpy(arr).permute(0, 3, 1, 2).to(torch.float32).contiguous()


def resize_frames(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize (T, 3, H, W) frames to `size` = (height, width) with PIL bilinear.

    Args:
        frames: uint8, or float holding pixel values in 0..255 (e.g. from
            `frames_to_tensor`). Float input is rounded to uint8 before PIL; frames that
            came from a decoder hold integers, so this loses nothing and both dtypes give
            the same result.
        size: output (height, width), usually from `resized_shape`.

    Returns:
        (T, 3, height, width) float32 tensor, values 0..255, on the input's device.
    """
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"expected (T, 3, H, W) frames, got shape {tuple(frames.shape)}")
    nh, nw = int(size[0]), int(size[1])
    if nh <= 0 or nw <= 0:
        raise ValueError(f"size must be positive, got {size}")
    device = frames.device
    if frames.dtype != torch.uint8:
        if frames.numel() and (float(frames.min()) < 0 or float(frames.max()) > 255):
            raise ValueError("float frames must hold pixel values in 0..255 (resize before normalising)")
        frames = frames.round().to(torch.uint8)
    if tuple(frames.shape[-2:]) == (nh, nw):
        return frames.to(torch.float32)
    hwc = frames.permute(0, 2, 3, 1).contiguous().cpu().numpy()  # (T, H, W, 3)
    # PIL takes (width, height); BILINEAR is what detectron2's ResizeTransform uses.
    out = np.stack([np.asarray(Image.fromarray(f).resize((nw, nh), Image.BILINEAR)) for f in hwc])
    return torch.from_numpy(out).permute(0, 3, 1, 2).to(device=device, dtype=torch.float32).contiguous()


def resize_shorter_side(frames: torch.Tensor, short: int, max_size: int = sys.maxsize) -> torch.Tensor:
    """`resize_frames` to `resized_shape(H, W, short, max_size)`: (T, 3, H, W) -> float32."""
    size = resized_shape(int(frames.shape[-2]), int(frames.shape[-1]), short, max_size)
    return resize_frames(frames, size)
