"""Command-line pieces shared by ``predict``, ``bench``, the app and training."""
from __future__ import annotations

import argparse
import sys

from ..vocab import VOCAB_PRESETS, Vocabulary, parse_vocab_text


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
    g.add_argument("--device", default="auto",
                   help="auto (default): this process's GPU when CUDA is available, else cpu; "
                        "cpu, cuda or cuda:N")
    g.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="auto (default): the fastest whose masks agree with fp32 on >= 99%% of "
                        "pixels (fp16 on CUDA, bf16 on a CPU with bf16 units, else fp32); "
                        "fp32 for exact output")


def add_vocab_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "vocabulary", "Classes the model's own classifier knows use its stored embedding; new "
        "ones DetPro's learned prompts when downloaded, else a prompt ensemble.")
    g.add_argument("--vocab", default=None, help='class names, e.g. "person, bicycle, dog"')
    g.add_argument("--vocab-file", default=None,
                   help="a file with one class name per line, or an annotation JSON")
    g.add_argument("--vocab-preset", default=None, choices=list(VOCAB_PRESETS))
    g.add_argument("--templates", default=None,
                   help="prompt templates for new classes, separated by '|', each with {}")
    g.add_argument("--text-embeds", default=None, metavar="FILE.npy",
                   help="a classifier file: K x D rows in the order of the vocabulary given "
                        "(as the official datasets/metadata/*.npy); used for every class")


def vocab_from_args(args: argparse.Namespace) -> Vocabulary | None:
    """The vocabulary of the flags (a preset or annotation file keeps its ids); None when none
    was given."""
    if args.vocab_preset:
        return Vocabulary.from_preset(args.vocab_preset)
    if args.vocab_file:
        return Vocabulary.from_file(args.vocab_file)
    if args.vocab is not None:
        return Vocabulary.from_names(parse_vocab_text(args.vocab))
    return None


def templates_from_args(args: argparse.Namespace) -> list[str] | None:
    return [t.strip() for t in args.templates.split("|") if t.strip()] if args.templates else None


def text_from_args(args: argparse.Namespace, predictor, vocabulary: Vocabulary):
    """The :class:`~ovformer.text_embeddings.TextEmbeddings` the flags ask for: the
    ``--text-embeds`` file, else the predictor's sources (classifier, DetPro, ensemble)."""
    if getattr(args, "text_embeds", None):
        from ..text_embeddings import load_text_embeddings_file
        return load_text_embeddings_file(args.text_embeds, vocabulary)
    return predictor.embed_vocabulary(vocabulary, templates_from_args(args))


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
