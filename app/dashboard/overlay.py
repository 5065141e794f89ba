"""Decode result masks and draw them on a frame for the results browser.

Uses ovformer.ytvis.rle.decode_rle and ovformer.render.overlay_frame / track_color when those
modules are present, so the dashboard draws exactly what the exported videos show; the small
fallbacks below keep the dashboard usable on a checkout where they are not there yet.
"""

from __future__ import annotations

import colorsys
import functools
from types import SimpleNamespace
from typing import Any, Sequence

import numpy as np


@functools.cache
def _lib() -> SimpleNamespace:
    """ovformer's decode_rle / overlay_frame / track_color, or None for each that is missing.

    Imported on first use, not at module import: `import ovformer` pulls in torch (seconds),
    which the training, reports and datasets pages never need.
    """
    ns = SimpleNamespace(decode_rle=None, overlay_frame=None, track_color=None)
    try:
        from ovformer.ytvis.rle import decode_rle

        ns.decode_rle = decode_rle
    except ImportError:  # pragma: no cover - depends on what has landed in ovformer/
        pass
    try:
        from ovformer.render import overlay_frame, track_color

        ns.overlay_frame, ns.track_color = overlay_frame, track_color
    except ImportError:  # pragma: no cover
        pass
    return ns


def decode_segmentation(seg: Any, size: tuple[int, int]) -> np.ndarray | None:
    """A bool (H, W) mask from a compressed/uncompressed RLE dict, or None for a null frame."""
    if not seg:
        return None
    h, w = size
    if _lib().decode_rle is not None:
        return np.asarray(_lib().decode_rle(seg, h, w), dtype=bool)
    from pycocotools import mask as mask_util

    if isinstance(seg, dict):
        rle = mask_util.frPyObjects(seg, h, w) if isinstance(seg.get("counts"), list) else seg
        return mask_util.decode(rle).astype(bool)
    if isinstance(seg, list):  # polygons (ground truth only)
        return mask_util.decode(mask_util.merge(mask_util.frPyObjects(seg, h, w))).astype(bool)
    return None


def track_color(track_id: int) -> tuple[int, int, int]:
    """A stable, well-separated RGB colour per track id (golden-ratio hue steps)."""
    if _lib().track_color is not None:
        c = _lib().track_color(track_id)
        return int(c[0]), int(c[1]), int(c[2])
    h = (track_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.75, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def overlay_frame(rgb: np.ndarray, items: Sequence[tuple[int, str, np.ndarray]], alpha: float = 0.55) -> np.ndarray:
    """Blend each (track_id, label, mask) onto a copy of rgb (H, W, 3) uint8."""
    if _lib().overlay_frame is not None:
        return np.asarray(_lib().overlay_frame(rgb, list(items)), dtype=np.uint8)
    out = rgb.astype(np.float32).copy()
    for track_id, _label, mask in items:
        if mask is None or mask.shape != rgb.shape[:2]:
            continue
        color = np.asarray(track_color(track_id), dtype=np.float32)
        out[mask] = (1 - alpha) * out[mask] + alpha * color
    return out.clip(0, 255).astype(np.uint8)


def frame_items(entries: list[dict[str, Any]], frame: int, size: tuple[int, int],
                names: dict[int, str]) -> list[tuple[int, str, np.ndarray]]:
    """(track_id, label, mask) for one frame; track_id is the entry's 1-based position in the file.

    Using the file position (the evaluator's result id) keeps a track's colour the same on every
    frame and in the table below the image.
    """
    items = []
    for e in entries:
        segs = e["segmentations"]
        mask = decode_segmentation(segs[frame], size) if frame < len(segs) else None
        if mask is not None and mask.any():
            cid = e["category_id"]
            items.append((e["index"] + 1, f"{names.get(cid, f'class {cid}')} {e['score']:.2f}", mask))
    return items
