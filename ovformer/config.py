"""Typed model configuration, named presets, and reading of official detectron2 YAML configs."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PRESET_DIR = Path(__file__).resolve().parent / "presets"
META_ARCHS = ("video", "image")
# official META_ARCHITECTURE -> ours. ``OVFormer`` (LVIS images) and ``OVFormerVideo`` (the same
# image model run on YouTube-VIS / OVIS / BURST) share one network; only ``VideoOVFormer`` has
# the video decoder.
_D2_META_ARCHS = {"VideoOVFormer": "video", "OVFormer": "image", "OVFormerVideo": "image"}
# TEST.DETECTIONS_PER_IMAGE when a config leaves it out: the video-eval configs of each family
# (youtubevis_2019 sets 10 for the image model, lvvis 50 for the video model)
_DEFAULT_TOPK = {"video": 50, "image": 10}


@dataclass
class TrainRecipe:
    """Hyper-parameters of the released video training stage (official LV-VIS config)."""
    min_size_train: tuple[int, ...] = (360, 480)
    max_size_train: int = 1333
    sampling_frame_num: int = 2
    sampling_frame_range: int = 20
    random_flip: bool = True
    crop: bool = False
    crop_size: tuple[float, float] = (600.0, 720.0)
    ims_per_batch: int = 8
    base_lr: float = 1e-4
    weight_decay: float = 0.05
    weight_decay_norm: float = 0.0
    weight_decay_embed: float = 0.0
    backbone_multiplier: float = 0.1
    max_iter: int = 2000
    steps: tuple[int, ...] = (1000,)
    gamma: float = 0.1
    warmup_iters: int = 10
    warmup_factor: float = 1.0
    clip_gradients: float = 0.01
    amp: bool = True
    no_object_weight: float = 0.1
    object_weight: float = 2.0
    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    train_num_points: int = 12544
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75
    fed_loss_num_classes: int = 50
    fed_loss_freq_weight_power: float = 0.5


@dataclass
class ModelConfig:
    """Everything needed to build an OVFormer and run it. Sizes default to the released R50.

    ``meta_arch`` says how the checkpoint runs on a video:

    - ``"video"`` (official ``VideoOVFormer``, the LV-VIS fine-tuned models): clip-level queries,
      3D position encoding, clips of ``clip_length`` frames associated clip to clip.
    - ``"image"`` (official ``OVFormer`` / ``OVFormerVideo``, the LVIS-trained models): every frame
      is an independent image (2D position encoding, per-frame queries, each frame's classifier
      attends to its own CLIP embedding), run ``window_size`` frames per forward pass and linked
      frame by frame by a momentum tracker.

    ``test_topk`` is the number of (query, class) pairs kept per video for both.
    """
    meta_arch: str = "video"  # "video" or "image"
    backbone: str = "resnet50"  # "resnet50", "resnet18" (tiny) or "swin"
    swin_embed_dim: int = 128
    swin_depths: tuple[int, ...] = (2, 2, 18, 2)
    swin_num_heads: tuple[int, ...] = (4, 8, 16, 32)
    swin_window_size: int = 12
    swin_pretrain_img_size: int = 384
    swin_drop_path_rate: float = 0.3
    hidden_dim: int = 256
    num_queries: int = 100
    nheads: int = 8
    dim_feedforward: int = 2048
    dec_layers: int = 9  # transformer layers; the official DEC_LAYERS counts one more
    pre_norm: bool = False
    conv_dim: int = 256
    mask_dim: int = 256
    enc_layers: int = 6
    enc_ffn: int = 1024
    enc_heads: int = 8
    enc_points: int = 4
    common_stride: int = 4
    clip_dim: int = 512
    num_classes: int = 1196  # size of the checkpoint's default vocabulary, not a model limit
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    size_divisibility: int = 32
    min_size_test: int = 360
    max_size_test: int = 1333
    clip_length: int = 5  # video models: frames per clip
    window_size: int = 10  # image models: frames per forward pass (official run_window_inference)
    test_topk: int = 50
    train: TrainRecipe = field(default_factory=TrainRecipe)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """Build from a dict; an unknown key is an error that names it."""
        data = dict(data)
        if data.get("meta_arch", "video") not in META_ARCHS:
            raise ValueError(f"meta_arch must be one of {', '.join(META_ARCHS)}, "
                             f"got {data['meta_arch']!r}")
        train = TrainRecipe(**_check_keys(TrainRecipe, data.pop("train", {}) or {}))
        return cls(train=train, **_check_keys(cls, data))


def _check_keys(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {', '.join(unknown)}")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}


def list_presets() -> list[str]:
    """Names of the presets shipped in ``ovformer/presets``."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def get_preset(name: str) -> ModelConfig:
    """The named preset (``r50-lvvis``, ``swinb-lvvis``, ``r50-lvis``, ``swinb-lvis``, ``tiny``)."""
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown preset {name!r}; available: {', '.join(list_presets())}")
    return ModelConfig.from_dict(yaml.safe_load(path.read_text()) or {})


