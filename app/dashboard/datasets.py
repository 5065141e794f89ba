"""Pure loaders for YouTube-VIS ground-truth folders (and the app's exports) and results files.

File layouts are those of docs in ../shared/docs/ytvis_format.md: a ground-truth json with
"videos", "annotations" (one entry per track) and "categories", frames under a JPEGImages
root, and a results list of {video_id, category_id, score, segmentations}.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.dashboard.loaders import read_json


@dataclass
class DatasetSummary:
    """What the datasets page and the results browser need from one ground-truth json."""

    name: str
    path: str
    frames_root: str | None = None
    videos: list[dict[str, Any]] = field(default_factory=list)  # id, name, length, height, width, file_names
    categories: dict[int, str] = field(default_factory=dict)
    num_frames: int = 0
    num_tracks: int = 0
    class_counts: dict[str, int] = field(default_factory=dict)  # tracks per category name
    track_lengths: list[int] = field(default_factory=list)  # annotated frames per track
    mask_areas: list[float] = field(default_factory=list)  # pixels per annotated frame
    warnings: list[str] = field(default_factory=list)


@dataclass
class ResultsIndex:
    """A results json grouped by video, in file order (the evaluator's tie order)."""

    path: str
    by_video: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    num_entries: int = 0
    warnings: list[str] = field(default_factory=list)


def format_problem(data: Any, source: str, kind: str) -> str | None:
    """What ovformer.ytvis.io's validator (the checks `train` and `eval` apply) rejects, if anything.

    Imported here, not at the top: `import ovformer.ytvis` costs the pages that never check a file.
    """
    from ovformer.ytvis.io import YTVISFormatError, parse_gt
    from ovformer.ytvis.results import parse_results

    try:
        (parse_gt if kind == "gt" else parse_results)(data, source)
    except YTVISFormatError as e:
        return str(e)
    return None


def _video_name(v: dict[str, Any]) -> str:
    names = v.get("file_names") or []
    if names and isinstance(names[0], str) and "/" in names[0]:
        return names[0].split("/")[0]
    return str(v.get("id"))


def find_frames_root(gt_path: str, videos: list[dict[str, Any]]) -> str | None:
    """The folder that file_names are relative to, or None when no frame is on disk.

    The layouts are those every reader accepts (`ovformer.ytvis.dataset.find_image_root`):
    <dir>/JPEGImages (app exports, LV-VIS val/val_instances.json), <dir>/<split>/JPEGImages
    (YTVIS train.json + train/JPEGImages), OVIS annotations/train.json + train/, ...
    """
    from ovformer.ytvis.dataset import find_image_root  # local: keeps this module's import light

    probe = next((v["file_names"][0] for v in videos if v.get("file_names")), None)
    if not isinstance(probe, str):
        return None
    root = find_image_root(gt_path, probe)
    return None if root is None else str(root)


def _segmentation_area(seg: Any) -> float | None:
    """Pixel area of one GT RLE when the file has no "areas" entry for it (None for polygons,
    which carry no size of their own)."""
    from ovformer.ytvis.rle import rle_area  # local: only needed for files without areas

    if not isinstance(seg, dict) or "size" not in seg:
        return None
    return float(rle_area(seg))


def summarize_gt(data: dict[str, Any], path: str, name: str | None = None) -> DatasetSummary:
    """Statistics of a parsed ground-truth dict; malformed entries become warnings."""
    ds = DatasetSummary(name=name or Path(path).name, path=path)
    for c in data.get("categories") or []:
        if isinstance(c, dict) and "id" in c:
            ds.categories[int(c["id"])] = str(c.get("name", c["id"]))
    for v in data.get("videos") or []:
        if not isinstance(v, dict) or "id" not in v:
            ds.warnings.append(f"{ds.name}: a video entry without an id was skipped")
            continue
        names = [n for n in (v.get("file_names") or []) if isinstance(n, str)]
        length = int(v.get("length") or len(names))
        ds.videos.append({"id": v["id"], "name": _video_name(v), "length": length,
                          "height": v.get("height"), "width": v.get("width"), "file_names": names})
        ds.num_frames += length
    counts: Counter[str] = Counter()
    bad = 0
    for a in data.get("annotations") or []:
        if not isinstance(a, dict):
            bad += 1
            continue
        ds.num_tracks += 1
        cid = a.get("category_id")
        counts[ds.categories.get(cid, f"class {cid}")] += 1
        segs = a.get("segmentations") or []
        areas = a.get("areas")
        present = [i for i, s in enumerate(segs) if s]
        ds.track_lengths.append(len(present))
        for i in present:
            area = areas[i] if isinstance(areas, list) and i < len(areas) else None
            if area is None:
                try:
                    area = _segmentation_area(segs[i])
                except Exception:  # a broken RLE must not stop the summary
                    bad += 1
                    continue
            if area is not None:
                ds.mask_areas.append(float(area))
    if bad:
        ds.warnings.append(f"{ds.name}: {bad} malformed annotation entries skipped")
    ds.class_counts = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    ds.frames_root = find_frames_root(path, ds.videos)
    return ds


def load_dataset(path: str, name: str | None = None) -> DatasetSummary:
    """Read and summarize one ground-truth json; an unreadable file gives an empty summary + warning."""
    data, problem = read_json(path, name or path, dict, "a ground-truth object")
    if problem:
        return DatasetSummary(name=name or Path(path).name, path=path, warnings=[problem])
    return summarize_gt(data, path, name)


def check_gt_file(path: str, name: str) -> str | None:
    """format_problem of a ground-truth file; None when it passes (or cannot be checked)."""
    data, problem = read_json(path, name, object, "JSON")
    return problem or format_problem(data, name, "gt")


def load_results(path: str) -> ResultsIndex:
    """Read a results list and group it by video; entries missing fields are skipped with a warning."""
    idx = ResultsIndex(path=path)
    data, problem = read_json(path, Path(path).name, list, "a results list")
    if problem:
        idx.warnings.append(problem)
        return idx
    problem = format_problem(data, Path(path).name, "results")
    if problem:
        idx.warnings.append(f"format check: {problem}")
    bad = 0
    for i, r in enumerate(data):
        if not (isinstance(r, dict) and "video_id" in r and isinstance(r.get("segmentations"), list)):
            bad += 1
            continue
        entry = {"index": i, "category_id": r.get("category_id"), "score": float(r.get("score", 0.0)),
                 "segmentations": r["segmentations"]}
        idx.by_video.setdefault(r["video_id"], []).append(entry)
        idx.num_entries += 1
    if bad:
        idx.warnings.append(f"{Path(path).name}: {bad} entries without video_id/segmentations skipped")
    return idx


def results_frame_size(entries: list[dict[str, Any]]) -> tuple[int, int] | None:
    """(height, width) from the first RLE of a video's results (results are at original size)."""
    for e in entries:
        for s in e["segmentations"]:
            if isinstance(s, dict) and "size" in s:
                return int(s["size"][0]), int(s["size"][1])
    return None


def load_frame(frames_root: str | None, file_name: str | None, size: tuple[int, int]) -> tuple[np.ndarray, bool]:
    """The RGB frame at (height, width) = size, and whether it came from disk.

    A missing frame gives a grey canvas so masks can still be inspected without the JPEGs.
    """
    h, w = size
    if frames_root and file_name:
        from ovformer.ytvis.dataset import frame_file_name  # Windows separators of LV-VIS copies

        p = Path(frames_root) / frame_file_name(file_name)
        try:
            from PIL import Image

            with Image.open(p) as im:
                im = im.convert("RGB")
                if im.size != (w, h):  # masks are at the original size; match them
                    im = im.resize((w, h))
                return np.asarray(im, dtype=np.uint8).copy(), True
        except OSError:
            pass
    return np.full((h, w, 3), 96, dtype=np.uint8), False


def histogram(values: list[float], bins: int = 30, log: bool = False) -> tuple[list[float], list[float], list[int]]:
    """(left edges, right edges, counts), computed here so the chart shows exact, testable counts.

    Integer data with few distinct values (track lengths) gets one bin per value; log=True
    uses log-spaced bins, because mask areas span several decades.
    """
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if arr.size == 0:
        return [], [], []
    if not log and np.all(arr == np.round(arr)) and arr.max() - arr.min() < bins:
        lo, hi = int(arr.min()), int(arr.max())
        edges = np.arange(lo, hi + 2, dtype=float) - 0.5
    elif log and arr.min() > 0:
        lo, hi = np.log10(arr.min()), np.log10(arr.max())
        edges = np.logspace(lo, hi if hi > lo else lo + 1, bins + 1)
        edges[0], edges[-1] = arr.min(), max(arr.max(), edges[-1])  # float round-off drops the max
    else:
        edges = np.histogram_bin_edges(arr, bins=bins)
    counts, edges = np.histogram(arr, bins=edges)
    return edges[:-1].tolist(), edges[1:].tolist(), counts.astype(int).tolist()
