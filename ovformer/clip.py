"""CLIP ViT-B/32 for OVFormer: class-name text embeddings and per-frame image embeddings.

OVFormer uses a frozen CLIP twice: the text tower embeds the vocabulary (one row per class)
and the image tower embeds every whole frame for the classifier's cross-attention.
Specs accepted by :func:`load_clip`:

- ``"openai"``: OpenAI's ViT-B/32 weights through open_clip (downloaded once and cached by
  open_clip / the Hugging Face cache). This is the CLIP the released checkpoints used.
- a path to a local checkpoint: OpenAI's TorchScript ``ViT-B-32.pt`` or an open_clip state
  dict (``.pt``/``.bin``/``.safetensors``) with the ViT-B/32 QuickGELU layout.
- ``"random"``: the ViT-B/32 shape with seeded random weights (no download, same bits on
  every machine); ``"tiny-random"``: a small seeded model with the same 512-d output and the
  real tokenizer, for tests and CPU demos.

Official-code note on image features (``tools/save_clip_features.py`` in fanghaook/OVFormer):
features are ``model.encode_image(preprocess(Image.open(f)).unsqueeze(0))`` from the OpenAI
``clip`` package, saved as is; neither that script nor the model
(``video_ovformer_model.py``, ``ZeroShotClassifier.forward``) normalises them before the
cross-attention. :meth:`ClipEncoder.encode_frames` therefore returns the raw, unnormalised
embeddings. (The official features were computed in fp16 on GPU; we use fp32, which differs
by about 1e-3 relative.)

Example:
    >>> clip = load_clip("tiny-random")
    >>> clip.encode_text(["cat", "dog"]).shape
    torch.Size([2, 512])
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["DEFAULT_TEMPLATES", "LVVIS_TEMPLATES", "ClipEncoder", "ClipWeightsNotFoundError",
           "check_clip_matches", "clip_fingerprint", "load_clip"]

logger = logging.getLogger(__name__)

DEFAULT_TEMPLATES: tuple[str, ...] = ("a photo of a {}.",)
"""The single prompt of the OVFormer paper."""

LVVIS_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.", "This is a photo of a {}", "There is a {} in the scene",
    "There is the {} in the scene", "a photo of a {} in the scene", "a photo of a small {}.",
    "a photo of a medium {}.", "a photo of a large {}.", "This is a photo of a small {}.",
    "This is a photo of a medium {}.", "This is a photo of a large {}.",
    "There is a small {} in the scene.", "There is a medium {} in the scene.",
    "There is a large {} in the scene.",
)
"""ViLD's 14 detection prompts, the usual hand-written ensemble for open-vocabulary detection.

