"""Command-line pieces shared by ``predict``, ``bench``, the app and training."""
from __future__ import annotations

import argparse
import sys

from ..vocab import VOCAB_PRESETS, load_vocab_preset, parse_vocab_text, read_vocab_file


def add_model_args(p: argparse.ArgumentParser, *, default_clip: str = "openai") -> None:
    """--preset/--config, --weights/--untrained, --clip, --device, --dtype, --download."""
    g = p.add_argument_group("model")
    g.add_argument("--preset", default=None,
                   help="r50-lvvis (default), swinb-lvvis, r50-lvis, swinb-lvis or tiny")
    g.add_argument("--config", default=None, help="an official detectron2 YAML config instead")
    g.add_argument("--weights", default=None,
                   help="checkpoint path or released name (default: the preset's release)")
    g.add_argument("--untrained", action="store_true",
                   help="run on random weights; every output is labelled untrained")
    g.add_argument("--download", action="store_true",
                   help="download released weights that are not cached yet")
    g.add_argument("--clip", default=default_clip,
                   help="CLIP: openai (ViT-B/32), a checkpoint PATH, random or tiny-random")
    g.add_argument("--device", default="cpu")
    g.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])


def add_vocab_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("vocabulary")
    g.add_argument("--vocab", default=None, help='class names, e.g. "person, bicycle, dog"')
    g.add_argument("--vocab-file", default=None, help="a file with one class name per line")
    g.add_argument("--vocab-preset", default=None, choices=list(VOCAB_PRESETS))
    g.add_argument("--templates", default=None,
                   help="prompt templates separated by '|', each with {} for the name")


def vocab_from_args(args: argparse.Namespace) -> tuple[list[str], list[int] | None] | None:
    """(names, category ids or None) from the vocabulary flags; None when none was given."""
    if args.vocab_preset:
        cats = load_vocab_preset(args.vocab_preset)
        return [c.name for c in cats], [c.id for c in cats]
    if args.vocab_file:
        return read_vocab_file(args.vocab_file), None
    if args.vocab is not None:
        return parse_vocab_text(args.vocab), None
    return None


def templates_from_args(args: argparse.Namespace) -> list[str] | None:
    return [t.strip() for t in args.templates.split("|") if t.strip()] if args.templates else None


def build_predictor(args: argparse.Namespace, **kwargs):
    """An :class:`OVFormerVideoPredictor` from :func:`add_model_args` flags."""
    from ..inference.predictor import OVFormerVideoPredictor
    weights = args.weights or (None if args.untrained else (args.preset or "r50-lvvis"))
    if args.preset == "tiny" and not args.weights and not args.untrained:
        raise SystemExit("error: the tiny preset has no released weights: pass --weights CKPT "
                         "or --untrained")
    return OVFormerVideoPredictor.from_pretrained(
        weights, preset=args.preset, config=args.config, clip=args.clip,
        untrained=args.untrained, download=args.download, device=args.device, dtype=args.dtype,
        **kwargs)


def fail(message: str) -> int:
    """Print one ``error:`` line and return exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    return 2