def load_d2_yaml(path: str | Path) -> dict[str, Any]:
    """Read a detectron2 YAML config, resolving ``_BASE_`` inheritance (relative to the file)."""
    path = Path(path)
    data = yaml.safe_load(path.read_text()) or {}
    base = data.pop("_BASE_", None)
    if base is None:
        return data
    merged = load_d2_yaml(path.parent / base if not Path(base).is_absolute() else base)
    return _merge(merged, data)


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def config_from_d2_yaml(path: str | Path) -> ModelConfig:
    """Translate an official OVFormer config (or a full dump of one) into a :class:`ModelConfig`.

    Keys the file does not set keep the released defaults.
    """
    cfg = load_d2_yaml(path)
    get = lambda *keys, default=None: _dig(cfg, keys, default)  # noqa: E731
    out = ModelConfig()
    arch = get("MODEL", "META_ARCHITECTURE", default="VideoOVFormer")
    if arch not in _D2_META_ARCHS:
        raise ValueError(f"{path}: META_ARCHITECTURE {arch!r} is not an OVFormer "
                         f"({', '.join(_D2_META_ARCHS)})")
    out.meta_arch = _D2_META_ARCHS[arch]
    name = get("MODEL", "BACKBONE", "NAME", default="build_timm_backbone")
    if "Swin" in name:
        out.backbone = "swin"
        out.swin_embed_dim = get("MODEL", "SWIN", "EMBED_DIM", default=out.swin_embed_dim)
        out.swin_depths = tuple(get("MODEL", "SWIN", "DEPTHS", default=out.swin_depths))
        out.swin_num_heads = tuple(get("MODEL", "SWIN", "NUM_HEADS", default=out.swin_num_heads))
        out.swin_window_size = get("MODEL", "SWIN", "WINDOW_SIZE", default=out.swin_window_size)
        out.swin_pretrain_img_size = get("MODEL", "SWIN", "PRETRAIN_IMG_SIZE",
                                         default=out.swin_pretrain_img_size)
        out.swin_drop_path_rate = get("MODEL", "SWIN", "DROP_PATH_RATE",
                                      default=out.swin_drop_path_rate)
        out.min_size_test = 480
    else:
        base = get("MODEL", "TIMM", "BASE_NAME", default="resnet50_in21k")
        out.backbone = "resnet50" if base.startswith("resnet50") else base
    mf = lambda k, d: get("MODEL", "MASK_FORMER", k, default=d)  # noqa: E731
    sh = lambda k, d: get("MODEL", "SEM_SEG_HEAD", k, default=d)  # noqa: E731
    out.hidden_dim = mf("HIDDEN_DIM", out.hidden_dim)
    out.num_queries = mf("NUM_OBJECT_QUERIES", out.num_queries)
    out.nheads = mf("NHEADS", out.nheads)
    out.dim_feedforward = mf("DIM_FEEDFORWARD", out.dim_feedforward)
    out.dec_layers = mf("DEC_LAYERS", out.dec_layers + 1) - 1
    out.pre_norm = mf("PRE_NORM", out.pre_norm)
    out.size_divisibility = mf("SIZE_DIVISIBILITY", out.size_divisibility)
    out.conv_dim = sh("CONVS_DIM", out.conv_dim)
    out.mask_dim = sh("MASK_DIM", out.mask_dim)
    out.enc_layers = sh("TRANSFORMER_ENC_LAYERS", out.enc_layers)
    out.enc_heads = sh("DEFORMABLE_TRANSFORMER_ENCODER_N_HEADS", out.enc_heads)
    out.enc_points = sh("DEFORMABLE_TRANSFORMER_ENCODER_N_POINTS", out.enc_points)
    out.common_stride = sh("COMMON_STRIDE", out.common_stride)
    out.num_classes = sh("NUM_CLASSES", out.num_classes)
    out.pixel_mean = tuple(get("MODEL", "PIXEL_MEAN", default=out.pixel_mean))
    out.pixel_std = tuple(get("MODEL", "PIXEL_STD", default=out.pixel_std))
    out.min_size_test = get("INPUT", "MIN_SIZE_TEST", default=out.min_size_test)
    out.max_size_test = get("INPUT", "MAX_SIZE_TEST", default=out.max_size_test)
    out.test_topk = get("TEST", "DETECTIONS_PER_IMAGE", default=_DEFAULT_TOPK[out.meta_arch])
    _recipe_from_d2(out.train, get)
    return out


