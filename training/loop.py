"""The video-level fine-tuning loop: `run_training(settings, progress_callback)`.

One iteration: a batch of augmented clips -> CLIP frame embeddings (frozen, cached per
frame file) -> model forward under autocast -> Hungarian matching + losses on every decoder
layer -> backward -> full-model gradient clipping -> AdamW step. Rank 0 writes the run
folder (config.json, metrics.jsonl, progress.json, checkpoints, eval/*.json).

Reproducibility: the batch of iteration i and the step's random draws (matcher points,
federated sampling, point sampling) depend only on (seed, rank, i), and the lr schedule
only on i, so `resume` reproduces an uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from ovformer.api import checkpoint_classifier
from ovformer.clip import clip_fingerprint, load_clip
from ovformer.text_embeddings import StoredClassifier, TextEmbeddings, embed_vocabulary, find_detpro_context
from ovformer.vocab import Vocabulary
from ovformer.factory import create_model
from training import dist
from training.augment import ClipAugmentation
from training.criterion import VideoSetCriterion
from training.data import (ClipBatch, ClipBatchStream, VideoClipDataset, YTVISFolder, build_vocabulary,
                           category_frequencies, load_ytvis_folder, remove_novel)
from training.matcher import VideoHungarianMatcher
from training.metrics import STOP_FILE, MetricsWriter, write_progress
from training.settings import RELEASED_NO_OBJECT_WEIGHT, ResolvedRun, TrainSettings, amp_dtype, resolve
from training.solver import build_optimizer, clip_full_model, lr_factor, set_lr
from training.state import (checkpoint_name, last_checkpoint, load_init_weights, load_training_state,
                            save_training_state)

logger = logging.getLogger(__name__)
FINAL_CHECKPOINT = "model_final.pth"


@dataclass
class TrainProgress:
    """What `progress_callback` receives after every iteration (and evaluation)."""

    iteration: int  # completed iterations
    total: int
    loss: float
    losses: dict[str, float]
    lr: float
    elapsed_s: float
    eta_s: float | None
    state: str = "running"  # running | evaluating | finished | stopped
    last_eval: dict[str, Any] | None = None


@dataclass
class TrainResult:
    run_dir: Path
    final_checkpoint: Path | None  # None when the run was stopped before the end
    iteration: int
    stopped: bool
    last_eval: dict[str, Any] | None = None
    rank_fingerprints: list[str] = field(default_factory=list)


class ClipEmbeddingCache:
    """CLIP image embedding of each frame file, computed once on the original frame (the
    released model read precomputed per-file features, so augmentation does not touch them)."""

    def __init__(self, clip_encoder: Any) -> None:
        self.clip, self.cache = clip_encoder, {}

    def __call__(self, frame_paths: list[list[str]], device: torch.device) -> torch.Tensor:
        """(B, T, D) embeddings of a batch's frames."""
        missing = list(dict.fromkeys(p for clip in frame_paths for p in clip if p not in self.cache))
        for p in missing:
            # one frame per call, as the released features were made: a row of a batched
            # matmul can differ in the last bit with the batch's size, which would make a
            # resumed run (different cache history) drift from an uninterrupted one
            frame = np.array(Image.open(p).convert("RGB"))[None]
            self.cache[p] = self.clip.encode_frames(frame)[0].float().cpu()
        return torch.stack([torch.stack([self.cache[p] for p in clip]) for clip in frame_paths]).to(device)


def _without_novel(folder: YTVISFolder, extra: Any, log: bool, record: list[dict[str, Any]]) -> YTVISFolder:
    kept, removed = remove_novel(folder, extra)
    record.append({"data": str(folder.annotation_file), "annotations": removed.annotations,
                   "categories": removed.categories})
    if log:
        logger.info("%s: left out %d annotations of %d novel categories%s (--keep-novel keeps them)",
                    folder.annotation_file, removed.annotations, len(removed.categories),
                    f" ({', '.join(removed.categories[:5])}{', ...' if len(removed.categories) > 5 else ''})"
                    if removed.categories else "")
    return kept


def _step_seed(seed: int, rank: int, iteration: int) -> int:
    return ((seed * 1_000_003 + iteration) * 1024 + rank) % (2**63)


