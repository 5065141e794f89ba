"""The one reader of YouTube-VIS / LV-VIS dataset folders: which JSON holds the ground truth,
and which folder the videos' ``file_names`` are relative to.

Every place that opens a dataset (``ovformer predict``, ``ovformer train``, the app, the
dashboard) goes through :func:`find_annotation_file` and :func:`image_root`, so they all
accept the same layouts (the official ones are those of OVFormer's
``ovformer/data_video/datasets/builtin.py``):

====================  ==========================================  ==============================
layout                annotation file                             frames
====================  ==========================================  ==============================
the app's exports     ``D/annotations.json``                      ``D/JPEGImages/``
YouTube-VIS 2019/21   ``ytvis_2019/train.json`` (valid, test)     ``ytvis_2019/train/JPEGImages/``
LV-VIS                ``LVVIS/val/val_instances.json``            ``LVVIS/val/JPEGImages/``
OVIS                  ``ovis/annotations/train.json``             ``ovis/train/``
====================  ==========================================  ==============================

A folder is recognised by holding exactly one of :data:`ANNOTATION_FILE_NAMES`; a split
folder without one (``ytvis_2019/valid``, ``ovis/valid``) finds its file beside it
(``ytvis_2019/valid.json``, ``ovis/annotations/valid.json``). Several candidates are an
error, not a guess: pass the JSON file itself.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .io import GroundTruth, YTVISFormatError, read_gt

#: Ground-truth file names recognised in a dataset folder.
ANNOTATION_FILE_NAMES: tuple[str, ...] = (
    "annotations.json",  # the app's exports, `ovformer predict --gt-out`
    "instances.json",
    "train.json", "valid.json", "test.json",  # YouTube-VIS 2019/2021, OVIS
    "train_instances.json", "val_instances.json", "test_instances.json",  # LV-VIS releases
    # LV-VIS as the official builtin.py / tools name them (tools/remove_lvvis_novel.py writes
    # train_instances_nonovel.json from train_instances_.json)
    "train_instances_.json", "val_instances_.json", "train_instances_nonovel.json",
)

FRAMES_DIR = "JPEGImages"


class DatasetLayoutError(YTVISFormatError, FileNotFoundError):
    """A path is not a dataset folder this reader recognises (none or several annotation
    files). Both a ValueError and a FileNotFoundError, so callers catching either see it."""


def _split_folder_annotation(folder: Path) -> list[Path]:
    """Annotation files of a split folder that holds only frames: YouTube-VIS keeps
    ``<root>/<split>.json`` beside ``<root>/<split>/JPEGImages``, OVIS
    ``<root>/annotations/<split>.json`` beside ``<root>/<split>/``. (A plain frame folder
    ``x/`` next to an ``x.json``, e.g. its predictions, is not a dataset.)"""
    found = [folder.parent / "annotations" / f"{folder.name}.json"]
    if (folder / FRAMES_DIR).is_dir():
        found.insert(0, folder.parent / f"{folder.name}.json")
    return [p for p in found if p.is_file()]


def find_annotation_file(path: str | os.PathLike[str]) -> Path:
    """The ground-truth JSON of a dataset: ``path`` itself when it is a file, else the one
    file of :data:`ANNOTATION_FILE_NAMES` in the folder (or beside a split folder).

    Raises:
        DatasetLayoutError: the folder holds none, or several, of the recognised files.
    """
    p = Path(path)
    if p.is_file():
        return p
    if not p.is_dir():
        raise DatasetLayoutError(f"{p}: no such file or directory")
    found = [p / n for n in ANNOTATION_FILE_NAMES if (p / n).is_file()]
    if not found:
        found = _split_folder_annotation(p)
    if len(found) == 1:
        return found[0]
    if found:
        raise DatasetLayoutError(f"{p}: several annotation files ({', '.join(f.name for f in found)}); "
                                 "pass the one to use")
    raise DatasetLayoutError(f"{p}: no annotation file (looked for {', '.join(ANNOTATION_FILE_NAMES)}, "
                             f"or {p.name}.json beside the folder); pass the JSON file itself")


def is_dataset(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a JSON file or a folder :func:`find_annotation_file` would open
    (several candidates count: opening it then says which)."""
    p = Path(path)
    if p.is_file():
        return p.suffix.lower() == ".json"
    return p.is_dir() and (any((p / n).is_file() for n in ANNOTATION_FILE_NAMES)
                           or bool(_split_folder_annotation(p)))


