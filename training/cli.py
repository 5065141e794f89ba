"""`ovformer train ...`: command-line front end of `run_training`.

    ovformer train --data DIR [--data DIR ...] [--val DIR] --preset NAME | --config YAML
                   [--init CKPT] [--clip openai|PATH|random|tiny-random] --iters N
                   [--batch B] --out RUN_DIR [--resume]

Also `python -m training train ...`, and under torchrun for data parallelism:
`torchrun --nproc_per_node 2 -m training train ...`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from training.settings import TrainSettings


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ovformer train", description="Fine-tune OVFormer on YouTube-VIS layout datasets.")
    p.add_argument("--data", action="append", required=False, metavar="DIR", help="training dataset (repeatable)")
    p.add_argument("--val", metavar="DIR", help="validation dataset, evaluated periodically and at the end")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--preset", help="model preset (tiny, r50-lvvis, swinb-lvvis, r50-lvis, swinb-lvis)")
    g.add_argument("--config", metavar="YAML", help="official detectron2 config (model + recipe)")
    p.add_argument("--init", metavar="CKPT", help="start from this checkpoint (default: from scratch)")
    p.add_argument("--clip", default="openai", help="openai | PATH | random | tiny-random")
    p.add_argument("--iters", type=int, help="iterations (default: the recipe's)")
    p.add_argument("--batch", type=int, help="global batch size in clips (default: the recipe's)")
    p.add_argument("--out", metavar="RUN_DIR", help="run folder")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR's last checkpoint")
    p.add_argument("--settings", metavar="JSON", help="read every setting from a TrainSettings JSON file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float)
    p.add_argument("--backbone-multiplier", type=float, help="backbone lr factor (recipe: 0.1)")
    p.add_argument("--steps", type=int, nargs="*", help="lr decay iterations")
    p.add_argument("--min-size", type=int, nargs="+", dest="min_sizes", help="training shorter-side choices")
    p.add_argument("--max-size", type=int)
    p.add_argument("--num-frames", type=int, help="frames per training clip")
    p.add_argument("--crop", type=float, nargs=2, metavar=("MIN", "MAX"), help="relative crop range")
    p.add_argument("--num-points", type=int, help="points per mask in the loss")
    p.add_argument("--amp", default="auto", choices=["auto", "off", "bf16", "fp16"])
    p.add_argument("--device", default="auto")
    p.add_argument("--checkpoint-period", type=int, default=1000)
    p.add_argument("--eval-period", type=int, default=0)
    p.add_argument("--log-period", type=int, default=20)
    p.add_argument("--eval-min-size", type=int)
    p.add_argument("--eval-max-videos", type=int)
    p.add_argument("--workers", type=int, default=0, dest="num_workers")
    p.add_argument("--keep-novel", action="store_true",
                   help="also train on novel categories (default: their annotations are left out, "
                        "LV-VIS partitions 2-3 and --novel-category)")
    p.add_argument("--novel-category", action="append", dest="novel_categories", metavar="ID_OR_NAME",
                   help="a category to leave out of training as novel (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def settings_from_args(a: argparse.Namespace) -> TrainSettings:
    """TrainSettings from parsed arguments (a --settings file, then explicit flags)."""
    if a.settings:
        s = TrainSettings.from_dict(json.loads(Path(a.settings).read_text()))
        if a.resume:
            s.resume = True
        return s
    if not a.data or not a.out:
        raise SystemExit("ovformer train: --data and --out are required")
    return TrainSettings(
        data=a.data, out=a.out, preset=None if a.config else (a.preset or "r50-lvvis"), config=a.config,
        val=a.val, init=a.init, clip=a.clip, iters=a.iters, batch=a.batch, resume=a.resume, seed=a.seed,
        lr=a.lr, backbone_multiplier=a.backbone_multiplier, steps=tuple(a.steps) if a.steps is not None else None,
        min_sizes=tuple(a.min_sizes) if a.min_sizes else None, max_size=a.max_size, num_frames=a.num_frames,
        crop=tuple(a.crop) if a.crop else None, num_points=a.num_points, amp=a.amp, device=a.device,
        checkpoint_period=a.checkpoint_period, eval_period=a.eval_period, log_period=a.log_period,
        eval_min_size=a.eval_min_size, eval_max_videos=a.eval_max_videos, num_workers=a.num_workers,
        keep_novel=a.keep_novel, novel_categories=a.novel_categories)


def main(argv: list[str] | None = None) -> int:
    """Entry point; ``argv`` may start with "train". Returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        argv = argv[1:]
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from training import dist
    from training.loop import run_training

    settings = settings_from_args(args)
    try:
        result = run_training(settings, progress_bar=not args.no_progress)
    except BaseException as exc:  # let pollers (the app) see the failure
        if int(os.environ.get("RANK", "0")) == 0 and Path(settings.out).is_dir():
            from training.metrics import read_progress, write_progress

            last = read_progress(settings.out) or {}
            write_progress(settings.out, {**last, "state": "failed", "error": f"{type(exc).__name__}: {exc}"})
        if isinstance(exc, (FileNotFoundError, ValueError)):  # bad input: one line, not a traceback
            print(f"ovformer train: error: {exc}", file=sys.stderr)
            return 2
        raise
    finally:
        dist.cleanup()
    if int(os.environ.get("RANK", "0")) == 0:
        where = result.final_checkpoint or f"{result.run_dir} (stopped at iteration {result.iteration})"
        print(f"done: {where}")
        if result.last_eval:
            print("eval: " + ", ".join(f"{k}={v:.4f}" for k, v in result.last_eval.items()
                                       if isinstance(v, float)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