def run_training(settings: TrainSettings,
                 progress_callback: Callable[[TrainProgress], bool | None] | None = None,
                 progress_bar: bool = True) -> TrainResult:
    """Train (or resume) a run as described by ``settings``; usable from a background process.

    Args:
        settings: the run; see `TrainSettings`.
        progress_callback: called on rank 0 after every iteration; returning False stops the
            run after a checkpoint (as does creating `RUN_DIR/STOP`).
        progress_bar: show a tqdm bar with loss and ETA on rank 0.

    Returns:
        A `TrainResult`; the final weights are `RUN_DIR/model_final.pth`.
    """
    # rank 0 evaluates alone (--val) while the others wait at a barrier: NCCL's 10-minute
    # default would abort the job on any real validation set
    di = dist.init_distributed(settings.device, timeout_s=12 * 3600)
    run = resolve(settings)
    out = Path(settings.out)
    if run.batch % di.world_size:
        raise ValueError(f"batch {run.batch} is not divisible by the {di.world_size} processes")
    folders = [load_ytvis_folder(d) for d in settings.data]
    vocab = build_vocabulary(folders)  # novel categories stay in it, with frequency 0
    removed: list[dict[str, Any]] = []  # what the novel filter left out, per dataset (config.json)
    if not settings.keep_novel:
        folders = [_without_novel(f, settings.novel_categories or (), di.is_main, removed) for f in folders]
    freq = category_frequencies(folders, vocab)
    clip = load_clip(settings.clip, di.device)
    init_path = None
    if settings.init:
        from ovformer.weights import resolve_weights  # a registry name ("r50-lvvis") or a path
        init_path = resolve_weights(settings.init, download=True)
    # the same function as every other path: the init checkpoint's classifier for the classes
    # it knows, DetPro prompts or the prompt ensemble for the others
    detpro, note = find_detpro_context(clip)
    text_emb = embed_vocabulary(Vocabulary.from_names(vocab), clip,
                                classifier=checkpoint_classifier(init_path) if init_path else None,
                                detpro_context=detpro, templates=settings.templates, note=note)
    if di.is_main:
        logger.info("class embeddings: %s", text_emb.summary())
    text = text_emb.embeds.to(di.device)  # (K, D)
    if text.shape[1] != run.model_config.clip_dim:
        raise ValueError(f"CLIP {settings.clip!r} gives {text.shape[1]}-d embeddings, the model "
                         f"expects {run.model_config.clip_dim}")

    torch.manual_seed(settings.seed)  # same initial weights on every rank
    model = create_model(run.model_config)
    # "clip" is the fingerprint the predictor checks its CLIP against (label = the spec)
    meta = {"config": run.model_config.to_dict(), "clip": clip_fingerprint(clip), "vocabulary": vocab}
    start = 0
    resume_path = last_checkpoint(out) if settings.resume else None
    if settings.resume and resume_path is None:
        logger.warning("--resume: no checkpoint in %s, starting from the beginning", out)
    optimizer = build_optimizer(model, run.lr, run.recipe.weight_decay, run.backbone_multiplier,
                                run.recipe.weight_decay_norm, run.recipe.weight_decay_embed)
    amp = amp_dtype(settings.amp, run.recipe.amp, di.device.type)
    scaler = torch.amp.GradScaler("cuda") if amp == "float16" else None
    if resume_path is not None:
        state = load_training_state(resume_path, model)
        if state.meta.get("vocabulary") not in (None, vocab):
            raise ValueError(f"{resume_path} was trained on another vocabulary: same --data needed to resume")
        start = state.iteration
        if state.optimizer is not None:
            optimizer.load_state_dict(state.optimizer)
        if scaler is not None and state.scaler:
            scaler.load_state_dict(state.scaler)
    elif init_path is not None:
        load_init_weights(init_path, model)
    model.to(di.device).train()
    # optimizer state loaded before .to(): move its tensors with the parameters
    for st in optimizer.state.values():
        for k, v in st.items():
            if torch.is_tensor(v) and k != "step":
                st[k] = v.to(di.device)
    net = (torch.nn.parallel.DistributedDataParallel(model, device_ids=[di.device.index] if di.device.type == "cuda" else None)
           if di.world_size > 1 else model)

    matcher = VideoHungarianMatcher(run.recipe.class_weight, run.recipe.mask_weight, run.recipe.dice_weight,
                                    run.num_points)
    r = run.recipe
    criterion = VideoSetCriterion(
        len(vocab), matcher, freq,
        {"loss_object_ce": r.object_weight, "loss_ce": r.class_weight, "loss_mask": r.mask_weight,
         "loss_dice": r.dice_weight}, RELEASED_NO_OBJECT_WEIGHT, run.num_points, r.oversample_ratio,
        r.importance_sample_ratio, r.fed_loss_num_classes, r.fed_loss_freq_weight_power).to(di.device)
    # settings.crop is a relative range; the recipe's absolute-range crop (off in the released
    # LV-VIS config) is not reproduced
    dataset = VideoClipDataset(folders, vocab, ClipAugmentation(run.min_sizes, run.max_size, r.random_flip, settings.crop),
                               run.num_frames, r.sampling_frame_range)
    stream = ClipBatchStream(dataset, run.batch // di.world_size, settings.seed, di.rank, start, run.iters,
                             run.model_config.size_divisibility)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=settings.num_workers,
                                         pin_memory=di.device.type == "cuda")  # non_blocking copies
    embed = ClipEmbeddingCache(clip)

    writer = None
    if di.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / STOP_FILE).unlink(missing_ok=True)
        (out / "config.json").write_text(json.dumps({**_config_record(settings, run, vocab, freq, di, amp),
                                                     "novel_removed": removed}, indent=2))
        writer = MetricsWriter(out, resume_from=start if resume_path is not None else None)
        write_progress(out, {"state": "starting", "iteration": start, "total": run.iters})

    def save(iteration: int, path: Path) -> None:
        if di.is_main:
            save_training_state(path, model, iteration=iteration, optimizer=optimizer, scaler=scaler,
                                text_embeds=text.cpu(), meta=meta,
                                trainer={"seed": settings.seed, "world_size": di.world_size})
        dist.barrier()

    bar = None
    if di.is_main and progress_bar:
        from tqdm import tqdm
        bar = tqdm(total=run.iters, initial=start, desc="train", dynamic_ncols=True)

    window: list[dict[str, float]] = []
    t_start, t_last, timed = time.perf_counter(), time.perf_counter(), []
    last_eval, stopped, done = None, False, start
    for it, batch in zip(range(start, run.iters), loader):
        t_data = time.perf_counter() - t_last
        torch.manual_seed(_step_seed(settings.seed, di.rank, it))
        lr = set_lr(optimizer, run.lr, lr_factor(it, run.steps, r.gamma, r.warmup_iters, r.warmup_factor))
        terms, grad_norm = _train_step(net, criterion, optimizer, scaler, batch, embed, text, di.device, amp,
                                       r.clip_gradients)
        now = time.perf_counter()
        timed.append(now - t_last)
        t_last = now
        window.append({**terms, "grad_norm": grad_norm, "data_time_s": t_data})
        done = it + 1
        avg_iter = float(np.mean(timed[-20:]))
        eta = avg_iter * (run.iters - done)
        if di.is_main:
            if bar is not None:
                bar.set_postfix(loss=f"{terms['loss']:.3f}", lr=f"{lr:.2e}")
                bar.update(1)
            write_progress(out, {"state": "running", "iteration": done, "total": run.iters,
                                 "loss": terms["loss"], "lr": lr, "eta_s": eta,
                                 "elapsed_s": now - t_start})
        if done % max(settings.log_period, 1) == 0 or done == run.iters:
            rec = dist.mean_over_ranks({k: float(np.mean([w[k] for w in window])) for k in window[0]}, di.device)
            window = []
            if writer is not None:
                writer.write({"iteration": done, **rec, "lr": lr, "iter_time_s": avg_iter,
                              "samples_per_s": run.batch / avg_iter})
        if settings.eval_period and settings.val and done % settings.eval_period == 0 and done != run.iters:
            last_eval = _evaluate(settings, run, model, clip, text_emb, detpro, di, writer, out, done)
        want_stop = False
        if di.is_main:
            want_stop = (out / STOP_FILE).exists()
            if progress_callback is not None:
                want_stop |= progress_callback(TrainProgress(done, run.iters, terms["loss"],
                                                             terms, lr, now - t_start, eta, "running",
                                                             last_eval)) is False
        if dist.any_rank(want_stop, di.device) and done < run.iters:
            save(done, out / checkpoint_name(done))
            stopped = True
            break
        if settings.checkpoint_period and done % settings.checkpoint_period == 0 and done < run.iters:
            save(done, out / checkpoint_name(done))
    final = None
    if not stopped:
        final = out / FINAL_CHECKPOINT
        save(run.iters, final)
        if settings.val:
            last_eval = _evaluate(settings, run, model, clip, text_emb, detpro, di, writer, out, run.iters)
    fps = dist.gather_fingerprints(model)
    if bar is not None:
        bar.close()
    if writer is not None:
        writer.write({"iteration": done, "state": "stopped" if stopped else "finished",
                      "rank_fingerprints": fps})
        writer.close()
        write_progress(out, {"state": "stopped" if stopped else "finished", "iteration": done,
                             "total": run.iters, "eta_s": 0.0, "elapsed_s": time.perf_counter() - t_start,
                             "last_eval": last_eval})
        if progress_callback is not None:
            progress_callback(TrainProgress(done, run.iters, float("nan"), {}, 0.0, time.perf_counter() - t_start,
                                            0.0, "stopped" if stopped else "finished", last_eval))
    return TrainResult(out, final, done, stopped, last_eval, fps)


