"""The YouTube-VIS results layout: ``[{video_id, category_id, score, segmentations}]``, one entry
per predicted track with a compressed RLE (``str`` counts) or ``null`` per frame."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np

from .io import GroundTruth, YTVISFormatError, _check_rle, _dump, _int, _load_json, _number
from .rle import RLE, encode_masks

__all__ = ["ResultEntry", "parse_results", "check_results_against_gt", "read_results",
           "write_results", "result_from_masks"]


@dataclass
class ResultEntry:
    """One predicted track: compressed RLE (``str`` counts) or ``None`` per frame."""

    video_id: int
    category_id: int
    score: float
    segmentations: list[RLE | None]

    def to_dict(self) -> dict[str, Any]:
        return {"video_id": self.video_id, "category_id": self.category_id,
                "score": self.score, "segmentations": self.segmentations}


def parse_results(data: Any, source: str = "<list>") -> list[ResultEntry]:
    """Validate a parsed results JSON list (structure only; see :func:`check_results_against_gt`)."""
    if not isinstance(data, list):
        raise YTVISFormatError(f"{source}: not a YouTube-VIS results json: expected a list of "
                               f"predictions, got a {type(data).__name__}")
    out = []
    for i, r in enumerate(data):
        where = f"{source}: results[{i}]"
        if not isinstance(r, dict):
            raise YTVISFormatError(f"{where} must be an object")
        missing = [k for k in ("video_id", "category_id", "score", "segmentations") if k not in r]
        if missing:
            raise YTVISFormatError(f"{where}: missing '{missing[0]}'")
        try:
            vid, cid = _int(r["video_id"], "video_id"), _int(r["category_id"], "category_id")
            score = float(_number(r["score"], "score"))
        except YTVISFormatError as e:
            raise YTVISFormatError(f"{where}: {e}") from None
        segs = r["segmentations"]
        if not isinstance(segs, list):
            raise YTVISFormatError(f"{where}: 'segmentations' must be a list (one entry per frame)")
        for t, s in enumerate(segs):
            if s is not None:
                _check_rle(s, None, None, f"{where}.segmentations[{t}]", compressed_only=True)
        out.append(ResultEntry(vid, cid, score, segs))
    return out


def check_results_against_gt(results: Iterable[ResultEntry], gt: GroundTruth, source: str = "<list>") -> None:
    """Raise when a prediction cannot be scored as intended.

    The reference evaluator asserts on unknown video ids, but silently scores a wrong frame
    count (zip truncation, G13) or a wrong RLE size (empty merge, IoU 0) as a miss.
    Unknown category ids are *not* checked: the reference drops them by design.
    """
    videos = {v.id: v for v in gt.videos}
    for i, r in enumerate(results):
        where = f"{source}: results[{i}]"
        v = videos.get(r.video_id)
        if v is None:
            raise YTVISFormatError(f"{where}: video_id {r.video_id} is not in the ground truth")
        if len(r.segmentations) != v.length:
            raise YTVISFormatError(f"{where}: {len(r.segmentations)} segmentations but video "
                                   f"{v.id} has length {v.length}")
        for t, s in enumerate(r.segmentations):
            if s is not None:
                _check_rle(s, v.height, v.width, f"{where}.segmentations[{t}]", compressed_only=True)


def read_results(path: str | os.PathLike[str], gt: GroundTruth | None = None) -> list[ResultEntry]:
    """Read and validate a results file; with ``gt``, also check it against the videos."""
    results = parse_results(_load_json(path), source=str(path))
    if gt is not None:
        check_results_against_gt(results, gt, source=str(path))
    return results


def write_results(path: str | os.PathLike[str], entries: Iterable[ResultEntry | Mapping[str, Any]]) -> None:
    """Write a results file; ``bytes`` RLE counts are decoded to ``str`` so JSON accepts them."""
    out = []
    for e in entries:
        d = e.to_dict() if isinstance(e, ResultEntry) else dict(e)
        segs = [None if s is None else {"size": list(s["size"]), "counts": s["counts"].decode("ascii")
                                        if isinstance(s["counts"], bytes) else s["counts"]}
                for s in d["segmentations"]]
        out.append({**d, "video_id": int(d["video_id"]), "category_id": int(d["category_id"]),
                    "score": float(d["score"]), "segmentations": segs})
    parse_results(out, source=str(path))
    _dump(path, out)


def result_from_masks(video_id: int, category_id: int, score: float, masks: np.ndarray) -> ResultEntry:
    """A results entry from a (T, H, W) boolean stack: one RLE per frame, empty ones included
    (as the official exporter does; an empty RLE and ``null`` score the same)."""
    return ResultEntry(int(video_id), int(category_id), float(score), encode_masks(masks))
