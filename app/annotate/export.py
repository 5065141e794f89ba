"""Export a project: YouTube-VIS dataset (ground-truth layout), results layout, overlay video.

The dataset folder is exactly what ``ovformer train`` / ``ovformer.ytvis.dataset.load_dataset_folder``
reads: ``<root>/annotations.json`` + ``<root>/JPEGImages/<video>/<frame>.jpg``. Files are written
into a temporary folder and renamed into place so that a crash never leaves half a dataset.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Callable

from ovformer.vocab import Category
from ovformer.ytvis.io import Annotation, GroundTruth, Video, annotation_from_rles, write_gt
from ovformer.ytvis.results import write_results as write_ytvis_results

from .store import Store, counts_mask, counts_rle

Progress = Callable[[float, str], None]


def categories_for(store: Store, project_id: int) -> list[str]:
    """Vocabulary order first (ids 1..K), then any class typed only on a track."""
    names = list(dict.fromkeys(store.vocabulary(project_id)))
    for v in store.videos(project_id):
        for t in store.tracks(v.id):
            if t.label not in names:
                names.append(t.label)
    return names


def project_gt(store: Store, project_id: int) -> GroundTruth:
    """The project as YouTube-VIS ground truth: one annotation per track with masks, built by
    :func:`ovformer.ytvis.io.annotation_from_rles` from the stored RLEs (nothing is decoded)."""
    cats = categories_for(store, project_id)
    cat_id = {n: i + 1 for i, n in enumerate(cats)}
    videos: list[Video] = []
    anns: list[Annotation] = []
    for vi, v in enumerate(store.videos(project_id), start=1):
        videos.append(Video(vi, v.width, v.height, [f"{v.name}/{i:05d}.jpg" for i in range(v.num_frames)]))
        per_track = store.video_masks(v.id)
        for t in store.tracks(v.id):
            ms = per_track.get(t.id, {})
            if not ms:
                continue
            rles = [counts_rle(ms[f], v.height, v.width) if f in ms else None for f in range(v.num_frames)]
            ann = annotation_from_rles(len(anns) + 1, vi, cat_id[t.label], rles)
            ann.extra.update(height=v.height, width=v.width, length=1)
            anns.append(ann)
    info = {"description": f"OVFormer Studio export of {store.project_name(project_id)}",
            "date_created": time.strftime("%Y-%m-%d %H:%M:%S")}
    return GroundTruth(videos, [Category(i + 1, n, supercategory="object") for i, n in enumerate(cats)],
                       anns, {"info": info})


def ground_truth(store: Store, project_id: int) -> dict:
    """The project as a YouTube-VIS ground-truth dict (one annotation per track)."""
    return project_gt(store, project_id).to_dict()


def results(store: Store, project_id: int) -> list[dict]:
    """The project as a YouTube-VIS results list (video ids as in :func:`ground_truth`)."""
    gt = project_gt(store, project_id)
    tracks = [t for v in store.videos(project_id) for t in store.tracks(v.id) if t.frames]
    return [{"video_id": a.video_id, "category_id": a.category_id, "score": float(t.score),
             "segmentations": a.segmentations} for a, t in zip(gt.annotations or [], tracks)]


def dataset_dir_name(project_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", project_name).strip("._") or "project"


def export_name(project_id: int, project_name: str) -> str:
    """``p<id>-<name>``: unique per project even when two names spell alike in ASCII
    ("Проект" and "日本語" would both be ``project``)."""
    return f"p{int(project_id)}-{dataset_dir_name(project_name)}"


def stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def unique_path(path: Path) -> Path:
    """``path``, or ``path`` with ``-2``, ``-3``... before the suffix when it exists (two exports in
    the same second never overwrite each other)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    k, out = 2, path
    while out.exists():
        out, k = path.with_name(f"{path.stem}-{k}{path.suffix}"), k + 1
    return out


def export_dataset(store: Store, project_id: int, datasets_root: Path, progress: Progress | None = None) -> Path:
    """Write ``<datasets_root>/p<id>-<project>/`` (annotations.json + JPEGImages) and return it.

    Written into a folder of its own (``.tmp<pid>-<unique>``, never shared with a concurrent
    export) and renamed into place; a run that trains on an earlier export is not affected
    (runs train on a snapshot, :mod:`app.finetune.service`)."""
    gt = project_gt(store, project_id)
    final = Path(datasets_root) / export_name(project_id, store.project_name(project_id))
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{final.name}.tmp{os.getpid()}-", dir=final.parent))
    try:
        _write_dataset(store, project_id, gt, tmp, progress)
        old = Path(tempfile.mkdtemp(prefix=f"{final.name}.old{os.getpid()}-", dir=final.parent))
        try:
            os.replace(final, old / "d") if final.exists() else None
            os.replace(tmp, final)
        except OSError:
            if (old / "d").exists() and not final.exists():
                os.replace(old / "d", final)  # put the previous export back
            raise
        finally:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _write_dataset(store: Store, project_id: int, gt: GroundTruth, tmp: Path, progress: Progress | None) -> None:
    vids = store.videos(project_id)
    for k, v in enumerate(vids):
        dst = tmp / "JPEGImages" / v.name
        dst.mkdir(parents=True, exist_ok=True)
        for i in range(v.num_frames):  # stored frames are already JPEG: copy, never re-encode
            shutil.copyfile(store.frame_path(v.id, i), dst / f"{i:05d}.jpg")
        if progress:
            progress((k + 1) / (len(vids) + 1), f"copied frames of {v.name}")
    write_gt(tmp / "annotations.json", gt)


def _atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` then rename to ``path``: a failed write (a full disk) leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}-{time.time_ns()}{path.suffix}")  # keeps the format
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def zip_folder(folder: Path, zip_path: Path) -> Path:
    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:  # JPEGs do not compress further
            for p in sorted(folder.rglob("*")):
                if p.is_file():
                    z.write(p, p.relative_to(folder.parent))
    return _atomic(zip_path, write)


def write_results(store: Store, project_id: int, path: Path) -> Path:
    """The results layout (with each track's score) at ``path``."""
    data = results(store, project_id)
    return _atomic(path, lambda tmp: write_ytvis_results(tmp, data))


def render_video(store: Store, video_id: int, path: Path, hidden: set[int] = frozenset()) -> Path:
    """H.264 mp4 of the video with masks, ids and class names drawn on (PyAV, no ffmpeg binary)."""
    from ovformer.render import render_overlay_video

    from .media import load_frame

    v = store.video(video_id)
    tracks = {t.id: t for t in store.tracks(video_id) if t.id not in hidden}
    per_track = store.video_masks(video_id)

    def items(i: int) -> list:
        return [(tid, tracks[tid].label, counts_mask(per_track[tid][i], v.height, v.width))
                for tid in tracks if i in per_track.get(tid, {})]
    frames = (load_frame(store.frame_path(video_id, i)) for i in range(v.num_frames))
    return _atomic(path, lambda tmp: render_overlay_video(frames, items, tmp, v.fps))
