"""Importing YouTube-VIS / LV-VIS json (ground-truth or results layout) as editable pre-labels.

Results files hold several (query, class) entries for the same mask; they become ONE track whose
best class is the label and whose other classes are the alternatives, as the model's own tracks.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ovformer.ytvis.rle import rle_area, to_json_rle

from .media import MAX_PIXELS
from .store import counts_mask, mask_counts

MAX_ENTRIES = 20_000  # tracks (gt annotations or results entries) in one json


def check_mask_size(src: tuple[int, int], dst: tuple[int, int]) -> None:
    """A json's mask size must be the video's, or the same picture at another resolution (the
    video before the import downscaled it): checked before any mask is decoded at that size."""
    (h, w), (H, W) = src, dst
    if (h, w) == (H, W):
        return
    if h <= 0 or w <= 0 or h * w > MAX_PIXELS:
        raise ImportError_(f"the json's masks are {w}x{h}; the video is {W}x{H} (masks up to "
                           f"{MAX_PIXELS / 1e6:.0f} megapixels of the same shape are resized)")
    if abs(h / w - H / W) > 0.02 * (H / W) + 2.0 / min(w, W):
        raise ImportError_(f"the json's masks are {w}x{h}, which is not the shape of the video ({W}x{H})")


class ImportError_(ValueError):
    """The json is not YouTube-VIS, or does not fit the video; shown in the page as is."""


def read_json(path: str | Path, max_mb: float = 50.0) -> Any:
    size = Path(path).stat().st_size / 2**20
    if size > max_mb:
        raise ImportError_(f"{Path(path).name} is {size:.0f} MB; a json of pre-labels may be at most {max_mb:.0f} MB")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ImportError_(f"{Path(path).name} is not valid json ({e})") from None


def detect_layout(data: Any) -> str:
    """``"gt"`` (dict with videos/annotations), ``"results"`` (list of track entries), else error."""
    if isinstance(data, dict) and isinstance(data.get("videos"), list):
        if not all(isinstance(v, dict) and "id" in v for v in data["videos"]):
            raise ImportError_("json 'videos' entries need an 'id': not a YouTube-VIS file")
        return "gt"
    if isinstance(data, list) and data and all(
            isinstance(e, dict) and {"video_id", "category_id", "segmentations"} <= set(e) for e in data):
        return "results"
    raise ImportError_("this json is not YouTube-VIS: expected a ground-truth file (a dict with 'videos', "
                       "'annotations', 'categories') or a results file (a list of entries with 'video_id', "
                       "'category_id', 'score', 'segmentations')")


def _pick_video(videos: list[dict], name: str, n: int) -> dict:
    if len(videos) == 1:
        return videos[0]
    for v in videos:
        fn = v.get("file_names") or []
        if fn and Path(fn[0]).parent.name == name:
            return v
    same = [v for v in videos if int(v.get("length", len(v.get("file_names", [])))) == n]
    if len(same) == 1:
        return same[0]
    raise ImportError_(f"the json holds {len(videos)} videos and none is named '{name}'; upload the frames "
                       "zip named after the json's video folder, or a json with one video")


def to_counts(seg: dict | list | None, height: int, width: int) -> str | None:
    """Any YouTube-VIS segmentation (compressed/uncompressed RLE or polygons) -> stored counts;
    None when it is empty. Raises ValueError when its size is not the video's."""
    if not seg:
        return None
    rle = to_json_rle(seg, height, width)
    if list(rle["size"]) != [height, width]:
        raise ValueError(f"mask size {list(rle['size'])} does not match the video ({height}x{width})")
    return rle["counts"] if rle_area(rle) else None


