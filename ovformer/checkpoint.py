"""Official (detectron2) checkpoints <-> this project's modules, as pure functions."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

ZS_WEIGHT = "sem_seg_head.predictor.class_embed.zs_weight"
# official prefix -> ours; the first match wins
_PREFIXES = [("sem_seg_head.pixel_decoder.", "pixel_decoder."),
             ("sem_seg_head.predictor.", "decoder."),
             ("backbone.", "backbone.")]
_DROPPED = ("criterion.",)  # loss buffers (class weights, frequencies): not part of the model


@dataclass
class ConvertedCheckpoint:
    """A converted state dict plus what the checkpoint carried besides weights.

    text_embeds: (K, D) the default vocabulary's text embeddings (``zs_weight`` without its
        "no object" column), or None.
    dropped: official keys deliberately left out (criterion buffers).
    unknown: official keys with no place in this model (reported by name, never silently used).
    """
    state_dict: dict[str, torch.Tensor]
    text_embeds: torch.Tensor | None
    dropped: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    iteration: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def convert_official_state_dict(official: dict[str, torch.Tensor]) -> ConvertedCheckpoint:
    """Map official keys (``sem_seg_head.predictor.*``, ``backbone.base.*`` ...) to ours."""
    out: dict[str, torch.Tensor] = {}
    dropped, unknown, text = [], [], None
    for key, value in official.items():
        if key == ZS_WEIGHT:
            text = value.t()[:-1].contiguous()  # (D, K+1) -> (K, D), drop "no object"
            continue
        if key.startswith(_DROPPED):
            dropped.append(key)
            continue
        for src, dst in _PREFIXES:
            if key.startswith(src):
                out[dst + key[len(src):]] = value
                break
        else:
            unknown.append(key)
    return ConvertedCheckpoint(out, text, dropped, unknown)


def to_official_state_dict(state_dict: dict[str, torch.Tensor],
                           text_embeds: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Inverse of :func:`convert_official_state_dict`, so the project writes checkpoints the
    official code (and this project) can read. ``text_embeds`` (K, D) becomes ``zs_weight``."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        for src, dst in _PREFIXES:
            if key.startswith(dst):
                out[src + key[len(dst):]] = value
                break
        else:
            raise KeyError(f"no official name for {key}")
    if text_embeds is not None:
        w = torch.nn.functional.normalize(text_embeds.float(), dim=-1).t()
        out[ZS_WEIGHT] = torch.cat([w, w.new_zeros(w.shape[0], 1)], 1)
    return out


def read_checkpoint(path: str | Path) -> ConvertedCheckpoint:
    """Load a detectron2-layout file safely (``weights_only=True``) and convert it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated files: one clear line
        raise ValueError(f"cannot read checkpoint {path}: {exc}") from exc
    state = raw.get("model", raw) if isinstance(raw, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not a checkpoint: expected a dict with a 'model' entry")
    conv = convert_official_state_dict(state)
    conv.iteration = raw.get("iteration")
    conv.meta = raw.get("ovformer", {}) or {}
    return conv


def fit_problems(model_state: dict[str, torch.Tensor], conv: ConvertedCheckpoint) -> list[str]:
    """Every missing, unexpected or wrongly shaped key, by name (empty when it fits)."""
    missing = sorted(set(model_state) - set(conv.state_dict))
    unexpected = sorted(set(conv.state_dict) - set(model_state)) + conv.unknown
    shapes = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(model_state[k].shape)}"
              for k, v in conv.state_dict.items()
              if k in model_state and model_state[k].shape != v.shape]
    return ([f"missing: {k}" for k in missing] + [f"unexpected: {k}" for k in unexpected]
            + [f"shape: {s}" for s in shapes])


def load_into(model: nn.Module, conv: ConvertedCheckpoint) -> None:
    """Strict load; missing, unexpected or wrongly shaped keys raise with their names."""
    problems = fit_problems(model.state_dict(), conv)
    if problems:
        shown = "\n  ".join(problems[:30])
        more = f"\n  ... {len(problems) - 30} more" if len(problems) > 30 else ""
        raise RuntimeError(f"checkpoint does not fit the model ({len(problems)} problems):\n  "
                           + shown + more)
    model.load_state_dict(conv.state_dict, strict=True)
    if conv.dropped:
        logger.info("ignored %d criterion buffers", len(conv.dropped))


def save_checkpoint(path: str | Path, model: nn.Module, *, iteration: int,
                    text_embeds: torch.Tensor | None = None, meta: dict[str, Any] | None = None,
                    extra: dict[str, Any] | None = None) -> None:
    """Write ``{"model": official-layout state dict, "iteration": N, "ovformer": meta, ...}``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"model": to_official_state_dict(model.state_dict(), text_embeds),
               "iteration": int(iteration), "ovformer": meta or {}}
    payload.update(extra or {})
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # atomic: a crash mid-write never leaves a half checkpoint
