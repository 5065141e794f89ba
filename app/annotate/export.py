"""Export a project: YouTube-VIS dataset (ground-truth layout), results layout, overlay video.

The dataset folder is exactly what ``ovformer train`` / ``ovformer.ytvis.dataset.load_dataset_folder``
reads: ``<root>/annotations.json`` + ``<root>/JPEGImages/<video>/<frame>.jpg``. Files are written
into a temporary folder and renamed into place so that a crash never leaves half a dataset.
"""
from __future__ import annotations

import os
import re
import shutil
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


def export_dataset(store: Store, project_id: int, datasets_root: Path, progress: Progress | None = None) -> Path:
    """Write ``<datasets_root>/<project>/`` (annotations.json + JPEGImages) and return it."""
    gt = project_gt(store, project_id)
    final = Path(datasets_root) / dataset_dir_name(store.project_name(project_id))
    tmp = final.with_name(final.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    vids = store.videos(project_id)
    for k, v in enumerate(vids):
        dst = tmp / "JPEGImages" / v.name
        dst.mkdir(parents=True, exist_ok=True)
        for i in range(v.num_frames):  # stored frames are already JPEG: copy, never re-encode
            shutil.copyfile(store.frame_path(v.id, i), dst / f"{i:05d}.jpg")
        if progress:
            progress((k + 1) / (len(vids) + 1), f"copied frames of {v.name}")
    write_gt(tmp / "annotations.json", gt)
    old = final.with_name(final.name + f".old{os.getpid()}")
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def zip_folder(folder: Path, zip_path: Path) -> Path:
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_STORED) as z:  # JPEGs do not compress further
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                z.write(p, p.relative_to(folder.parent))
    return zip_path


def write_results(store: Store, project_id: int, path: Path) -> Path:
    """The results layout (with each track's score) at ``path``."""
    write_ytvis_results(path, results(store, project_id))
    return path


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
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = (load_frame(store.frame_path(video_id, i)) for i in range(v.num_frames))
    return render_overlay_video(frames, items, path, v.fps)
