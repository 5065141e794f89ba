"""Data for the app's fine-tuning runs: the datasets to choose from, the held-out snapshot,
training datasets without the held-out videos, and which preset a checkpoint is.

Videos are matched by folder name: the app exports a video as ``JPEGImages/<name>/`` and writes
``<name>/NNNNN.jpg`` file names, so the name identifies it across a project's exports.
"""
from __future__ import annotations

import functools
import json
import os
import re
import shutil
from pathlib import Path

from ..annotate import export as X
from ..annotate.store import Store


def list_datasets(root: Path) -> list[str]:
    """Dataset folders (with an annotations.json) under ``root``; half-written exports skipped."""
    if not root.is_dir():
        return []
    return sorted(d.name for d in root.iterdir()
                  if d.is_dir() and (d / "annotations.json").is_file() and not re.search(r"\.(tmp|old)\d+(-\w+)?$", d.name))


def _video_name(v: dict) -> str:
    fn = v.get("file_names") or [""]
    return Path(fn[0]).parent.name or str(v.get("id"))


def export_videos(store: Store, project_id: int, video_ids: list[int], root: Path) -> list[str]:
    """Write the chosen videos of a project (the user's corrected tracks) as a YouTube-VIS
    folder at ``root``; returns their names. All project categories are kept, so the closed
    loop labels with the project's whole vocabulary."""
    names = {store.video(v).name for v in video_ids if store.video(v)}
    gt = X.ground_truth(store, project_id)
    keep = {v["id"] for v in gt["videos"] if _video_name(v) in names}
    gt["videos"] = [v for v in gt["videos"] if v["id"] in keep]
    gt["annotations"] = [a for a in gt["annotations"] if a["video_id"] in keep]
    for v in store.videos(project_id):
        if v.name in names:
            dst = root / "JPEGImages" / v.name
            dst.mkdir(parents=True, exist_ok=True)
            for i in range(v.num_frames):
                shutil.copyfile(store.frame_path(v.id, i), dst / f"{i:05d}.jpg")
    (root / "annotations.json").write_text(json.dumps(gt))
    return [_video_name(v) for v in gt["videos"]]


def snapshot_dataset(src: Path, names: set[str], dst: Path) -> tuple[Path, list[str]]:
    """A frozen copy of the dataset ``src`` at ``dst``, minus the videos named ``names``:
    (folder to train on, names removed).

    A run trains on this snapshot, never on ``src`` itself, so a later export of the same
    project (which replaces ``src``) cannot change a run's data under it. Frames are hard-linked
    (copied across file systems): the snapshot costs no space while ``src`` exists, and the
    export's rename of a new folder into place leaves the linked files as they were. Videos
    match by folder name (the app exports a video as ``JPEGImages/<name>/``); a same-named video
    from elsewhere is dropped too, which errs on the side of no leak.
    """
    data = json.loads((src / "annotations.json").read_text())
    drop = {v["id"]: _video_name(v) for v in data["videos"] if _video_name(v) in names}
    data["videos"] = [v for v in data["videos"] if v["id"] not in drop]
    data["annotations"] = [a for a in data.get("annotations", []) if a["video_id"] not in drop]
    for v in data["videos"]:
        for f in v.get("file_names") or []:
            if Path(f).is_absolute() or ".." in Path(f).parts:
                raise ValueError(f"{src.name}: frame path {f!r} leaves the dataset folder")
            out = dst / "JPEGImages" / f
            if out.exists():
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src / "JPEGImages" / f, out)
            except OSError:
                shutil.copyfile(src / "JPEGImages" / f, out)
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "annotations.json").write_text(json.dumps(data))
    return dst, sorted(drop.values())


@functools.lru_cache(maxsize=16)  # the page asks on every load; a released checkpoint is 170 MB
def preset_of_checkpoint(path: str, mtime: float = 0.0) -> str | None:
    """The preset whose architecture a checkpoint records (training needs a preset's recipe)."""
    from ovformer.checkpoint import read_checkpoint
    from ovformer.config import get_preset, list_presets

    cfg = dict((read_checkpoint(path).meta or {}).get("config") or {})
    cfg.pop("train", None)
    for name in list_presets():
        ref = get_preset(name).to_dict()
        ref.pop("train", None)
        if json.loads(json.dumps(ref)) == json.loads(json.dumps(cfg)):  # tuples vs lists
            return name
    return None