def _train_step(net: torch.nn.Module, criterion: VideoSetCriterion, optimizer: torch.optim.Optimizer,
                scaler: Any, batch: ClipBatch, embed: ClipEmbeddingCache, text: torch.Tensor,
                device: torch.device, amp: str | None, clip_norm: float) -> tuple[dict[str, float], float]:
    """One optimisation step; returns the weighted loss terms (summed over layers) and the
    gradient norm before clipping."""
    frames = batch.frames.to(device, non_blocking=True)  # (B, T, 3, H, W)
    targets = [{k: v.to(device) for k, v in t.items()} for t in batch.targets]
    clip_embeds = embed(batch.frame_paths, device)  # (B, T, D)
    with torch.autocast(device.type, dtype=getattr(torch, amp) if amp else None, enabled=amp is not None):
        outputs = net(frames, clip_embeds, text)
    weighted = criterion.weighted(criterion(outputs, targets))  # float32 outside autocast
    loss = sum(weighted.values())
    if not torch.isfinite(loss):  # as detectron2: stop rather than train on garbage
        bad = {k: float(v) for k, v in weighted.items() if not torch.isfinite(v)}
        raise FloatingPointError(f"loss became non-finite: {bad}")
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    grad_norm = clip_full_model(net.parameters(), clip_norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    terms = {"loss": float(loss.detach())}
    for name in ("loss_ce", "loss_object_ce", "loss_mask", "loss_dice"):
        terms[name] = float(sum(v.detach() for k, v in weighted.items() if k == name or k.startswith(name + "_")))
    return terms, grad_norm


def _evaluate(settings: TrainSettings, run: ResolvedRun, model: torch.nn.Module, clip: Any,
              text: TextEmbeddings, detpro: torch.Tensor | None, di: dist.DistInfo,
              writer: MetricsWriter | None, out: Path, iteration: int) -> dict | None:
    """Rank 0 evaluates on the validation set (training classes scored with the run's own
    class embeddings ``text``), logs and saves `eval/iter_N.json`; the other ranks wait."""
    result = None
    if di.is_main:
        from training.evaluation import evaluate_on_folder

        write_progress(out, {"state": "evaluating", "iteration": iteration, "total": run.iters})
        cfg = run.model_config
        result = evaluate_on_folder(model, clip, load_ytvis_folder(settings.val), min_size=settings.eval_min_size or cfg.min_size_test,
                                    max_size=cfg.max_size_test, clip_length=cfg.clip_length, top_k=cfg.test_topk,
                                    device=di.device, templates=settings.templates,
                                    classifier=StoredClassifier(text.vocabulary, text.embeds),
                                    detpro_context=detpro, max_videos=settings.eval_max_videos)
        (out / "eval").mkdir(exist_ok=True)
        (out / "eval" / f"iter_{iteration:07d}.json").write_text(json.dumps(result, indent=1))
        summary = {k: v for k, v in result.items() if not isinstance(v, (list, dict))}
        if writer is not None:
            writer.write({"iteration": iteration, "eval": summary})
        result = summary
    dist.barrier()
    return result


def _config_record(settings: TrainSettings, run: ResolvedRun, vocab: list[str], freq: torch.Tensor,
                   di: dist.DistInfo, amp: str | None) -> dict[str, Any]:
    return {"settings": settings.to_dict(), "model_config": run.model_config.to_dict(),
            "resolved": {"iters": run.iters, "batch": run.batch, "lr": run.lr, "steps": list(run.steps),
                         "min_sizes": list(run.min_sizes), "max_size": run.max_size,
                         "num_frames": run.num_frames, "num_points": run.num_points, "amp": amp,
                         "backbone_multiplier": run.backbone_multiplier, "from_scratch": run.from_scratch,
                         "world_size": di.world_size, "device": str(di.device)},
            "vocabulary": vocab, "category_frequencies": freq.tolist()}
