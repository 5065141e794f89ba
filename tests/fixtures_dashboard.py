"""Writes a small runs folder, datasets folder and reports folder for the dashboard tests.

Everything is deterministic and the expected numbers are returned alongside the paths, so
the unit tests and the browser test check charts against the same source of truth. It also
plants the failure cases the dashboard must survive: a corrupt metrics.jsonl line, an
unreadable config.json, a truncated METRICS json and a truncated ground-truth json.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_util

H, W = 120, 160
FRAME_GREY = 40  # frames are flat grey so a drawn mask is easy to detect in a screenshot
CATEGORIES = [{"id": 1, "name": "person"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "zebra"}]


@dataclass
class DashboardFixture:
    """Paths of the three folders and the numbers the dashboard should show."""

    runs: Path
    datasets: Path
    reports: Path
    train: dict[str, list[dict[str, float]]] = field(default_factory=dict)  # run -> training rows
    evals: dict[str, list[dict[str, float]]] = field(default_factory=dict)  # run -> eval rows
    report: dict[str, Any] = field(default_factory=dict)  # reports/lvvis_val.json content
    class_counts: dict[str, int] = field(default_factory=dict)
    track_lengths: list[int] = field(default_factory=list)
    mask_areas: list[float] = field(default_factory=list)
    num_videos: int = 0
    num_frames: int = 0
    results_label: str = "run_a/eval/results.json"
    results_box: tuple[int, int, int, int] = (25, 75, 20, 70)  # rows, cols of track #1, every frame


def _box(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    m = np.zeros((H, W), dtype=np.uint8)
    m[r0:r1, c0:c1] = 1
    return m


def _rle(m: np.ndarray) -> dict[str, Any]:
    rle = mask_util.encode(np.asfortranarray(m))
    return {"size": [H, W], "counts": rle["counts"].decode("ascii")}


def _uncompressed(m: np.ndarray) -> dict[str, Any]:
    """Uncompressed RLE (list counts), as the official YTVIS-2019 ground truth uses."""
    flat = m.flatten(order="F")
    counts, cur, run = [], 0, 0
    for v in flat:
        if v != cur:
            counts.append(run)
            cur, run = v, 0
        run += 1
    counts.append(run)
    return {"size": [H, W], "counts": [int(c) for c in counts]}


def _write_run(d: Path, train: list[dict], evals: list[dict], extra_lines: dict[int, str]) -> None:
    d.mkdir(parents=True)
    lines = [json.dumps(r) for r in train] + [json.dumps({"iteration": e["iteration"], "eval": {
        k: v for k, v in e.items() if k != "iteration"}}) for e in evals]
    for pos, text in sorted(extra_lines.items()):
        lines.insert(pos, text)
    (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def _train_rows(n: int, scale: float, lr: float, step: int = 25) -> list[dict[str, float]]:
    """n log lines every `step` iterations: decaying losses with a deterministic wiggle,
    linear warm-up then cosine learning rate, so screenshots look like a real run."""
    rows = []
    for k in range(1, n + 1):
        it = step * k
        decay, wiggle = scale / (1 + k / 6), 0.04 * math.sin(1.7 * k)
        ce, mask, dice, obj = 1.5 * decay + wiggle, 1.0 * decay + 0.3, 0.8 * decay + 0.2, 0.2 * decay + abs(wiggle)
        rows.append({"iteration": it, "loss": round(ce + mask + dice + obj, 6), "loss_ce": round(ce, 6),
                     "loss_mask": round(mask, 6), "loss_dice": round(dice, 6), "loss_object_ce": round(obj, 6),
                     "lr": round(lr * min(1.0, k / 4) * (0.1 + 0.45 * (1 + math.cos(math.pi * k / n))), 10),
                     "iter_time_s": round(0.5 + 0.05 * math.sin(k / 3), 4),
                     "samples_per_s": round(4.0 + 0.4 * math.sin(k / 3), 4)})
    return rows


def _write_dataset(root: Path, fx: DashboardFixture) -> None:
    ds = root / "toy_ytvis"
    videos = [{"id": 1, "width": W, "height": H, "length": 3,
               "file_names": [f"vid_a/{t:05d}.jpg" for t in range(3)]},
              {"id": 2, "width": W, "height": H, "length": 2,
               "file_names": [f"vid_b/{t:05d}.jpg" for t in range(2)]}]
    for v in videos:
        for name in v["file_names"]:
            p = ds / "train" / "JPEGImages" / name
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (W, H), (FRAME_GREY,) * 3).save(p, quality=95)
    person = _box(25, 75, 20, 70)  # 2500 px
    dog = _box(12, 38, 100, 150)  # 1300 px
    zebra = _box(75, 100, 0, 25)  # 625 px
    tracks = [  # (video, category, per-frame masks, write "areas"?, uncompressed?)
        (1, 1, [person, person, person], True, False),
        (1, 2, [None, dog, dog], True, True),
        (2, 1, [person, None], False, False),  # no "areas": the dashboard decodes the RLE
        (2, 3, [None, zebra], True, False),
    ]
    anns = []
    for i, (vid, cat, masks, with_areas, raw) in enumerate(tracks, 1):
        enc = _uncompressed if raw else _rle
        ann = {"id": i, "video_id": vid, "category_id": cat, "iscrowd": 0, "height": H, "width": W,
               "segmentations": [None if m is None else enc(m) for m in masks]}
        if with_areas:
            ann["areas"] = [None if m is None else int(m.sum()) for m in masks]
        anns.append(ann)
        fx.track_lengths.append(sum(m is not None for m in masks))
        fx.mask_areas += [float(m.sum()) for m in masks if m is not None]
    gt = {"videos": videos, "annotations": anns, "categories": CATEGORIES}
    (ds / "train.json").write_text(json.dumps(gt))
    fx.class_counts = {"person": 2, "dog": 1, "zebra": 1}
    fx.num_videos, fx.num_frames = 2, 5
    # A truncated export: listed (its head looks like ground truth) but unreadable.
    (root / "truncated_export").mkdir()
    (root / "truncated_export" / "instances.json").write_text('{"videos": [{"id": 1, "length": 3')

    results = [
        {"video_id": 1, "category_id": 1, "score": 0.9, "segmentations": [_rle(person)] * 3},
        {"video_id": 1, "category_id": 2, "score": 0.6, "segmentations": [None, _rle(dog), _rle(dog)]},
        {"video_id": 1, "category_id": 3, "score": 0.1, "segmentations": [_rle(zebra)] * 3},
        {"video_id": 2, "category_id": 1, "score": 0.8, "segmentations": [_rle(person), None]},
    ]
    (fx.runs / "run_a" / "eval" / "results.json").write_text(json.dumps(results))


def _report() -> dict[str, Any]:
    cats = [("person", 0, 0.62), ("dog", 1, 0.35), ("zebra", 2, 0.05), ("giraffe", 3, 0.20),
            ("cat", 0, 0.48), ("kite", 2, -1.0)]
    per_cat = [{"id": i, "name": n, "AP": ap, "num_gt_tracks": 0 if ap < 0 else 3 + i, "partition": p}
               for i, (n, p, ap) in enumerate(cats, 1)]
    return {"AP": 0.34, "AP50": 0.55, "AP75": 0.31, "APs": 0.12, "APm": 0.30, "APl": -1,
            "AR1": 0.28, "AR10": 0.41, "AR100": 0.43, "ARs": 0.2, "ARm": 0.4, "ARl": -1,
            "AP_base": 0.4833, "AP_novel": 0.125, "per_category": per_cat}


def make_dashboard_fixture(tmp: Path) -> DashboardFixture:
    """Write runs/, datasets/ and reports/ under tmp and return them with the expected numbers."""
    fx = DashboardFixture(runs=tmp / "runs", datasets=tmp / "datasets", reports=tmp / "reports")
    fx.runs.mkdir(parents=True)
    fx.datasets.mkdir(parents=True)
    fx.reports.mkdir(parents=True)

    fx.train["run_a"] = _train_rows(40, 1.0, 1e-4)
    fx.evals["run_a"] = [{"iteration": 200 * k, "AP": round(0.05 + 0.032 * k, 4), "AP50": round(0.12 + 0.056 * k, 4)}
                         for k in range(1, 6)]
    _write_run(fx.runs / "run_a", fx.train["run_a"], fx.evals["run_a"], {})
    (fx.runs / "run_a" / "config.json").write_text(json.dumps({"model": "tiny", "lr": 1e-4, "max_iter": 1000}))
    (fx.runs / "run_a" / "model_final.pth").write_bytes(b"")
    (fx.runs / "run_a" / "eval").mkdir()
    metrics_a = {**_report(), "AP": 0.21, "AP50": 0.40}  # the last validation point
    (fx.runs / "run_a" / "eval" / "METRICS.json").write_text(json.dumps(metrics_a))

    fx.train["run_b"] = _train_rows(24, 1.4, 2e-4)
    fx.evals["run_b"] = [{"iteration": 200 * k, "AP": round(0.04 + 0.035 * k, 4), "AP50": round(0.1 + 0.06 * k, 4)}
                         for k in range(1, 4)]
    _write_run(fx.runs / "run_b", fx.train["run_b"], fx.evals["run_b"], {})
    (fx.runs / "run_b" / "config.json").write_text(json.dumps({"model": "tiny", "lr": 2e-4}))

    fx.train["run_c"] = _train_rows(6, 2.0, 1e-4)
    # run_c holds the damage: a line cut mid-write, a garbage line and an unreadable config.
    _write_run(fx.runs / "run_c", fx.train["run_c"], [], {2: '{"iteration": 45, "loss": 2.0', 4: "not json at all"})
    (fx.runs / "run_c" / "config.json").write_text("{not json")

    fx.report = _report()
    (fx.reports / "lvvis_val.json").write_text(json.dumps(fx.report))
    (fx.reports / "truncated.json").write_text('{"AP": 0.5, "AP50": ')
    _write_dataset(fx.datasets, fx)
    return fx
