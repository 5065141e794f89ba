"""Run-folder bookkeeping: `metrics.jsonl`, `progress.json` and reading them back.

`metrics.jsonl` has one JSON object per line: training records (`iteration`, `loss`,
`loss_*`, `lr`, `iter_time_s`, `samples_per_s`, ...) and evaluation records (`iteration`
and `eval` {AP, AP50, ...}). `progress.json` is rewritten every iteration for pollers
(the app) that want the latest state without parsing the whole log.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

METRICS_FILE = "metrics.jsonl"
PROGRESS_FILE = "progress.json"
STOP_FILE = "STOP"


def _clean(value: Any) -> Any:
    # JSON has no NaN/inf: write them as null so every line stays standard JSON
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class MetricsWriter:
    """Appends records to `RUN_DIR/metrics.jsonl` (flushed per line, so a crash loses nothing).

    On resume, records of iterations after the checkpoint are dropped first, so the log of a
    resumed run reads like the log of an uninterrupted one.
    """

    def __init__(self, run_dir: str | Path, resume_from: int | None = None) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_from is not None and self.path.exists():
            kept = [r for r in read_metrics(run_dir) if r.get("iteration", 0) <= resume_from]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        elif resume_from is None:
            self.path.write_text("")
        self._file = open(self.path, "a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(_clean(record)) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def parse_metrics(lines: Iterable[str], source: str = METRICS_FILE) -> tuple[list[dict[str, Any]], list[str]]:
    """The records of `metrics.jsonl` lines, and a warning per line that is not a JSON object
    with a numeric "iteration" (every record the writer logs has one).

    Warnings name the line ("<source> line 3: not valid JSON (...)"): a line cut mid-write by a
    crash costs one point, not the run. Blank lines are skipped silently.
    """
    records: list[dict[str, Any]] = []
    warnings: list[str] = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as e:
            warnings.append(f"{source} line {i}: not valid JSON ({getattr(e, 'msg', e)}); skipped")
            continue
        it = rec.get("iteration") if isinstance(rec, dict) else None
        if isinstance(it, bool) or not isinstance(it, (int, float)):  # every record has one
            warnings.append(f"{source} line {i}: no numeric 'iteration'; skipped")
            continue
        records.append(rec)
    return records, warnings


def read_metrics(run_dir: str | Path, warnings: list[str] | None = None) -> list[dict[str, Any]]:
    """Every record of `RUN_DIR/metrics.jsonl`, in order ([] if there is none yet).

    Lines that do not parse (a partially written last line: the run is writing it) are skipped;
    their warnings are appended to ``warnings`` when given.
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    records, warns = parse_metrics(path.read_text(encoding="utf-8", errors="replace").splitlines(),
                                   f"{Path(run_dir).name}/{METRICS_FILE}")
    if warnings is not None:
        warnings.extend(warns)
    return records


def write_progress(run_dir: str | Path, progress: dict[str, Any]) -> None:
    """Atomically replace `RUN_DIR/progress.json`."""
    path = Path(run_dir) / PROGRESS_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_clean(progress)))
    os.replace(tmp, path)


def read_progress(run_dir: str | Path) -> dict[str, Any] | None:
    """The latest progress snapshot (`iteration`, `total`, `loss`, `eta_s`, `state`, ...)
    or None before the run has written one. `state` is "starting", "running", "evaluating",
    "finished", "stopped" or "failed"."""
    path = Path(run_dir) / PROGRESS_FILE
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def request_stop(run_dir: str | Path) -> None:
    """Ask a running training to checkpoint and stop after its current iteration."""
    Path(run_dir, STOP_FILE).touch()