def frame_file_name(name: str) -> str:
    """A video's ``file_names`` entry as a relative POSIX path. Some LV-VIS copies use Windows
    separators; the official loader (lvvis.py) keeps the last two of their components
    (``<video>/<frame>``), and so does this."""
    return "/".join(name.split("\\")[-2:]) if "\\" in name else name


def image_root_candidates(annotation_file: str | os.PathLike[str]) -> list[Path]:
    """Folders the ``file_names`` of ``annotation_file`` may be relative to, most likely first."""
    ann = Path(annotation_file)
    d, stem = ann.parent, ann.stem
    split = stem.split("_")[0]  # "val" of val_instances.json
    out = [d / FRAMES_DIR, d / stem / FRAMES_DIR, d / split / FRAMES_DIR, d.parent / stem, d / stem,
           d, d.parent / FRAMES_DIR]
    return list(dict.fromkeys(out))


def find_image_root(annotation_file: str | os.PathLike[str], probe: str | None) -> Path | None:
    """The candidate folder (see :func:`image_root_candidates`, then any ``<dir>/*/JPEGImages``)
    in which the file name ``probe`` exists; None when the frame is nowhere on disk."""
    if not probe:
        return None
    rel = frame_file_name(probe)
    candidates = image_root_candidates(annotation_file)
    try:
        d = Path(annotation_file).parent
        candidates += sorted(c / FRAMES_DIR for c in d.iterdir() if c.is_dir())
    except OSError:
        pass
    return next((c for c in candidates if (c / rel).is_file()), None)


def image_root(annotation_file: str | os.PathLike[str], probe: str | None) -> Path:
    """Like :func:`find_image_root`, but never None: without frames on disk, the first
    candidate folder that exists (or the annotation file's folder), so paths can still be
    built (and a missing frame reported by its expected path)."""
    found = find_image_root(annotation_file, probe)
    if found is not None:
        return found
    return next((c for c in image_root_candidates(annotation_file) if c.is_dir() and c.name == FRAMES_DIR),
                Path(annotation_file).parent)


@dataclass
class DatasetFolder:
    root: Path  # the folder holding the annotation file
    annotation_file: Path
    gt: GroundTruth
    frame_paths: dict[int, list[Path]]  # video id -> absolute frame paths, in file_names order
    image_root: Path | None = None  # what file_names are relative to


def load_dataset_folder(root: str | os.PathLike[str], annotation_file: str | None = None,
                        check_frames: bool = True) -> DatasetFolder:
    """Open a YouTube-VIS / LV-VIS dataset: a folder (see the module doc for the layouts) or
    its annotation JSON.

    Args:
        root: the dataset folder or annotation file.
        annotation_file: a file name inside ``root`` to use instead of looking for one.
        check_frames: raise :class:`YTVISFormatError` when a listed frame is missing.
    """
    root = Path(root).resolve()
    ann_path = find_annotation_file(root / annotation_file if annotation_file else root)
    gt = read_gt(ann_path)
    probe = next((v.file_names[0] for v in gt.videos if v.file_names), None)
    images = image_root(ann_path, probe)
    frame_paths: dict[int, list[Path]] = {}
    for v in gt.videos:
        paths = [images / frame_file_name(n) for n in v.file_names]
        if check_frames:
            missing = [p for p in paths if not p.is_file()]
            if missing:
                raise YTVISFormatError(f"{ann_path}: video {v.id}: {len(missing)} of {len(paths)} "
                                       f"frames missing, first {missing[0]}")
        frame_paths[v.id] = paths
    return DatasetFolder(ann_path.parent, ann_path, gt, frame_paths, images)
