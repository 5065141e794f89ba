"""Clip-consistent augmentation: one resize, flip and crop drawn per clip.

As in the released recipe (`MIN_SIZE_TRAIN_SAMPLING: choice_by_clip`, `RANDOM_FLIP:
flip_by_clip`), every frame of a clip gets the same transform: the decoder's queries
describe an instance over the whole clip, so frames must stay geometrically consistent.
Images are resized bilinearly and masks with nearest neighbour (detectron2's
`ResizeShortestEdge` does the same with PIL).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


def shorter_side_size(h: int, w: int, short: int, max_size: int) -> tuple[int, int]:
    """Output (h, w) when the shorter side is scaled to ``short`` and the longer side is
    capped at ``max_size`` (detectron2 `ResizeShortestEdge.get_output_shape` rounding)."""
    scale = short / min(h, w)
    nh, nw = h * scale, w * scale
    if max(nh, nw) > max_size:
        scale = max_size / max(nh, nw)
        nh, nw = nh * scale, nw * scale
    return int(nh + 0.5), int(nw + 0.5)


@dataclass(frozen=True)
class ClipAugmentation:
    """Draws one geometric transform per clip and applies it to frames and masks.

    Attributes:
        min_sizes: shorter-side sizes to choose from (uniformly, once per clip).
        max_size: cap on the longer side after resizing.
        flip: horizontal flip with probability 0.5 (once per clip).
        crop: None, or a (min, max) fraction of the resized height/width to crop to,
            drawn once per clip (a relative-range crop; the released LV-VIS recipe has it off).
    """

    min_sizes: tuple[int, ...] = (360, 480)
    max_size: int = 1333
    flip: bool = True
    crop: tuple[float, float] | None = None

    def __call__(self, rng: np.random.Generator, frames: list[np.ndarray], masks: np.ndarray
                 ) -> tuple[list[np.ndarray], np.ndarray]:
        """Transform a clip.

        Args:
            rng: the clip's generator (the draws happen in a fixed order: size, flip, crop).
            frames: T arrays (H, W, 3) uint8, all the same size.
            masks: (N, T, H, W) bool instance masks.

        Returns:
            (frames, masks) transformed, shapes (H', W', 3) and (N, T, H', W').
        """
        h, w = frames[0].shape[:2]
        short = int(self.min_sizes[int(rng.integers(0, len(self.min_sizes)))])
        do_flip = bool(self.flip and rng.random() < 0.5)
        nh, nw = shorter_side_size(h, w, short, self.max_size)
        box = None
        if self.crop is not None:
            lo, hi = self.crop
            ch = max(1, int(nh * rng.uniform(lo, hi) + 0.5))
            cw = max(1, int(nw * rng.uniform(lo, hi) + 0.5))
            y0 = int(rng.integers(0, nh - ch + 1))
            x0 = int(rng.integers(0, nw - cw + 1))
            box = (y0, x0, ch, cw)

        def geometric(a: np.ndarray, resample: int) -> np.ndarray:
            if (nh, nw) != a.shape[:2]:
                a = np.asarray(Image.fromarray(a).resize((nw, nh), resample))
            if do_flip:
                a = a[:, ::-1]
            if box is not None:
                a = a[box[0]:box[0] + box[2], box[1]:box[1] + box[3]]
            return np.ascontiguousarray(a)

        out_frames = [geometric(f, Image.BILINEAR) for f in frames]
        n, t = masks.shape[:2]
        oh, ow = out_frames[0].shape[:2]
        out_masks = np.zeros((n, t, oh, ow), dtype=bool)
        for i in range(n):
            for j in range(t):
                if masks[i, j].any():
                    out_masks[i, j] = geometric(masks[i, j].astype(np.uint8), Image.NEAREST) > 0
        return out_frames, out_masks
