"""``ovformer doctor``: check a model set-up end to end and say what is missing.

    ovformer doctor                         # r50-lvvis with OpenAI CLIP, as downloaded
    ovformer doctor --weights swinb-lvis
    ovformer doctor --weights CKPT.pth --config official_config.yaml --clip tiny-random

For a user who has just downloaded weights: loads the checkpoint and CLIP, reports versions and
fingerprints, how well the text function (DetPro prompts, else the prompt ensemble) reproduces
the classifier stored in the checkpoint, and a short prediction on the bundled sample with its
timing. Nothing is downloaded. Whatever cannot be checked is listed with how to get it; the
exit status is 0 when every check ran, 1 when something was missing or failed.
"""
from __future__ import annotations

import argparse
import platform
import time
from importlib import metadata
from pathlib import Path

import torch

_PACKAGES = ("torch", "torchvision", "timm", "open_clip_torch", "av", "numpy")


class _Report:
    """Prints as it goes (a check may take a while) and remembers what could not be checked."""

    def __init__(self) -> None:
        self.missing: list[str] = []

    def section(self, title: str) -> None:
        print(f"\n== {title}")

    def line(self, text: str) -> None:
        print(f"   {text}")

    def miss(self, what: str, how: str) -> None:
        print(f"   NOT CHECKED: {what}")
        self.missing.append(f"{what}: {how}")


