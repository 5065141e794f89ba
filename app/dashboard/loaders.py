"""Pure loaders for the dashboard: training runs, evaluation reports, file discovery.

Nothing here imports streamlit, so every function is unit-testable. Loaders never raise on a
bad file: they return what could be read plus a list of human-readable warnings, because one
corrupt file in a large runs folder must not hide everything else.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

# the one metrics.jsonl reader; importing it does not import torch (training/__init__ is lazy)
from training.metrics import parse_metrics, read_metrics  # noqa: F401  (re-exported)


# Summary keys of ovformer/ytvis/evaluate.py METRICS files, in display order.
SUMMARY_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
SPLIT_KEYS = ("AP_base", "AP_novel")
# Directories that hold frames, never JSON we want; skipping them keeps discovery cheap on
# folders with millions of JPEGs.
_SKIP_DIRS = {"JPEGImages", "Annotations", "frames", "__pycache__", ".git"}
_PEEK_BYTES = 65536


@dataclass(frozen=True)
class Folders:
    """The three folders the dashboard reads (command-line arguments of the page script)."""

    runs: str
    datasets: str
    reports: str


def parse_folders(argv: list[str]) -> Folders:
    """The folders from the page script's arguments (everything after `--` on the streamlit line)."""
    p = argparse.ArgumentParser(prog="ovformer dashboard page")
    p.add_argument("--runs", default="runs")
    p.add_argument("--datasets", default="datasets")
    p.add_argument("--reports", default="reports")
    a, _unknown = p.parse_known_args(argv)  # tolerate flags added by newer launchers
    return Folders(runs=a.runs, datasets=a.datasets, reports=a.reports)


@dataclass
class RunData:
    """One training run folder (RUN_DIR/config.json, metrics.jsonl, eval/*.json)."""

    name: str
    path: str
    config: dict[str, Any] = field(default_factory=dict)
    train: list[dict[str, float]] = field(default_factory=list)  # one row per training log line
    evals: list[dict[str, float]] = field(default_factory=list)  # {"iteration": i, "AP": ..}
    reports: list[str] = field(default_factory=list)  # eval/*.json paths
    has_final: bool = False
    warnings: list[str] = field(default_factory=list)


@dataclass
class Report:
    """One METRICS json: summary stats, optional base/novel split and per-category AP."""

    name: str
    path: str
    summary: dict[str, float] = field(default_factory=dict)
    per_category: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def read_json(path: str | Path, label: str, kind: type, what: str) -> tuple[Any, str | None]:
    """(parsed JSON, None), or (None, a warning) when the file cannot be read or its top level
    is not a ``kind``: loaders turn one bad file into a warning, never an exception."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        return None, f"{label} could not be read: {e}"
    if not isinstance(data, kind):
        return None, f"{label} is not {what}"
    return data, None


def signature(paths: list[str]) -> tuple[tuple[str, int, int], ...]:
    """(path, mtime_ns, size) of each existing path: the cache key that changes when a file does."""
    out = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            continue
        out.append((p, st.st_mtime_ns, st.st_size))
    return tuple(out)


def _walk(root: Path, max_depth: int) -> Iterator[Path]:
    """Files under root up to max_depth levels, skipping frame folders and hidden dirs."""
    root_depth = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root, onerror=lambda e: None):
        depth = len(Path(dirpath).parts) - root_depth
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        if depth >= max_depth:
            dirnames[:] = []
        for name in sorted(filenames):
            yield Path(dirpath) / name


def peek_kind(path: str | Path) -> str:
    """Classify a JSON file from its first 64 KiB without parsing all of it.

    Returns "gt" (YouTube-VIS ground truth / app export), "results" (a results list),
    "metrics" (an evaluation METRICS file) or "other". Peeking matters because results and
    ground-truth files can be hundreds of MB and discovery runs on every page load.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(_PEEK_BYTES).decode("utf-8", errors="replace").lstrip()
    except OSError:
        return "other"
    if head.startswith("["):
        compact = head.replace(" ", "").replace("\n", "")
        return "results" if compact.startswith("[]") or '"segmentations"' in head else "other"
    if head.startswith("{"):
        if '"videos"' in head:
            return "gt"
        if '"AP"' in head or '"per_category"' in head:
            return "metrics"
    return "other"


def discover_json(roots: list[str], kinds: set[str], max_depth: int = 4) -> list[str]:
    """Every *.json under roots whose peeked kind is in kinds, sorted, duplicates removed."""
    found: dict[str, None] = {}
    for root in roots:
        r = Path(root)
        if not r.is_dir():
            continue
        for p in _walk(r, max_depth):
            if p.suffix.lower() == ".json" and peek_kind(p) in kinds:
                found[str(p)] = None
    return sorted(found)


def list_runs(runs_dir: str) -> list[str]:
    """Run folders (those holding metrics.jsonl or config.json), newest first.

    Only stats files, so it is cheap even with hundreds of runs; loading is done per run.
    """
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    runs = []
    for d in root.iterdir():
        if d.is_dir() and ((d / "metrics.jsonl").exists() or (d / "config.json").exists()):
            runs.append(d)
    runs.sort(key=lambda d: (-_mtime(d / "metrics.jsonl", d / "config.json"), d.name))
    return [str(d) for d in runs]


def _mtime(*paths: Path) -> float:
    return max((p.stat().st_mtime for p in paths if p.exists()), default=0.0)


