"""YouTube-VIS / LV-VIS files: typed layouts, reading, writing and validation.

Two layouts (``docs/ytvis_format.md`` §1-2):

* ground truth (``instances.json`` / ``valid.json``): ``videos``, ``annotations`` (one entry per
  object *track*, with ``segmentations``/``areas``/``bboxes`` holding one entry per frame, ``null``
  where the object is absent) and ``categories`` (LV-VIS adds ``partition`` 0-3);
* results (``results.json``): a list of ``{video_id, category_id, score, segmentations}``.

Readers validate what the reference evaluator would otherwise get silently wrong (segmentation
count != video length, RLE size != [height, width], annotation id 0, ...) and raise
:class:`YTVISFormatError` with the file name and the offending entry.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..vocab import Category, categories_json
from .rle import encode_masks, rle_area, rle_bbox, to_compressed

__all__ = [
    "YTVISFormatError", "Video", "Category", "Annotation", "GroundTruth",
    "read_gt", "write_gt", "parse_gt", "annotation_from_masks", "annotation_from_rles",
    "is_base_partition", "GT_FILE_NAMES",
]

#: File names :func:`ovformer.ytvis.dataset.load_dataset_folder` looks for, in this order.
GT_FILE_NAMES = ("annotations.json", "instances.json", "valid.json")


class YTVISFormatError(ValueError):
    """A file (or dict) does not follow the YouTube-VIS layout; the message says where and why."""


def is_base_partition(partition: int) -> bool:
    """LV-VIS rule: partitions 0 and 1 are base categories, 2 and 3 are novel."""
    if partition in (0, 1):
        return True
    if partition in (2, 3):
        return False
    raise ValueError(f"LV-VIS partition must be 0, 1, 2 or 3, got {partition!r}")


@dataclass
class Video:
    id: int
    width: int
    height: int
    file_names: list[str]
    extra: dict[str, Any] = field(default_factory=dict)  # license, coco_url, ... kept verbatim

    @property
    def length(self) -> int:
        return len(self.file_names)


@dataclass
class Annotation:
    """One ground-truth object track; every per-frame list has ``video.length`` entries."""

    id: int
    video_id: int
    category_id: int
    segmentations: list[Any]  # None | RLE dict (str or list counts) | polygon list, per frame
    areas: list[float | None]
    bboxes: list[list[float] | None]
    iscrowd: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # height, width, length, ...


@dataclass
class GroundTruth:
    videos: list[Video]
    categories: list[Category]
    annotations: list[Annotation] | None  # None for test splits (no "annotations" key)
    extra: dict[str, Any] = field(default_factory=dict)  # info, licenses, ...

    def to_dict(self) -> dict[str, Any]:
        """The JSON layout (lists are shared with this object, not copied)."""
        out: dict[str, Any] = dict(self.extra)
        out["videos"] = [{**v.extra, "id": v.id, "width": v.width, "height": v.height,
                          "length": v.length, "file_names": v.file_names} for v in self.videos]
        if self.annotations is not None:
            out["annotations"] = [{**a.extra, "id": a.id, "video_id": a.video_id,
                                   "category_id": a.category_id, "iscrowd": a.iscrowd,
                                   "segmentations": a.segmentations, "areas": a.areas,
                                   "bboxes": a.bboxes} for a in self.annotations]
        out["categories"] = categories_json(self.categories)
        return out


# ----------------------------------------------------------------------------------- checks
def _int(value: Any, where: str) -> int:
    # bool is an int subclass; a JSON true where an id belongs is a bug, not a 1.
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise YTVISFormatError(f"{where} must be an integer, got {value!r}")
    return int(value)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value):
        raise YTVISFormatError(f"{where} must be a finite number, got {value!r}")
    return value


def _check_rle(seg: Any, h: int | None, w: int | None, where: str, compressed_only: bool) -> None:
    """Check one RLE dict; ``h is None`` skips the comparison with the video size."""
    if not isinstance(seg, dict):
        kind = "a compressed RLE dict" if compressed_only else "an RLE dict or a polygon list"
        raise YTVISFormatError(f"{where} must be null or {kind}, got {type(seg).__name__}")
    size, counts = seg.get("size"), seg.get("counts")
    if not (isinstance(size, (list, tuple)) and len(size) == 2):
        raise YTVISFormatError(f"{where}: RLE needs 'size': [height, width], got {size!r}")
    if h is None:
        h, w = size
    elif [size[0], size[1]] != [h, w]:
        raise YTVISFormatError(f"{where}: RLE size {list(size)} != [height, width] = [{h}, {w}] of the video")
    if isinstance(counts, str):
        return
    if compressed_only:
        raise YTVISFormatError(f"{where}: results need compressed RLE ('counts' a str); the reference "
                               f"loadRes crashes on {type(counts).__name__} counts")
    if not isinstance(counts, list) or not all(isinstance(c, int) and c >= 0 for c in counts):
        raise YTVISFormatError(f"{where}: 'counts' must be a str or a list of non-negative ints")
    if isinstance(h, int) and isinstance(w, int) and sum(counts) != h * w:
        raise YTVISFormatError(f"{where}: uncompressed RLE counts sum to {sum(counts)}, expected H*W = {h * w}")


def _check_segmentation(seg: Any, h: int, w: int, where: str) -> None:
    if isinstance(seg, list):  # polygons: a list of [x0, y0, x1, y1, ...] lists
        if not seg or not all(isinstance(p, list) and len(p) % 2 == 0 for p in seg):
            raise YTVISFormatError(f"{where}: a polygon segmentation must be a non-empty list of "
                                   f"[x0, y0, x1, y1, ...] lists")
        return
    _check_rle(seg, h, w, where, compressed_only=False)


def _per_frame(ann: Mapping[str, Any], key: str, n: int, where: str) -> list[Any] | None:
    values = ann.get(key)
    if values is None:
        return None
    if not isinstance(values, list):
        raise YTVISFormatError(f"{where}: '{key}' must be a list (one entry per frame)")
    if len(values) != n:
        raise YTVISFormatError(f"{where}: {len(values)} {key} but the video has length {n} "
                               f"(one entry per frame, null where absent)")
    return values


# ----------------------------------------------------------------------------- ground truth
def parse_gt(data: Any, source: str = "<dict>") -> GroundTruth:
    """Validate a parsed ground-truth JSON object and return it typed.

    Missing ``areas``/``bboxes`` are computed from the segmentations (the evaluator's size
    ranges need ``areas``). Raises :class:`YTVISFormatError` naming ``source``.
    """
    def err(msg: str) -> YTVISFormatError:
        return YTVISFormatError(f"{source}: {msg}")

    if not isinstance(data, dict):
        raise err(f"not a YouTube-VIS json: top level is a {type(data).__name__}, expected an object")
    for key in ("videos", "categories"):
        if key not in data:
            raise err(f"not a YouTube-VIS json: missing '{key}'")
        if not isinstance(data[key], list):
            raise err(f"'{key}' must be a list")
    try:
        videos: dict[int, Video] = {}
        for i, v in enumerate(data["videos"]):
            where = f"videos[{i}]"
            if not isinstance(v, dict) or not isinstance(v.get("file_names"), list):
                raise YTVISFormatError(f"{where} needs a 'file_names' list")
            vid = _int(v.get("id"), f"{where}.id")
            if vid in videos:
                raise YTVISFormatError(f"{where}: duplicate video id {vid}")
            w, h = _int(v.get("width"), f"{where}.width"), _int(v.get("height"), f"{where}.height")
            names = [str(n) for n in v["file_names"]]
            if "length" in v and v["length"] != len(names):
                raise YTVISFormatError(f"{where}: length {v['length']} != {len(names)} file_names")
            extra = {k: val for k, val in v.items() if k not in ("id", "width", "height", "length", "file_names")}
            videos[vid] = Video(vid, w, h, names, extra)
        cats: dict[int, Category] = {}
        for i, c in enumerate(data["categories"]):
            where = f"categories[{i}]"
            if not isinstance(c, dict):
                raise YTVISFormatError(f"{where} must be an object")
            cid = _int(c.get("id"), f"{where}.id")
            if cid in cats:
                raise YTVISFormatError(f"{where}: duplicate category id {cid}")
            part = c.get("partition")
            if part is not None:
                try:
                    is_base_partition(part)
                except ValueError as e:
                    raise YTVISFormatError(f"{where}: {e}") from None
            if not isinstance(c.get("name"), str):
                raise YTVISFormatError(f"{where} needs a 'name' string")
            extra = {k: val for k, val in c.items()
                     if k not in ("id", "name", "supercategory", "partition", "synonyms")}
            cats[cid] = Category(cid, c["name"], part, tuple(c.get("synonyms") or ()),
                                 supercategory=c.get("supercategory"), extra=extra)
        anns: list[Annotation] | None = None
        if data.get("annotations") is not None:
            anns = []
            seen: set[int] = set()
            for i, a in enumerate(data["annotations"]):
                anns.append(_parse_annotation(a, f"annotations[{i}]", videos, cats, seen))
    except YTVISFormatError as e:
        raise err(str(e)) from None
    extra = {k: val for k, val in data.items() if k not in ("videos", "categories", "annotations")}
    return GroundTruth(list(videos.values()), list(cats.values()), anns, extra)


def _parse_annotation(a: Any, where: str, videos: Mapping[int, Video],
                      cats: Mapping[int, Category], seen: set[int]) -> Annotation:
    if not isinstance(a, dict):
        raise YTVISFormatError(f"{where} must be an object")
    aid = _int(a.get("id"), f"{where}.id")
    if aid == 0:
        # The evaluator records a match as the GT id and 0 means "unmatched" (gotcha G9).
        raise YTVISFormatError(f"{where}: annotation id 0 is not allowed (0 means 'unmatched' in the evaluator)")
    if aid in seen:
        raise YTVISFormatError(f"{where}: duplicate annotation id {aid}")
    seen.add(aid)
    vid = _int(a.get("video_id"), f"{where}.video_id")
    if vid not in videos:
        raise YTVISFormatError(f"{where}: video_id {vid} is not in 'videos'")
    cid = _int(a.get("category_id"), f"{where}.category_id")
    if cid not in cats:
        raise YTVISFormatError(f"{where}: category_id {cid} is not in 'categories'")
    video = videos[vid]
    n, h, w = video.length, video.height, video.width
    segs = _per_frame(a, "segmentations", n, where)
    if segs is None:
        raise YTVISFormatError(f"{where}: missing 'segmentations'")
    for t, s in enumerate(segs):
        if s is not None:
            _check_segmentation(s, h, w, f"{where}.segmentations[{t}]")
    areas = _per_frame(a, "areas", n, where)
    if areas is None:
        areas = [None if s is None else rle_area(to_compressed(s, h, w)) for s in segs]
    for t, ar in enumerate(areas):
        if ar is not None and _number(ar, f"{where}.areas[{t}]") < 0:
            raise YTVISFormatError(f"{where}.areas[{t}] is negative")
    bboxes = _per_frame(a, "bboxes", n, where)
    if bboxes is None:
        bboxes = [None if s is None else rle_bbox(to_compressed(s, h, w)) for s in segs]
    iscrowd = a.get("iscrowd", 0)
    if iscrowd not in (0, 1):
        raise YTVISFormatError(f"{where}.iscrowd must be 0 or 1, got {iscrowd!r}")
    extra = {k: v for k, v in a.items() if k not in
             ("id", "video_id", "category_id", "iscrowd", "segmentations", "areas", "bboxes")}
    return Annotation(aid, vid, cid, segs, areas, bboxes, int(iscrowd), extra)


def _load_json(path: str | os.PathLike[str]) -> Any:
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise YTVISFormatError(f"{path}: not valid JSON ({e})") from None


def read_gt(path: str | os.PathLike[str]) -> GroundTruth:
    """Read and validate a ground-truth file (errors name ``path``)."""
    return parse_gt(_load_json(path), source=str(path))


def write_gt(path: str | os.PathLike[str], gt: GroundTruth | Mapping[str, Any]) -> None:
    """Write a ground-truth file (validated first, so what is written can be read back)."""
    if not isinstance(gt, GroundTruth):
        gt = parse_gt(dict(gt), source=str(path))
    _dump(path, gt.to_dict())


def annotation_from_masks(ann_id: int, video_id: int, category_id: int,
                          masks: np.ndarray | Sequence[np.ndarray | None],
                          iscrowd: int = 0) -> Annotation:
    """Build a GT track from per-frame boolean masks ((T, H, W) array, or a list with ``None``).

    Empty and ``None`` frames become ``null`` (the official files mark absent frames that way);
    areas and bboxes are computed from the masks.
    """
    frames = list(masks)
    present = [i for i, m in enumerate(frames) if m is not None and np.any(m)]
    rles: list[Any] = [None] * len(frames)
    if present:
        for i, r in zip(present, encode_masks(np.stack([np.asarray(frames[i]) for i in present]))):
            rles[i] = r
    return annotation_from_rles(ann_id, video_id, category_id, rles, iscrowd)


def annotation_from_rles(ann_id: int, video_id: int, category_id: int,
                         rles: Sequence[Mapping[str, Any] | None], iscrowd: int = 0) -> Annotation:
    """Build a GT track from per-frame compressed RLEs (``None`` where the object is absent),
    for masks that are stored encoded already (the app's project store): areas and bboxes are
    computed from the RLEs, nothing is decoded."""
    segs: list[Any] = [None if r is None else dict(r) for r in rles]
    areas: list[float | None] = [None if r is None else rle_area(r) for r in segs]
    bboxes: list[list[float] | None] = [None if r is None else rle_bbox(r) for r in segs]
    return Annotation(ann_id, video_id, category_id, segs, areas, bboxes, iscrowd)


def _dump(path: str | os.PathLike[str], obj: Any) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(f"{path}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, separators=(",", ":"))
    os.replace(tmp, path)  # atomic: a crash never leaves a half-written file behind