def _recipe_from_d2(r: TrainRecipe, get) -> None:
    sizes = get("INPUT", "MIN_SIZE_TRAIN", default=r.min_size_train)
    r.min_size_train = tuple(sizes) if isinstance(sizes, (list, tuple)) else (sizes,)
    r.max_size_train = get("INPUT", "MAX_SIZE_TRAIN", default=r.max_size_train)
    r.sampling_frame_num = get("INPUT", "SAMPLING_FRAME_NUM", default=r.sampling_frame_num)
    r.sampling_frame_range = get("INPUT", "SAMPLING_FRAME_RANGE", default=r.sampling_frame_range)
    r.crop = get("INPUT", "CROP", "ENABLED", default=r.crop)
    for key, attr in [("IMS_PER_BATCH", "ims_per_batch"), ("BASE_LR", "base_lr"),
                      ("WEIGHT_DECAY", "weight_decay"), ("WEIGHT_DECAY_NORM", "weight_decay_norm"),
                      ("WEIGHT_DECAY_EMBED", "weight_decay_embed"),
                      ("BACKBONE_MULTIPLIER", "backbone_multiplier"), ("MAX_ITER", "max_iter"),
                      ("GAMMA", "gamma"), ("WARMUP_ITERS", "warmup_iters"),
                      ("WARMUP_FACTOR", "warmup_factor")]:
        setattr(r, attr, get("SOLVER", key, default=getattr(r, attr)))
    r.steps = tuple(get("SOLVER", "STEPS", default=r.steps))
    r.clip_gradients = get("SOLVER", "CLIP_GRADIENTS", "CLIP_VALUE", default=r.clip_gradients)
    r.amp = get("SOLVER", "AMP", "ENABLED", default=r.amp)
    for key, attr in [("NO_OBJECT_WEIGHT", "no_object_weight"), ("OBJECT_WEIGHT", "object_weight"),
                      ("CLASS_WEIGHT", "class_weight"), ("MASK_WEIGHT", "mask_weight"),
                      ("DICE_WEIGHT", "dice_weight"), ("TRAIN_NUM_POINTS", "train_num_points"),
                      ("OVERSAMPLE_RATIO", "oversample_ratio"),
                      ("IMPORTANCE_SAMPLE_RATIO", "importance_sample_ratio")]:
        setattr(r, attr, get("MODEL", "MASK_FORMER", key, default=getattr(r, attr)))


def _dig(cfg: dict[str, Any], keys: tuple[str, ...], default: Any) -> Any:
    for k in keys:
        if not isinstance(cfg, dict) or k not in cfg:
            return default
        cfg = cfg[k]
    return cfg