def _resample(counts: str | None, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> str | None:
    if counts is None or src_hw == dst_hw:
        return counts
    m = counts_mask(counts, *src_hw)
    img = Image.fromarray(m.astype(np.uint8) * 255).resize((dst_hw[1], dst_hw[0]), Image.NEAREST)
    return mask_counts(np.asarray(img) > 127)


def _frames(segs: list, src_hw: tuple[int, int], dst_hw: tuple[int, int], n: int) -> dict[int, str]:
    """json frame j -> stored frame (nearest when the counts differ), masks resized to the video."""
    out: dict[int, str] = {}
    if not isinstance(segs, list):
        raise ImportError_("'segmentations' must be a list (one entry per frame)")
    check_mask_size(src_hw, dst_hw)
    L = len(segs)
    if L > max(10 * n, 10_000):
        raise ImportError_(f"a track of the json lists {L} frames; the video has {n}")
    for j, seg in enumerate(segs):
        counts = to_counts(seg, *src_hw)
        if counts is None:
            continue
        f = j if L == n else int(round(j * (n - 1) / max(1, L - 1)))
        out[f] = _resample(counts, src_hw, dst_hw)
    return {f: c for f, c in out.items() if c is not None}


def seg_size(entry: dict, fallback: tuple[int, int]) -> tuple[int, int]:
    for s in entry.get("segmentations") or []:
        if isinstance(s, dict) and "size" in s:
            h, w = (int(x) for x in s["size"])
            return h, w
    return fallback


def tracks_from_json(data: Any, name: str, n: int, height: int, width: int,
                     vocabulary: list[str]) -> tuple[list[dict], str]:
    """Tracks (``Editor.replace_tracks`` dicts) for the video ``name`` with ``n`` frames, and a note."""
    layout = detect_layout(data)
    dst = (height, width)
    count = len(data.get("annotations") or []) if layout == "gt" else len(data)
    if count > MAX_ENTRIES:
        raise ImportError_(f"the json holds {count} tracks; at most {MAX_ENTRIES} are imported at once")
    if layout == "gt":
        v = _pick_video(data["videos"], name, n)
        cats = {c["id"]: c.get("name", str(c["id"])) for c in data.get("categories", []) if "id" in c}
        src = (int(v.get("height", height)), int(v.get("width", width)))
        tracks = []
        for a in data.get("annotations", []):
            if a.get("video_id") != v["id"]:
                continue
            fr = _frames(a.get("segmentations") or [], src, dst, n)
            tracks.append({"label": cats.get(a.get("category_id"), f"class {a.get('category_id')}"), "score": 1.0,
                           "alternatives": [], "source": "import-gt", "masks": fr})
        L = int(v.get("length", len(v.get("file_names", [])) or n))
    else:
        vids = sorted({e["video_id"] for e in data})
        if len(vids) > 1:
            raise ImportError_(f"the results json covers {len(vids)} videos ({vids[:5]}...); import one video's "
                               "results at a time")
        groups: dict[str, list[dict]] = {}
        for e in data:
            key = hashlib.sha1(json.dumps(e["segmentations"], sort_keys=True).encode()).hexdigest()
            groups.setdefault(key, []).append(e)
        tracks = []
        for entries in groups.values():
            entries.sort(key=lambda e: -float(e.get("score", 0)))

            def cname(cid: int) -> str:
                return vocabulary[cid - 1] if 1 <= cid <= len(vocabulary) else f"class {cid}"
            best = entries[0]
            fr = _frames(best["segmentations"], seg_size(best, dst), dst, n)
            tracks.append({"label": cname(int(best["category_id"])), "score": float(best.get("score", 0)),
                           "alternatives": [(cname(int(e["category_id"])), float(e.get("score", 0)))
                                            for e in entries[1:4]], "source": "import-results", "masks": fr})
        L = len(data[0]["segmentations"])
    tracks = [t for t in tracks if t["masks"]]
    note = f"imported {len(tracks)} tracks ({'ground-truth' if layout == 'gt' else 'results'} layout)"
    if L != n:
        note += f"; the json has {L} frames and the video {n}, masks were placed on the nearest frames"
    return tracks, note