The released OVFormer models read their classifier from ``fg_bg_5_10_*_ens.npy``: DetPro
*learned* (soft) prompt ensembles, which ``ovformer.detpro`` rebuilds from DetPro's files; this
ensemble (there ``VILD_TEMPLATES``) is the fallback without them. As listed by OVSeg (App. A.2).
"""

# OpenAI CLIP normalisation, as in open_clip's pretrained config for ViT-B-32/openai.
CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
CLIP_IMAGE_SIZE = 224

# OpenAI's ViT-B/32 uses QuickGELU; open_clip's plain "ViT-B-32" config uses GELU and would
# silently give different numbers with the OpenAI weights, so the -quickgelu config is used.
_ARCH = "ViT-B-32-quickgelu"
_TINY_CFG: dict[str, Any] = {
    "embed_dim": 512,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "patch_size": 32, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
_SEED = 20240923  # fixed so "random"/"tiny-random" weights are the same everywhere
_TEXT_BATCH = 256
_FRAME_BATCH = 32


class ClipWeightsNotFoundError(FileNotFoundError):
    """The requested CLIP weights are neither cached nor downloadable right now."""


@functools.lru_cache(maxsize=1)
def _tokenizer() -> Callable[..., torch.Tensor]:
    # Loading the BPE vocabulary takes a moment; every spec shares the OpenAI tokenizer.
    import open_clip

    return open_clip.get_tokenizer("ViT-B-32")


class ClipEncoder:
    """A frozen CLIP model with cached text embeddings and batched frame embeddings.

    Attributes:
        spec: the spec string it was loaded from (also available as ``name``).
        dim: embedding width (512 for ViT-B/32).
        model: the open_clip ``CLIP`` module (eval mode, no gradients).
        device: where the model runs and where returned tensors live.
    """

    def __init__(self, model: torch.nn.Module, spec: str, device: torch.device | str = "cpu") -> None:
        self.model = model.eval().requires_grad_(False).to(device)
        self.spec = spec
        self.device = torch.device(device)
        self.dim = int(model.text_projection.shape[1])
        self.image_size = CLIP_IMAGE_SIZE
        self._text_cache: dict[tuple[str, tuple[str, ...], str], torch.Tensor] = {}
        self._mean = torch.tensor(CLIP_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(CLIP_STD, device=self.device).view(1, 3, 1, 1)

    @property
    def name(self) -> str:
        """Alias of :attr:`spec` (the name used in ARCHITECTURE.md)."""
        return self.spec

    def __repr__(self) -> str:
        return f"ClipEncoder(spec={self.spec!r}, dim={self.dim}, device={self.device})"

    @torch.inference_mode()
    def encode_text(self, names: Sequence[str], templates: Sequence[str] | None = None) -> torch.Tensor:
        """Embed class names with a prompt ensemble.

        Each name is put in every template, each prompt is embedded and L2-normalised, the
        template embeddings of a name are averaged and the mean is normalised again (the
        CLIP zero-shot recipe). Names are used literally: convert ``giant_panda`` to
        ``giant panda`` beforehand if wanted (``ovformer.vocab.Category.prompt_name``).

        Args:
            names: K class names.
            templates: format strings with one ``{}``; default :data:`DEFAULT_TEMPLATES`.

        Returns:
            (K, D) float32, unit L2 norm per row, on :attr:`device`. Results are cached per
            (spec, templates, name), so a repeated vocabulary costs nothing.
        """
        templates = tuple(templates) if templates is not None else DEFAULT_TEMPLATES
        if not templates:
            raise ValueError("templates must contain at least one format string")
        for t in templates:
            if "{}" not in t:
                raise ValueError(f"template {t!r} has no '{{}}' placeholder for the class name")
        names = list(names)
        missing = list(dict.fromkeys(n for n in names if (self.spec, templates, n) not in self._text_cache))
        if missing:
            for name, emb in zip(missing, self._embed_names(missing, templates)):
                self._text_cache[(self.spec, templates, name)] = emb
        if not names:
            return torch.zeros(0, self.dim, device=self.device)
        return torch.stack([self._text_cache[(self.spec, templates, n)] for n in names])

    def _embed_names(self, names: list[str], templates: tuple[str, ...]) -> torch.Tensor:
        prompts = [t.format(n) for n in names for t in templates]  # name-major: (K*M)
        tokens = _tokenizer()(prompts)
        chunks = [self.model.encode_text(tokens[i:i + _TEXT_BATCH].to(self.device)).float()
                  for i in range(0, len(prompts), _TEXT_BATCH)]
        emb = F.normalize(torch.cat(chunks), dim=-1).view(len(names), len(templates), -1)
        return F.normalize(emb.mean(dim=1), dim=-1)

    def preprocess(self, frames: np.ndarray | torch.Tensor | Sequence[np.ndarray]) -> torch.Tensor:
        """CLIP's own preprocessing, batched on tensors.

        Same steps as open_clip's/OpenAI's PIL pipeline: resize the shorter side to 224
        (bicubic, antialiased, two passes rounded to 8 bits as PIL does), centre-crop 224x224,
        scale to 0..1 and normalise with CLIP's mean/std.

        Args:
            frames: (T, H, W, 3) uint8 RGB array or tensor, or a list of (H, W, 3) arrays
                (frames of different sizes are processed one by one).

        Returns:
            (T, 3, 224, 224) float32 on :attr:`device`.
        """
        if isinstance(frames, (list, tuple)):
            if len({tuple(np.shape(f)) for f in frames}) > 1:
                return torch.cat([self.preprocess(np.asarray(f)[None]) for f in frames])
            frames = np.stack([np.asarray(f) for f in frames]) if frames else np.zeros((0, 1, 1, 3), np.uint8)
        x = torch.as_tensor(frames)
        if self.device.type == "cuda" and x.device.type == "cpu":
            x = x.pin_memory().to(self.device, non_blocking=True)  # page-locked: no blocking
        x = x.to(self.device)
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"frames must be (T, H, W, 3) RGB, got shape {tuple(x.shape)}")
        x = x.permute(0, 3, 1, 2).float()  # (T, 3, H, W), 0..255
        h, w = x.shape[-2:]
        size = self.image_size
        # torchvision.transforms.Resize(int) rule: shorter side -> size, longer truncated.
        new_h, new_w = (size, int(size * w / h)) if h <= w else (int(size * h / w), size)
        # PIL resamples horizontally, rounds to 8 bits, then vertically; doing the same
        # (torch's antialiased bicubic is PIL's filter, a=-0.5) stays within 1 grey level.
        if new_w != w:
            x = F.interpolate(x, size=(h, new_w), mode="bicubic", align_corners=False, antialias=True)
            x = x.round().clamp_(0, 255)
        if new_h != h:
            x = F.interpolate(x, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True)
            x = x.round().clamp_(0, 255)
        top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
        x = x[..., top : top + size, left : left + size]
        return (x / 255.0 - self._mean) / self._std

    @torch.inference_mode()
    def encode_frames(self, frames: np.ndarray | torch.Tensor | Sequence[np.ndarray]) -> torch.Tensor:
        """Embed whole frames with the image tower, as the official features were made.

        Args:
            frames: (T, H, W, 3) uint8 RGB (numpy or tensor) or a list of (H, W, 3) arrays.

        Returns:
            (T, D) float32 ``encode_image`` outputs, *not* normalised (the official code
            feeds them raw to the classifier's cross-attention), on :attr:`device`.
        """
        n = len(frames)
        if n == 0:
            return torch.zeros(0, self.dim, device=self.device)
        out = []
        for i in range(0, n, _FRAME_BATCH):  # bounds memory on long, high-resolution clips
            batch = self.preprocess(frames[i : i + _FRAME_BATCH])
            out.append(self.model.encode_image(batch).float())
        return torch.cat(out)


def _quietly(build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    # Module constructors draw their initial weights from the global RNG; fork_rng restores
    # it afterwards so loading a CLIP never perturbs the caller's random stream, and the fixed
    # seed makes what the constructor draws (e.g. Linear biases, which _seeded_random keeps)
    # independent of the caller's RNG state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        return build()


def _init_std(name: str, p: torch.Tensor) -> float | None:
    """CLIP-like scale of an untrained parameter; None keeps a constant (ones/zeros) init."""
    if name.endswith("bias") or name == "logit_scale":
        return None  # zeros / log(1/0.07): already deterministic
    if p.ndim == 1:
        return p.shape[0] ** -0.5 if name.endswith("class_embedding") else None  # LayerNorm: ones
    if name == "token_embedding.weight":
        return 0.02
    if name == "positional_embedding":
        return 0.01
    if name in ("visual.positional_embedding", "visual.proj", "text_projection"):
        return p.shape[-1 if name == "visual.positional_embedding" else 0] ** -0.5
    return (p.numel() // p.shape[0]) ** -0.5  # fan-in scaling for linear/conv weights


def _seeded_random(cfg: dict[str, Any], seed: int = _SEED) -> torch.nn.Module:
    """An untrained CLIP whose weights are the same bits on every machine and every call.

    torch's CPU ``normal_`` uses SIMD transcendental code that may differ in the last bit
    between CPUs, so each parameter is refilled with ``uniform_`` (integer-derived, exact)
    from its own local generator, scaled to the variance of CLIP's init.
    """
    model = _quietly(lambda: _build_clip(cfg))
    with torch.no_grad():
        for name, p in model.named_parameters():
            std = _init_std(name, p)
            if std is None:
                continue
            digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
            gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
            bound = std * 3.0**0.5  # uniform(-b, b) has std b / sqrt(3)
            p.uniform_(-bound, bound, generator=gen)
    return model


def _build_clip(cfg: dict[str, Any]) -> torch.nn.Module:
    from open_clip.model import CLIP

    return CLIP(**cfg)  # fp32, random init (overwritten by the callers)


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("constants.pkl") for n in zf.namelist())


def _load_local(path: Path, cfg: dict[str, Any]) -> torch.nn.Module:
    from open_clip.factory import load_checkpoint

    model = _quietly(lambda: _build_clip(cfg))
    if _is_torchscript(path):
        # OpenAI's own ViT-B-32.pt is a TorchScript archive, which torch.load refuses with
        # weights_only=True; read its parameters through torch.jit instead.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit deprecation notice
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
        for key in ("input_resolution", "context_length", "vocab_size"):
            state.pop(key, None)
        model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    else:
        load_checkpoint(model, str(path), strict=True, weights_only=True)
    return model.float()


def _load_openai(cache_dir: str | None) -> torch.nn.Module:
    import open_clip

    # open_clip asks the hub for the file, which with HF_HUB_OFFLINE=1 (the app, `make run`)
    # answers from the cache only; ovformer.clip_weights.download_clip_weights fills that cache
    # on request without lifting the switch for anyone else.
    try:
        model = open_clip.create_model(_ARCH, pretrained="openai", cache_dir=cache_dir, require_pretrained=True)
    except Exception as exc:  # open_clip wraps every download failure in RuntimeError
        from .clip_weights import CLIP_OPENAI, get_clip_entry, missing_message

        entry = get_clip_entry(CLIP_OPENAI)
        raise ClipWeightsNotFoundError(
            missing_message(entry, cache_dir, "are not cached and could not be downloaded (HF_HUB_OFFLINE=1 forbids "
                            "open_clip to)") + "\n"
            "  or download OpenAI's own file https://openaipublic.azureedge.net/clip/models/"
            "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt\n"
            "  and pass it with --clip /path/to/ViT-B-32.pt, or use --clip random for an "
            f"untrained CLIP (results are then meaningless).\n  cause: {exc}"
        ) from exc
    return model.float()


def load_clip(spec: str = "openai", device: torch.device | str = "cpu", *, cache_dir: str | None = None) -> ClipEncoder:
    """Load a CLIP encoder.

    Args:
        spec: ``"openai"``, a checkpoint path, ``"random"`` or ``"tiny-random"``.
        device: where the model runs.
        cache_dir: download cache for ``"openai"`` (open_clip's default when None).

    Returns:
        A :class:`ClipEncoder`.

    Raises:
        ClipWeightsNotFoundError: ``"openai"`` is neither cached nor downloadable, or the
            path does not exist.
    """
    import open_clip

    if spec == "openai":
        model = _load_openai(cache_dir)
    elif spec == "random":
        model = _seeded_random(open_clip.get_model_config(_ARCH))
    elif spec == "tiny-random":
        model = _seeded_random(_TINY_CFG)
    else:
        path = Path(os.path.expanduser(spec))
        if not path.is_file():
            raise ClipWeightsNotFoundError(
                f"CLIP spec {spec!r} is not 'openai', 'random' or 'tiny-random', and no file "
                f"exists at {path.resolve()}. Pass an existing ViT-B/32 checkpoint path."
            )
        model = _load_local(path, open_clip.get_model_config(_ARCH))
    logger.info("Loaded CLIP %r on %s", spec, device)
    return ClipEncoder(model, spec, device)


def clip_fingerprint(encoder: ClipEncoder) -> str:
    """A short id of which CLIP weights an encoder holds: ``"<label>@<12 hex>"``.

    The label is the spec (a path is shortened to ``file:<name>``); the hash covers a few
    tensors of both towers, so the same weights give the same hash whatever the spec said.
    """
    sd = encoder.model.state_dict()
    h = hashlib.sha256()
    for key in ("visual.conv1.weight", "visual.proj", "text_projection", "positional_embedding", "ln_final.weight"):
        if key in sd:
            h.update(key.encode())
            h.update(sd[key].detach().float().cpu().contiguous().numpy().tobytes())
    tok = sd["token_embedding.weight"]
    h.update(tok[: min(1024, tok.shape[0])].detach().float().cpu().contiguous().numpy().tobytes())
    label = encoder.spec if encoder.spec in ("openai", "random", "tiny-random") else f"file:{Path(encoder.spec).name}"
    return f"{label}@{h.hexdigest()[:12]}"


def check_clip_matches(recorded: str | None, encoder: ClipEncoder) -> None:
    """Warn when a checkpoint was trained with other CLIP weights than ``encoder`` holds.

    Args:
        recorded: the fingerprint stored with a checkpoint, or None when it has none
            (e.g. the official releases): nothing to compare, no warning.
        encoder: the CLIP about to be used.
    """
    if not recorded:
        return
    current = clip_fingerprint(encoder)
    if recorded.rsplit("@", 1)[-1] != current.rsplit("@", 1)[-1]:
        warnings.warn(
            f"This checkpoint was trained with CLIP {recorded}, but CLIP {current} is loaded; "
            "its class scores will be unreliable. Load the same CLIP (--clip) it was trained with.",
            UserWarning,
            stacklevel=2,
        )
