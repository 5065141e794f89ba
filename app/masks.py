"""Mask <-> compressed-RLE helpers (pycocotools layout: column-major, str counts).

Kept private to the app so the store only ever holds the ``counts`` string; the size is the
video's ``[height, width]``.
"""
from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils


def encode(mask: np.ndarray) -> str | None:
    """Boolean (H, W) mask -> compressed RLE counts, or None when the mask is empty."""
    m = np.asarray(mask).astype(bool)
    if not m.any():
        return None
    rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    return rle["counts"].decode("ascii")


def rle_dict(counts: str, height: int, width: int) -> dict:
    """The YouTube-VIS segmentation dict for stored counts."""
    return {"size": [int(height), int(width)], "counts": counts}


def decode(counts: str, height: int, width: int) -> np.ndarray:
    """Stored counts -> boolean (H, W) mask."""
    return mask_utils.decode({"size": [height, width], "counts": counts.encode("ascii")}).astype(bool)


def area(counts: str, height: int, width: int) -> int:
    return int(mask_utils.area({"size": [height, width], "counts": counts.encode("ascii")}))


def bbox(counts: str, height: int, width: int) -> list[float]:
    """``[x, y, w, h]`` as floats (YouTube-VIS ``bboxes`` entry)."""
    return [float(v) for v in mask_utils.toBbox({"size": [height, width], "counts": counts.encode("ascii")})]


def to_counts(seg: dict | list | None, height: int, width: int) -> str | None:
    """Any YouTube-VIS segmentation (compressed/uncompressed RLE or polygons) -> stored counts."""
    if not seg:
        return None
    if isinstance(seg, list):  # polygons
        rles = mask_utils.frPyObjects(seg, height, width)
        rle = mask_utils.merge(rles)
    elif isinstance(seg.get("counts"), list):  # uncompressed RLE
        rle = mask_utils.frPyObjects(seg, height, width)
    else:
        counts = seg["counts"]
        rle = {"size": list(seg["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    if list(rle["size"]) != [height, width]:
        raise ValueError(f"mask size {list(rle['size'])} does not match the video ({height}x{width})")
    if int(mask_utils.area(rle)) == 0:
        return None
    c = rle["counts"]
    return c.decode("ascii") if isinstance(c, bytes) else c
