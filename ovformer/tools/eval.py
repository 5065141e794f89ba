"""``ovformer eval``: score a YouTube-VIS / LV-VIS results file against its ground truth.

    ovformer eval --gt valid.json --results results.json --out metrics.json

Prints a short table (percent) and writes the :func:`ovformer.ytvis.evaluate.evaluate` dict
(fractions, -1 = undefined) as JSON. A missing or malformed file prints one ``error:`` line
and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from ovformer.ytvis.evaluate import STAT_NAMES, evaluate
from ovformer.ytvis.io import YTVISFormatError, read_gt
from ovformer.ytvis.results import read_results

__all__ = ["main", "build_parser", "format_table", "report"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ovformer eval", description=__doc__.split("\n\n")[0].strip())
    p.add_argument("--gt", required=True, type=Path, help="ground-truth json (videos/annotations/categories)")
    p.add_argument("--results", required=True, type=Path,
                   help="results json: [{video_id, category_id, score, segmentations}]")
    p.add_argument("--out", type=Path, default=None, help="where to write the metrics json")
    p.add_argument("--per-category", action="store_true", help="also print the AP of every category with GT")
    return p


def _pct(v: float) -> str:
    return "   -" if v < 0 else f"{100 * v:5.1f}"


def format_table(metrics: dict[str, Any], per_category: bool = False) -> str:
    """The stats as a two-row text table in percent ('-' for undefined)."""
    names = list(STAT_NAMES) + [k for k in ("AP_base", "AP_novel") if k in metrics]
    widths = [max(6, len(n)) for n in names]
    lines = [" ".join(f"{n:>{w}}" for n, w in zip(names, widths)),
             " ".join(f"{_pct(metrics[n]):>{w}}" for n, w in zip(names, widths))]
    lines.append(f"({metrics['num_videos']} videos, {metrics['num_results']} predictions)")
    if per_category:
        for c in metrics["per_category"]:
            if c["num_gt_tracks"]:
                lines.append(f"  {_pct(c['AP'])}  {c['name']} (id {c['id']}, {c['num_gt_tracks']} tracks)")
    return "\n".join(lines)


def report(metrics: dict[str, Any], out: Path | None, per_category: bool = False) -> None:
    """Print :func:`format_table` and write ``metrics`` as JSON to ``out`` (when given): what
    ``ovformer eval`` and ``ovformer predict --eval`` both show."""
    print(format_table(metrics, per_category))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status (0 ok, 2 bad input)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    try:
        gt = read_gt(args.gt)
        results = read_results(args.results, gt=gt)
        metrics = evaluate(gt, results)
    except (YTVISFormatError, ValueError, OSError) as e:
        # one line, no traceback: these are problems with the user's files, not with us
        msg = str(e) if not isinstance(e, OSError) else f"{e.filename}: {e.strerror}"
        print(f"error: {msg}", file=sys.stderr)
        return 2
    report(metrics, args.out, args.per_category)
    return 0


if __name__ == "__main__":
    sys.exit(main())
