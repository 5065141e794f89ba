"""COCO run-length encoding (RLE) of binary masks, as YouTube-VIS / LV-VIS files store them.

Thin, typed wrappers over ``pycocotools.mask`` that remove its usual traps
(see ``docs/ytvis_format.md`` §3):

* pycocotools flattens masks in **column-major (Fortran) order** and refuses C-ordered arrays;
  encoding ``mask.T`` "works" but gives ``size == [W, H]``. We always hand it an (H, W[, N])
  Fortran-contiguous ``uint8`` array, so ``size`` is ``[height, width]``.
* ``encode`` returns ``counts`` as ``bytes``, which ``json.dump`` rejects. We return ``str``.
* Uncompressed RLE (``counts`` a list of ints, as in the official YTVIS-2019 ground truth) and
  polygons must go through ``frPyObjects`` before any other call. :func:`to_compressed` does that.

Example (the 4x5 mask of the spec, ones at rows 1-2, cols 2-3)::

    >>> m = np.zeros((4, 5), bool); m[1:3, 2:4] = True
    >>> encode_mask(m)
    {'size': [4, 5], 'counts': '92203'}
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from pycocotools import mask as mask_utils

__all__ = [
    "RLE",
    "encode_mask",
    "encode_masks",
    "decode_rle",
    "to_compressed",
    "to_json_rle",
    "rle_area",
    "rle_bbox",
]

#: A compressed RLE as written to JSON: ``{"size": [H, W], "counts": str}``.
RLE = dict[str, Any]


def _check_2d(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"expected a (H, W) mask, got shape {mask.shape}")
    return mask


def _str_counts(rle: Mapping[str, Any]) -> RLE:
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": counts}


def encode_mask(mask: np.ndarray) -> RLE:
    """Encode one (H, W) mask (bool or 0/1) as a compressed RLE with ``str`` counts."""
    mask = _check_2d(mask)
    # (H, W, 1) Fortran uint8: the layout pycocotools' C encoder walks column by column.
    arr = np.asfortranarray(mask[:, :, None] != 0, dtype=np.uint8)
    return _str_counts(mask_utils.encode(arr)[0])


def encode_masks(masks: np.ndarray) -> list[RLE]:
    """Encode a (T, H, W) stack of masks; one pycocotools call for the whole batch.

    Returns ``T`` compressed RLEs (``str`` counts), one per frame, empty masks included.
    """
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"expected a (T, H, W) stack of masks, got shape {masks.shape}")
    if masks.shape[0] == 0:
        return []
    bits = (masks if masks.dtype == bool else masks != 0).view(np.uint8)
    # A C-contiguous (T, W, H) copy *is* the (H, W, T) Fortran array pycocotools wants (each mask
    # a contiguous column-major block); copying to it is ~2x faster than np.asfortranarray.
    arr = np.ascontiguousarray(bits.transpose(0, 2, 1)).transpose(2, 1, 0)
    return [_str_counts(r) for r in mask_utils.encode(arr)]


def to_compressed(
    segmentation: Mapping[str, Any] | Sequence[Sequence[float]],
    height: int | None = None,
    width: int | None = None,
) -> dict[str, Any]:
    """Turn any YouTube-VIS frame segmentation into a compressed RLE that pycocotools accepts.

    Mirrors ``YTVOS.annToRLE``: polygons (a list of ``[x0, y0, x1, y1, ...]`` lists) are
    rasterised at ``(height, width)`` and merged; uncompressed RLE (list ``counts``) keeps its
    own ``size``; a compressed RLE (``str``/``bytes`` counts) is returned unchanged.
    """
    if isinstance(segmentation, Mapping):
        counts = segmentation.get("counts")
        if isinstance(counts, (list, tuple)):
            h, w = segmentation["size"]
            # frPyObjects uses the RLE's own size for uncompressed RLE (h, w are ignored).
            return mask_utils.frPyObjects(
                {"size": [int(h), int(w)], "counts": [int(c) for c in counts]}, int(h), int(w)
            )
        if isinstance(counts, (str, bytes)):
            return dict(segmentation)
        raise ValueError(f"RLE counts must be a str, bytes or a list of ints, got {type(counts).__name__}")
    if isinstance(segmentation, (list, tuple)):
        if height is None or width is None:
            raise ValueError("a polygon segmentation needs height and width to be rasterised")
        polys = [[float(v) for v in poly] for poly in segmentation]
        if not polys:
            raise ValueError("empty polygon list")
        return mask_utils.merge(mask_utils.frPyObjects(polys, int(height), int(width)))
    raise ValueError(f"not a segmentation (RLE dict or polygon list): {type(segmentation).__name__}")


def to_json_rle(
    segmentation: Mapping[str, Any] | Sequence[Sequence[float]],
    height: int | None = None,
    width: int | None = None,
) -> RLE:
    """Any frame segmentation as a compressed RLE with ``str`` counts, ready for ``json.dump``
    (:func:`to_compressed`, whose pycocotools conversions give ``bytes`` counts)."""
    return _str_counts(to_compressed(segmentation, height, width))


def decode_rle(
    rle: Mapping[str, Any] | Sequence[Sequence[float]],
    height: int | None = None,
    width: int | None = None,
) -> np.ndarray:
    """Decode a compressed RLE, an uncompressed RLE or polygons to a (H, W) bool mask.

    ``height``/``width`` are needed only for polygons (an RLE carries its own size).
    """
    return mask_utils.decode(to_compressed(rle, height, width)).astype(bool)


def rle_area(rle: Mapping[str, Any]) -> int:
    """Number of foreground pixels of an RLE (compressed or uncompressed)."""
    return int(mask_utils.area(to_compressed(rle)))


def rle_bbox(rle: Mapping[str, Any]) -> list[float]:
    """Bounding box ``[x, y, w, h]`` (pixels, floats) of an RLE; ``[0, 0, 0, 0]`` when empty."""
    return [float(v) for v in mask_utils.toBbox(to_compressed(rle))]
