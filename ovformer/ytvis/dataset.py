"""A YouTube-VIS dataset folder: ``annotations.json`` (or ``instances.json`` / ``valid.json``)
beside ``JPEGImages/<video>/<frame>.jpg``, the layout the app exports and ``ovformer train`` reads."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .io import GT_FILE_NAMES, GroundTruth, YTVISFormatError, read_gt


@dataclass
class DatasetFolder:
    root: Path
    annotation_file: Path
    gt: GroundTruth
    frame_paths: dict[int, list[Path]]  # video id -> absolute frame paths, in file_names order


def load_dataset_folder(root: str | os.PathLike[str], annotation_file: str | None = None,
                        check_frames: bool = True) -> DatasetFolder:
    """Open a YouTube-VIS dataset folder: ``<root>/annotations.json`` (or ``instances.json`` /
    ``valid.json``) plus ``<root>/JPEGImages/<video>/<frame>.jpg``.

    ``file_names`` are relative to ``JPEGImages``; Windows separators (seen in LV-VIS copies)
    are normalised. With ``check_frames``, a missing frame is a :class:`YTVISFormatError`.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise YTVISFormatError(f"{root}: not a directory")
    names = (annotation_file,) if annotation_file else GT_FILE_NAMES
    ann_path = next((root / n for n in names if (root / n).is_file()), None)
    if ann_path is None:
        raise YTVISFormatError(f"{root}: no annotation file (looked for {', '.join(names)})")
    gt = read_gt(ann_path)
    images = root / "JPEGImages"
    frame_paths: dict[int, list[Path]] = {}
    for v in gt.videos:
        paths = [images / n.replace("\\", "/") for n in v.file_names]
        if check_frames:
            missing = [p for p in paths if not p.is_file()]
            if missing:
                raise YTVISFormatError(f"{ann_path}: video {v.id}: {len(missing)} of {len(paths)} "
                                       f"frames missing, first {missing[0]}")
        frame_paths[v.id] = paths
    return DatasetFolder(root, ann_path, gt, frame_paths)