def run_files(run_dir: str) -> list[str]:
    """The files whose change should invalidate a cached run."""
    d = Path(run_dir)
    files = [d / "config.json", d / "metrics.jsonl", d / "model_final.pth"]
    files += sorted((d / "eval").glob("*.json")) if (d / "eval").is_dir() else []
    return [str(p) for p in files]


def _number(v: Any) -> float | None:
    """A finite-or-nan float from a JSON value; None for non-numbers (strings, dicts, bools)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def parse_metrics_lines(lines: list[str], source: str = "metrics.jsonl") -> tuple[list[dict], list[dict], list[str]]:
    """Split metrics.jsonl lines into training rows and eval rows (numeric fields only).

    The lines are read by `training.metrics.parse_metrics` (the one metrics.jsonl reader; bad
    lines become warnings naming the line). A record with an "eval" dict is an evaluation point;
    any other record with an "iteration" is a training point.
    """
    records, warnings = parse_metrics(lines, source)
    return (*split_metrics(records, source), warnings)


def split_metrics(records: list[dict[str, Any]], source: str = "metrics.jsonl") -> tuple[list[dict], list[dict]]:
    """(training rows, eval rows) of metrics.jsonl records, keeping numeric values only."""
    train: list[dict] = []
    evals: list[dict] = []
    for rec in records:
        it = _number(rec.get("iteration"))
        if it is None:
            continue
        if isinstance(rec.get("eval"), dict):
            row = {k: _number(v) for k, v in rec["eval"].items()}
            evals.append({"iteration": it, **{k: v for k, v in row.items() if v is not None}})
            continue
        row = {k: _number(v) for k, v in rec.items()}
        train.append({k: v for k, v in row.items() if v is not None})
    return train, evals


def load_run(run_dir: str) -> RunData:
    """Read one run folder; every unreadable piece becomes a warning, the rest still loads."""
    d = Path(run_dir)
    run = RunData(name=d.name, path=str(d), has_final=(d / "model_final.pth").exists())
    cfg_path = d / "config.json"
    if cfg_path.exists():
        try:
            cfg = json.loads(cfg_path.read_text())
            run.config = cfg if isinstance(cfg, dict) else {"value": cfg}
        except (OSError, ValueError) as e:
            run.warnings.append(f"{d.name}/config.json could not be read: {e}")
    try:
        records = read_metrics(d, run.warnings)
    except OSError as e:
        records = []
        run.warnings.append(f"{d.name}/metrics.jsonl could not be read: {e}")
    run.train, run.evals = split_metrics(records)
    if (d / "eval").is_dir():
        run.reports = [str(p) for p in sorted((d / "eval").glob("*.json")) if peek_kind(p) == "metrics"]
    return run


def loss_terms(runs: list[RunData]) -> list[str]:
    """The loss_* keys present in any of the runs, sorted (the total "loss" is drawn apart)."""
    keys = {k for r in runs for row in r.train for k in row if k.startswith("loss_")}
    return sorted(keys)


def _metric(v: Any) -> float | None:
    """A METRICS value as a fraction; -1, NaN and non-numbers mean "undefined" (None)."""
    x = _number(v)
    if x is None or math.isnan(x) or x < 0:
        return None
    return x


def partition_of(entry: dict[str, Any]) -> str:
    """'base', 'novel' or 'all' for a per-category entry.

    Accepts the evaluator's string partitions and LV-VIS integer partitions ({0,1} base,
    {2,3} novel; ytvis_format.md section 6).
    """
    p = entry.get("partition")
    if isinstance(p, str) and p.lower() in ("base", "novel"):
        return p.lower()
    if isinstance(p, int) and not isinstance(p, bool):
        return "base" if p in (0, 1) else "novel"
    return "all"


def load_report(path: str, name: str | None = None) -> Report:
    """Read a METRICS json written by ovformer/ytvis/evaluate.py (values are fractions)."""
    rep = Report(name=name or Path(path).name, path=path)
    data, problem = read_json(path, rep.name, dict, "a metrics object; skipped")
    if problem:
        rep.warnings.append(problem)
        return rep
    for k in SUMMARY_KEYS + SPLIT_KEYS:
        if k in data:
            rep.summary[k] = _metric(data[k])  # type: ignore[assignment]
    for i, entry in enumerate(data.get("per_category") or []):
        if not isinstance(entry, dict):
            rep.warnings.append(f"{rep.name}: per_category[{i}] is not an object; skipped")
            continue
        rep.per_category.append({
            "id": entry.get("id"),
            "name": str(entry.get("name", entry.get("id", i))),
            "AP": _metric(entry.get("AP")),
            "num_gt_tracks": entry.get("num_gt_tracks"),
            "partition": partition_of(entry),
        })
    return rep


def sorted_categories(rep: Report, partition: str = "all") -> list[dict[str, Any]]:
    """Categories with a defined AP, worst first (ties by name); filter by 'base'/'novel'."""
    cats = [c for c in rep.per_category if c["AP"] is not None]
    if partition in ("base", "novel"):
        cats = [c for c in cats if c["partition"] == partition]
    return sorted(cats, key=lambda c: (c["AP"], c["name"]))


def label_for(path: str, roots: list[str]) -> str:
    """A short, stable label: the path relative to the first root that contains it."""
    p = Path(path)
    for r in roots:
        try:
            return str(p.relative_to(Path(r)))
        except ValueError:
            continue
    return str(p)
