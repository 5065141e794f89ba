"""``ovformer predict``: pre-label videos with any vocabulary and write YouTube-VIS files.

    ovformer predict bikes.mp4 frames_dir/ ytvis_dataset/ --vocab "person, bicycle" \\
        --out results.json [--gt-out prelabels/annotations.json] [--render overlay.mp4]

Each video's outputs are kept in ``RESULTS.json.parts/`` as soon as it is done, one file per
input keyed by its full path (or dataset and video id), so a rerun skips finished videos (same
settings) and an interrupted batch loses at most the video in flight. A bad input prints one
``error:`` line naming the file and the batch goes on.

Under ``torchrun --nproc-per-node N "$(which ovformer)" predict ...`` (one node or many over a
shared filesystem) the inputs not done yet are shared out over the ranks by frame count, each
rank writes its videos' parts (each records its rank and host), and rank 0 merges them into
``RESULTS.json`` (and ``--gt-out``) once every rank is done; a rerun with any world size
finishes what a dead rank left. A plain ``ovformer predict`` is one process.

With ``--eval [METRICS.json]`` and a dataset with ground truth as the input, rank 0 then scores
``RESULTS.json`` (see :mod:`ovformer.tools.predict_eval`), also on a rerun with nothing left.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import socket
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .. import distributed
from ..render import render_overlay_video
from ..ytvis.io import write_gt
from ..ytvis.results import write_results
from ..ytvis.rle import decode_rle, rle_area, rle_bbox
from ..inference.runtime import describe_runtime
from ..inference.types import PredictOptions, VideoPredictor
from ..text_embeddings import TextEmbeddings
from ..vocab import Vocabulary
from .common import add_model_args, add_vocab_args, build_predictor, fail, text_from_args, vocab_from_args
from .inputs import InputVideo, expand_inputs
from .predict_eval import add_eval_arg, eval_dataset, metrics_path, score_parts


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ovformer predict", description=__doc__.split("\n\n")[0])
    p.add_argument("inputs", nargs="+", help="video files, frame folders, YouTube-VIS folders")
    p.add_argument("--out", required=True, type=Path, help="results json (YouTube-VIS layout)")
    p.add_argument("--gt-out", type=Path, default=None,
                   help="also write pre-labels in the ground-truth layout; the frames go to "
                        "JPEGImages/ beside it, so the folder is a dataset `ovformer train` reads")
    p.add_argument("--render", type=Path, default=None,
                   help="overlay video; with several inputs NAME_<video>.mp4 per video")
    p.add_argument("--fps", type=float, default=None, help="subsample to this frame rate")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--min-size", type=int, default=None,
                   help="shorter side for the model (default: 360 R50, 480 Swin-B)")
    p.add_argument("--clip-length", type=int, default=None,
                   help="frames per clip: 5 semi-online (default), 1 online, 0 offline")
    p.add_argument("--top-k", type=int, default=None, help="(query, class) results per video")
    p.add_argument("--prelabel-threshold", type=float, default=0.3,
                   help="tracks below this score are left out of --gt-out")
    p.add_argument("--no-resume", action="store_true", help="redo videos already done")
    p.add_argument("--wait-hours", type=float, default=72.0,
                   help="under torchrun: how long finished ranks wait for the slowest one")
    add_eval_arg(p)
    add_model_args(p)
    add_vocab_args(p)
    return p


def _settings_hash(args: argparse.Namespace, predictor, text) -> str:
    """Results are reused only for the same weights, settings and exact text embeddings."""
    s = json.dumps([predictor.weights_label, text.vocabulary.names, text.vocabulary.ids,
                    hashlib.sha256(text.embeds.numpy().tobytes()).hexdigest(), args.fps,
                    args.max_frames, predictor.defaults.min_size, predictor.defaults.clip_length,
                    predictor.defaults.top_k,
                    predictor.dtype, args.clip], default=str)
    return hashlib.sha256(s.encode()).hexdigest()[:16]


def _prelabels(pred, video_id: int, threshold: float, first_ann_id: int) -> list[dict[str, Any]]:
    """Ground-truth-layout annotations, one per track at or above ``threshold``."""
    anns = []
    for track in pred.tracks:
        if track.score < threshold:
            continue
        segs = track.segmentations
        anns.append({"id": first_ann_id + len(anns), "video_id": video_id,
                     "category_id": pred.category_ids[track.label], "iscrowd": 0,
                     "height": pred.height, "width": pred.width, "score": track.score,
                     "segmentations": segs,
                     "areas": [None if s is None else rle_area(s) for s in segs],
                     "bboxes": [None if s is None else rle_bbox(s) for s in segs]})
    return anns


class _FrameWriter:
    """Passes frames through while saving them as JPEGs (for the pre-label dataset)."""

    def __init__(self, source, folder: Path | None) -> None:
        self.source, self.folder, self.names = source, folder, []
        self.info = getattr(source, "info", None)

    def __iter__(self):
        from PIL import Image
        for frame in self.source:
            if self.folder is not None:
                name = f"{len(self.names):05d}.jpg"
                self.folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(frame.rgb).save(self.folder / name, quality=95)
                self.names.append(f"{self.folder.name}/{name}")
            yield frame


def _render(item: InputVideo, pred, args: argparse.Namespace, multi: bool) -> Path:
    out = args.render if not multi else args.render.with_name(
        f"{args.render.stem}_{item.slug}{args.render.suffix or '.mp4'}")
    source = item.open(args.fps, args.max_frames)
    fps = args.fps or source.info.fps or 25.0
    shown = [t for t in pred.tracks if t.score >= args.prelabel_threshold] or pred.tracks[:5]

    def items(i: int):
        return [(k + 1, pred.vocabulary[t.label], decode_rle(t.segmentations[i]))
                for k, t in enumerate(shown) if i < len(t.segmentations)
                and t.segmentations[i] is not None]
    return render_overlay_video(source, items, out, fps)


def predict_one(item: InputVideo, video_id: int, predictor: VideoPredictor, text: TextEmbeddings,
                args, settings: str, parts: Path, where: dict[str, Any]) -> dict[str, Any]:
    """Predict one video and store its part file (``where``: the rank and host running it);
    returns the part."""
    source = item.open(args.fps, args.max_frames)
    frames_dir = None
    if args.gt_out is not None:
        frames_dir = args.gt_out.parent / "JPEGImages" / item.slug
    stream = _FrameWriter(source, frames_dir)
    total = source.info.num_frames or None
    with tqdm(total=total, desc=item.label[-30:], unit="frame", leave=False) as bar:
        pred = predictor.predict(stream, text, PredictOptions(preview_k=0), num_frames=total,
                                 on_clip=lambda c: bar.update(c.frames_done - bar.n))
    part = {"key": item.key, "settings": settings, "video_id": video_id, **where,
            "untrained": pred.untrained, "weights": pred.weights_label,
            "results": pred.results(video_id),
            "video": {"id": video_id, "width": pred.width, "height": pred.height,
                      "length": pred.num_frames, "file_names": stream.names},
            "annotations": _prelabels(pred, video_id, args.prelabel_threshold, 1)}
    if args.render is not None:
        multi = len(args.inputs) > 1 or item.frame_files is not None  # a dataset has many videos
        part["render"] = str(_render(item, pred, args, multi))
    tmp = parts / f"{item.slug}.json.tmp{where['rank']}"
    tmp.write_text(json.dumps(part))
    tmp.replace(parts / f"{item.slug}.json")
    return part


def _load_part(parts: Path, item: InputVideo, settings: str, video_id: int) -> dict | None:
    """The stored part of ``item`` when it was made with ``settings``, with ``video_id`` (ids
    follow the order of this run's inputs); None when there is none to reuse."""
    try:
        part = json.loads((parts / f"{item.slug}.json").read_text())
    except (OSError, ValueError):
        return None
    if part.get("key") != item.key or part.get("settings") != settings:
        return None
    if part["video_id"] != video_id:
        part["video_id"] = part["video"]["id"] = video_id
        for entry in part["results"] + part["annotations"]:
            entry["video_id"] = video_id
    return part


def shard_by_frames(frames: list[int], world_size: int) -> list[list[int]]:
    """Indices of ``frames`` per rank, the longest video first to the least-loaded rank (ties to
    the lowest rank), each rank's list in input order: deterministic, so every rank computes
    the same plan."""
    loads, plan = [0] * world_size, [[] for _ in range(world_size)]
    for i in sorted(range(len(frames)), key=lambda i: (-frames[i], i)):
        r = min(range(world_size), key=lambda r: (loads[r], r))
        loads[r] += max(1, frames[i])
        plan[r].append(i)
    return [sorted(p) for p in plan]


class _Texts:
    """The text embeddings of each vocabulary met, computed once."""

    def __init__(self, args, predictor, quiet: bool) -> None:
        self.args, self.predictor, self.quiet, self.seen = args, predictor, quiet, []

    def __call__(self, vocab: Vocabulary) -> TextEmbeddings:
        for v, text in self.seen:
            if v == vocab:
                return text
        text = text_from_args(self.args, self.predictor, vocab)
        if not self.quiet:
            print(f"vocabulary: {len(vocab)} classes, {text.summary()}", file=sys.stderr)
        self.seen.append((vocab, text))
        return text


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not distributed.launched_by_torchrun():
        return _run(args, None)
    di = distributed.init_distributed(args.device, timeout_s=args.wait_hours * 3600)
    args.device = str(di.device)
    try:
        return _run(args, di)
    finally:
        distributed.cleanup()


def _run(args: argparse.Namespace, di: distributed.DistInfo | None) -> int:
    rank, world = (di.rank, di.world_size) if di is not None else (0, 1)
    where = {"rank": rank, "host": socket.gethostname()}
    try:
        given = vocab_from_args(args)
        items = list(expand_inputs(args.inputs))
        dataset = eval_dataset(args, given, rank != 0)  # every rank checks, so all stop alike
    except (ValueError, OSError) as exc:
        return fail(str(exc))
    dataset = dataset if rank == 0 else None  # only rank 0 scores: the others need no GT held
    if given is None and not any(i.categories for i in items):
        return fail("no vocabulary: pass --vocab, --vocab-file or --vocab-preset")
    if args.text_embeds and given is None:
        return fail("--text-embeds needs the names of its rows: pass --vocab, --vocab-file or "
                    "--vocab-preset")
    kwargs = {k: v for k, v in (("min_size", args.min_size), ("clip_length", args.clip_length),
                                ("top_k", args.top_k)) if v is not None}
    try:
        predictor = build_predictor(args, **kwargs)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        return fail(str(exc))
    if rank == 0:  # the first line says how it runs
        print(f"ovformer predict: {predictor.weights_label or 'weights'}, "
              f"{describe_runtime(predictor.device, predictor.dtype)}, {world} "
              f"process{'es' if world > 1 else ''}", file=sys.stderr)
    if predictor.untrained and rank == 0:
        print("WARNING: UNTRAINED random weights: the predictions mean nothing.", file=sys.stderr)
    parts = Path(f"{args.out}.parts")
    parts.mkdir(parents=True, exist_ok=True)
    used = {i.video_id for i in items if i.video_id is not None}
    ids, next_id = [], 1
    for item in items:  # the same ids on every rank and in every run over these inputs
        if item.video_id is None:
            while next_id in used:
                next_id += 1
            next_id += 1
        ids.append(item.video_id if item.video_id is not None else next_id - 1)
    texts = _Texts(args, predictor, quiet=rank != 0)
    try:
        settings = [_settings_hash(args, predictor, texts(given or Vocabulary.from_categories(
            i.categories))) for i in items]
    except (OSError, ValueError) as exc:
        return fail(str(exc))
    # which videos are left, and how long each is: every rank looks at its share of the inputs
    survey = {}
    for i in range(rank, len(items), world):
        if not args.no_resume and _load_part(parts, items[i], settings[i], ids[i]) is not None:
            print(f"skip {items[i].label}: already done", file=sys.stderr)
            continue
        try:
            survey[i] = items[i].count_frames(args.fps, args.max_frames) if world > 1 else 1
        except Exception:  # the prediction reports it
            survey[i] = 1
    todo = {i: n for s in distributed.all_gather_object(survey) for i, n in s.items()}
    pending = sorted(todo)
    mine = [pending[j] for j in shard_by_frames([todo[i] for i in pending], world)[rank]]
    failed = 0
    for i in mine:
        item = items[i]
        vocab = given or Vocabulary.from_categories(item.categories)
        try:
            part = predict_one(item, ids[i], predictor, texts(vocab), args, settings[i], parts,
                               where)
            print(f"done {item.label}: {len(part['results'])} results", file=sys.stderr)
        except Exception as exc:  # one bad input never stops the batch
            failed += 1
            print(f"error: {item.path}: {exc}", file=sys.stderr)
    failed = sum(distributed.all_gather_object(failed))  # also waits for every rank
    if rank != 0:
        return 1 if failed else 0
    done = [p for p in (_load_part(parts, it, st, vid) for it, st, vid in zip(items, settings, ids))
            if p is not None]
    write_results(args.out, [r for p in done for r in p["results"]])
    if args.gt_out is not None:
        _write_prelabels(args.gt_out, done, given, items)
    missing = len(items) - len(done)
    print(f"wrote {args.out} ({len(done)} videos, {missing} failed)", file=sys.stderr)
    if dataset is not None:
        try:
            score_parts(dataset, done, metrics_path(args))
        except ValueError as exc:
            return fail(f"--eval: {exc}")
    return 1 if failed or missing else 0


def _write_prelabels(path: Path, parts: list[dict], given: Vocabulary | None,
                     items: list[InputVideo]) -> None:
    """The ground-truth layout of every finished video; categories from the vocabulary given,
    else from the first dataset input."""
    vocab = given or Vocabulary.from_categories(next(i for i in items if i.categories).categories)
    cats = vocab.to_json()
    anns, next_id = [], 1
    for p in parts:
        for a in p["annotations"]:
            anns.append({**a, "id": next_id})
            next_id += 1
    write_gt(path, {"videos": [p["video"] for p in parts], "annotations": anns,
                    "categories": cats})