def _versions(rep: _Report) -> None:
    rep.section("versions")
    rep.line(f"python {platform.python_version()} on {platform.machine()}, "
             f"{torch.get_num_threads()} torch threads, CUDA available: {torch.cuda.is_available()}")
    from ..inference.runtime import describe_runtime, resolve_runtime
    rep.line(f"--device auto --dtype auto: {describe_runtime(*resolve_runtime('auto', 'auto'))}")
    for name in _PACKAGES:
        try:
            rep.line(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            rep.line(f"{name}: not installed")


def _checkpoint(rep: _Report, args: argparse.Namespace):
    from ..api import load_model
    from ..download import sha256_of
    from ..weights import WeightsNotFoundError, resolve_weights
    rep.section("checkpoint")
    try:
        path = resolve_weights(args.weights, download=False)
    except WeightsNotFoundError as exc:
        rep.miss("the checkpoint", str(exc))
        return None
    rep.line(f"{path} ({path.stat().st_size / 1e6:.1f} MB, sha256 {sha256_of(path)[:16]}...)")
    loaded = load_model(args.weights, preset=args.preset, config=args.config)
    cfg = loaded.config
    rep.line(f"architecture: {cfg.backbone}, {cfg.num_queries} queries, "
             f"{getattr(cfg, 'meta_arch', 'video')} model, test size {cfg.min_size_test}")
    if loaded.iteration is not None:
        rep.line(f"iteration {loaded.iteration}")
    if loaded.classifier is not None:
        v = loaded.classifier.vocabulary
        rep.line(f"stored classifier: {len(v)} classes ({', '.join(v.names[:3])}, ...), "
                 f"{loaded.classifier.weight.shape[1]}-d")
    elif loaded.text_embeds is not None:
        rep.miss(f"the names of the stored classifier's {loaded.text_embeds.shape[0]} columns",
                 "pass the training vocabulary (load_model(..., classifier_vocabulary=...))")
    else:
        rep.line("no stored classifier (every class will be embedded from text)")
    if loaded.clip_fingerprint:
        rep.line(f"trained with CLIP {loaded.clip_fingerprint}")
    return loaded


def _clip(rep: _Report, spec: str):
    from ..clip import ClipWeightsNotFoundError, clip_fingerprint, load_clip
    rep.section("CLIP")
    try:
        clip = load_clip(spec)
    except ClipWeightsNotFoundError as exc:
        rep.miss(f"CLIP {spec!r}", str(exc))
        return None
    rep.line(f"{spec}: {clip.dim}-d, fingerprint {clip_fingerprint(clip)}")
    return clip


def _text(rep: _Report, loaded, clip, limit: int) -> None:
    from ..detpro import classifier_agreement, detpro_text_embeddings, template_ensemble_embeddings
    from ..text_embeddings import find_detpro_context
    rep.section("text embeddings")
    if loaded is None or clip is None or loaded.classifier is None:
        rep.miss("the text function against the stored classifier",
                 "needs a checkpoint with a known classifier and its CLIP")
        return
    loaded.check_clip(clip)
    context, note = find_detpro_context(clip)
    vocab = loaded.classifier.vocabulary
    k = min(limit, len(vocab)) if limit > 0 else len(vocab)
    names = vocab.prompt_names[:k]
    start = time.monotonic()
    if context is not None:
        computed, how = detpro_text_embeddings(clip, context, names), "DetPro prompts"
    else:
        computed, how = template_ensemble_embeddings(clip, names), "the prompt ensemble"
        rep.miss("DetPro's function against the stored classifier", note)
    agree = classifier_agreement(computed, loaded.classifier.weight[:k], vocab.names[:k])
    rep.line(f"{how} on the first {k} training classes ({time.monotonic() - start:.1f} s): "
             f"cosine with the stored classifier mean {agree['mean_cosine']:.4f}, "
             f"min {agree['min_cosine']:.4f}")
    rep.line("lowest: " + ", ".join(f"{n} {c:.3f}" for _, n, c in agree["worst"]))
    if clip.spec in ("random", "tiny-random"):
        rep.line(f"(with the {clip.spec} CLIP this figure means nothing; the released "
                 "classifiers need OpenAI's ViT-B/32)")
    rep.line("classes the classifier knows use its stored column; only new classes use this")


def _predict(rep: _Report, loaded, clip, video: Path | None, frames: int) -> None:
    from ..data.sample import ensure_sample
    from ..data.video import open_video
    from ..inference.predictor import OVFormerVideoPredictor, PredictOptions
    from ..weights import ovformer_home
    rep.section("prediction")
    if loaded is None or clip is None:
        rep.miss("a prediction", "needs the checkpoint and CLIP above")
        return
    video = video or ensure_sample(ovformer_home())
    pred = OVFormerVideoPredictor.from_loaded(loaded, clip)
    text = pred.default_text or pred.embed_vocabulary(["person", "bicycle", "car"])
    source = open_video(video, max_frames=frames)
    start = time.monotonic()
    result = pred.predict(source, text, PredictOptions(preview_k=0))
    took = time.monotonic() - start
    rep.line(f"{video.name}: {result.num_frames} frames at {result.width}x{result.height} in "
             f"{took:.1f} s ({took / max(1, result.num_frames):.2f} s/frame, vocabulary: "
             f"{result.text_summary})")
    for t in result.tracks[:3]:
        rep.line(f"track {t.query}: {result.vocabulary[t.label]} {t.score:.3f}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ovformer doctor", description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default="r50-lvvis", help="released name or checkpoint path")
    p.add_argument("--preset", default=None)
    p.add_argument("--config", default=None, help="an official detectron2 YAML config")
    p.add_argument("--clip", default="openai", help="openai, a checkpoint PATH, random, tiny-random")
    p.add_argument("--classes", type=int, default=200,
                   help="training classes compared with the stored classifier (0: all)")
    p.add_argument("--video", type=Path, default=None, help="default: the bundled sample")
    p.add_argument("--frames", type=int, default=10, help="frames of the video to predict")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rep = _Report()
    _versions(rep)
    loaded = _checkpoint(rep, args)
    clip = _clip(rep, args.clip)
    _text(rep, loaded, clip, args.classes)
    _predict(rep, loaded, clip, args.video, args.frames)
    rep.section("summary")
    if not rep.missing:
        rep.line("everything was checked")
        return 0
    for item in rep.missing:
        rep.line(f"- {item}")
    return 1
