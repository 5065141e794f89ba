"""`TrainSettings`: everything a training run needs, as one serialisable dataclass.

The recipe's hyper-parameters come from the model preset (`ModelConfig.train`, a
`TrainRecipe`: the r50-*/swinb-* presets carry the released LV-VIS recipe) or from an
official detectron2 YAML; fields of `TrainSettings` left as None keep the recipe's value.
The CLI, the app and `start_run` all build one of these; `config.json` in the run folder
holds it (plus the resolved model config and recipe) so a run can be resumed or audited.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ovformer.config import ModelConfig, TrainRecipe
from ovformer.factory import resolve_config

#: Recipe values replaced when a run starts from random weights (no `init`, no resume of
#: an initialised run): the released recipe fine-tunes a pretrained model, its backbone at a
#: tenth of the learning rate. From scratch the backbone must learn as fast as the rest,
#: and a 5x higher rate lets the `tiny` preset learn a small task in a few hundred
#: iterations (tests/test_training_learning.py: AP 0.14 with the released values).
FROM_SCRATCH_DEFAULTS: dict[str, float] = {"backbone_multiplier": 1.0, "lr": 5e-4}

#: released objectness weight of "no object" (hard-coded in the official criterion; the
#: config's NO_OBJECT_WEIGHT = 0.1 is read but unused there)
RELEASED_NO_OBJECT_WEIGHT = 0.4


@dataclass
class TrainSettings:
    """One training run.

    Attributes:
        data: training dataset folders (YouTube-VIS layout), one or more.
        out: run folder (created).
        preset: model preset name ("tiny", "r50-lvvis", ...); ignored when `config` is set.
        config: official detectron2 YAML (model and recipe), instead of a preset.
        val: validation dataset folder for periodic evaluation, or None.
        init: checkpoint to start from (released or earlier run); None = from scratch.
        clip: CLIP spec: "openai", a path, "random" or "tiny-random".
        iters: total iterations (None: the recipe's max_iter).
        batch: global batch size in clips, split over data-parallel ranks (None: recipe).
        resume: continue from the run folder's last checkpoint.
        seed: seeds data sampling and every random draw of the step.
        lr: base learning rate (None: the recipe's, or `FROM_SCRATCH_DEFAULTS` without `init`).
        backbone_multiplier: backbone lr factor (None: the recipe's 0.1, or 1.0 from
            scratch, see `FROM_SCRATCH_DEFAULTS`).
        steps: lr decay iterations (None: the recipe's steps, scaled by iters / max_iter).
        min_sizes, max_size: training shorter-side choices and longer-side cap (None: recipe).
        num_frames: frames per training clip (None: recipe, 2).
        crop: (min, max) fraction of the resized frame to crop to, or None for no crop
            (the released LV-VIS recipe does not crop).
        num_points: points per mask in the loss and matcher (None: recipe, 12544).
        amp: "auto" (recipe: bf16 on CPU, bf16/fp16 on GPU), "off", "bf16" or "fp16".
        device: "auto", "cpu", "cuda" or "cuda:N".
        checkpoint_period, eval_period, log_period: in iterations (0 = only at the end).
        eval_min_size: shorter side at evaluation (None: the model config's min_size_test).
        eval_max_videos: evaluate on at most this many validation videos (None: all).
        num_workers: data-loading worker processes.
        templates: CLIP prompt templates (None: CLIP's default).
        keep_novel: train on every annotation. By default the annotations of novel
            categories are left out, as the official LV-VIS stage trains on
            train_instances_nonovel.json (see `training.data.remove_novel`).
        novel_categories: category ids or names to leave out as well as the LV-VIS
            partitions 2 and 3 (ignored with `keep_novel`).
    """

    data: list[str]
    out: str
    preset: str | None = "r50-lvvis"
    config: str | None = None
    val: str | None = None
    init: str | None = None
    clip: str = "openai"
    iters: int | None = None
    batch: int | None = None
    resume: bool = False
    seed: int = 0
    lr: float | None = None
    backbone_multiplier: float | None = None
    steps: tuple[int, ...] | None = None
    min_sizes: tuple[int, ...] | None = None
    max_size: int | None = None
    num_frames: int | None = None
    crop: tuple[float, float] | None = None
    num_points: int | None = None
    amp: str = "auto"
    device: str = "auto"
    checkpoint_period: int = 1000
    eval_period: int = 0
    log_period: int = 20
    eval_min_size: int | None = None
    eval_max_videos: int | None = None
    num_workers: int = 0
    templates: list[str] | None = None
    keep_novel: bool = False
    novel_categories: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainSettings":
        """Inverse of `to_dict`; unknown keys are an error that names them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown TrainSettings keys: {', '.join(unknown)}")
        d = dict(data)
        for key in ("steps", "min_sizes", "crop"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return cls(**d)


@dataclass
class ResolvedRun:
    """Settings combined with the model config's recipe: the numbers the loop uses."""

    model_config: ModelConfig
    recipe: TrainRecipe
    iters: int
    batch: int
    lr: float
    steps: tuple[int, ...]
    min_sizes: tuple[int, ...]
    max_size: int
    num_frames: int
    num_points: int
    backbone_multiplier: float
    from_scratch: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def resolve(settings: TrainSettings) -> ResolvedRun:
    """Fill every None of ``settings`` from the preset's or YAML's recipe (with
    `FROM_SCRATCH_DEFAULTS` in place of the recipe's lr and backbone multiplier when
    ``settings.init`` is None)."""
    spec = settings.config or settings.preset
    if spec is None:
        raise ValueError("give a model preset or a --config YAML")
    cfg = resolve_config(spec)
    if cfg.meta_arch == "image":
        # The official video stage fine-tunes the LVIS image checkpoints with the video decoder
        # (configs/lvvis/video_ovformer_*.yaml: VideoOVFormer, weights from the LVIS model);
        # both share every key, so the image weights load into the video model as they are.
        cfg = dataclasses.replace(cfg, meta_arch="video")
    r = cfg.train
    iters = settings.iters if settings.iters is not None else r.max_iter
    if settings.steps is not None:
        steps = tuple(settings.steps)
    else:  # keep the schedule's shape when the run is shorter or longer than released
        steps = tuple(int(round(s * iters / r.max_iter)) for s in r.steps) if r.max_iter else ()
    scratch = settings.init is None
    lr = FROM_SCRATCH_DEFAULTS["lr"] if scratch else r.base_lr
    multiplier = FROM_SCRATCH_DEFAULTS["backbone_multiplier"] if scratch else r.backbone_multiplier
    return ResolvedRun(
        model_config=cfg, recipe=r, iters=iters,
        batch=settings.batch if settings.batch is not None else r.ims_per_batch,
        lr=settings.lr if settings.lr is not None else lr, steps=steps,
        min_sizes=tuple(settings.min_sizes) if settings.min_sizes else tuple(r.min_size_train),
        max_size=settings.max_size if settings.max_size is not None else r.max_size_train,
        num_frames=settings.num_frames if settings.num_frames is not None else r.sampling_frame_num,
        num_points=settings.num_points if settings.num_points is not None else r.train_num_points,
        backbone_multiplier=(settings.backbone_multiplier if settings.backbone_multiplier is not None
                             else multiplier),
        from_scratch=scratch,
    )


def amp_dtype(amp: str, recipe_amp: bool, device_type: str) -> "str | None":
    """Autocast dtype name ("bfloat16"/"float16") or None for full precision.

    "auto" follows the recipe's AMP flag (``SOLVER.AMP.ENABLED``) as the official code runs it:
    fp16 autocast with loss scaling on CUDA; on a CPU, bf16 where it has bf16 units and full
    precision elsewhere (an AVX2-only CPU emulates bf16 several times slower than float32, see
    :mod:`ovformer.inference.runtime`). ``--amp bf16`` asks for bf16 anywhere.
    """
    if amp == "off" or (amp == "auto" and not recipe_amp):
        return None
    if amp == "bf16":
        return "bfloat16"
    if amp == "fp16":
        if device_type == "cpu":
            raise ValueError("fp16 autocast is GPU-only; use --amp bf16 or off on CPU")
        return "float16"
    if amp != "auto":
        raise ValueError(f"amp must be auto, off, bf16 or fp16, not {amp!r}")
    if device_type == "cuda":
        return "float16"
    from ovformer.inference.runtime import native_dtype
    return "bfloat16" if native_dtype(device_type, "bf16") else None
