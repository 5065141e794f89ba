"""``ovformer predict --eval [METRICS.json]``: score the merged results against the input
dataset's ground truth, in the same run.

The checks (:func:`eval_dataset`) run before any prediction, so a wrong request costs nothing;
the scoring (:func:`score_parts`) is :func:`ovformer.evaluation.score_dataset`, the same
function training's evaluation uses, and the printing is ``ovformer eval``'s, so the metrics
equal ``ovformer eval --gt <annotations> --results RESULTS.json`` on the same files.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..evaluation import score_dataset
from ..vocab import Vocabulary
from ..ytvis.dataset import DatasetFolder, find_annotation_file, load_dataset_folder
from .eval import report
from .inputs import is_dataset_folder

__all__ = ["add_eval_arg", "eval_dataset", "metrics_path", "score_parts"]


def add_eval_arg(p: argparse.ArgumentParser) -> None:
    """``--eval [METRICS.json]`` (absent: None; bare: "")."""
    p.add_argument("--eval", nargs="?", const="", default=None, metavar="METRICS.json",
                   help="inputs that are one dataset with ground truth: score RESULTS.json "
                        "against it, print AP, AP50, AP75 (base/novel AP with LV-VIS "
                        "partitions) and write the metrics (default: RESULTS.metrics.json); "
                        "put it after the inputs, or give the path")


def metrics_path(args: argparse.Namespace) -> Path | None:
    """Where ``--eval`` writes the metrics: its path, else ``<out stem>.metrics.json`` beside
    ``--out``; None without ``--eval``."""
    if args.eval is None:
        return None
    return Path(args.eval) if args.eval else args.out.with_suffix(".metrics.json")


def _holds_videos(path: Path) -> bool:
    """Whether ``path`` is an existing annotation or results file rather than metrics."""
    if not path.is_file():
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True  # not ours to overwrite either
    return not isinstance(data, dict) or "videos" in data


def eval_dataset(args: argparse.Namespace, given: Vocabulary | None,
                 quiet: bool = False) -> DatasetFolder | None:
    """The dataset ``--eval`` scores against (None without ``--eval``), checked before any
    prediction runs; ``quiet`` (ranks other than 0) leaves the warnings to rank 0.

    Raises:
        ValueError: a one-line reason: an input that is not a dataset, several datasets, a
            split without annotations, ``--max-frames`` (it would cut the videos the ground
            truth covers whole; ``ovformer eval`` rejects such results), or a metrics path that
            is not a ``.json`` file (argparse took an input for it).
    """
    if args.eval is None:
        return None
    if args.eval and (Path(args.eval).suffix.lower() != ".json" or _holds_videos(Path(args.eval))):
        # argparse hands --eval the next word: never write metrics over an input's annotations
        raise ValueError(f"--eval {args.eval}: not a metrics path (a .json that is not an "
                         "annotation file); put --eval after the inputs")
    if args.max_frames is not None:
        raise ValueError("--eval scores whole videos: drop --max-frames")
    files = []
    for raw in args.inputs:
        if not is_dataset_folder(Path(raw)):
            raise ValueError(f"--eval needs a dataset with ground truth as the input: {raw} is "
                             "not a dataset folder or annotation file")
        files.append(find_annotation_file(raw).resolve())
    if len(set(files)) > 1:
        raise ValueError(f"--eval scores one dataset at a time: the inputs are {len(set(files))} "
                         "datasets; run one predict per dataset")
    dataset = load_dataset_folder(files[0], check_frames=False)
    if dataset.gt.annotations is None:
        raise ValueError(f"--eval: {files[0]} has no annotations (a test split?): nothing to "
                         "score against")
    if not quiet and given is not None and set(zip(given.ids, given.names)) != {
            (c.id, c.name) for c in dataset.gt.categories}:
        # scores are kept per category id: another list's ids score against the wrong classes
        print(f"warning: --eval: the vocabulary given is not {files[0].name}'s categories (ids "
              "and names); results are scored by category id", file=sys.stderr)
    return dataset


def score_parts(dataset: DatasetFolder, parts: list[dict[str, Any]], out: Path) -> None:
    """Score the finished videos' parts (their ``results`` are exactly what RESULTS.json holds)
    with :func:`~ovformer.evaluation.score_dataset`, print ``ovformer eval``'s table and write
    the metrics to ``out``.

    Raises:
        ValueError: the results do not fit the ground truth (YTVISFormatError included).
    """
    results = [r for p in parts for r in p["results"]]
    videos = [p["video_id"] for p in parts]
    missing = len(dataset.gt.videos) - len(videos)
    if missing:  # the others failed: scoring them as misses would hide why
        print(f"--eval: scoring the {len(videos)} videos done ({missing} of "
              f"{len(dataset.gt.videos)} failed)", file=sys.stderr)
    report(score_dataset(dataset, results, videos), out)
