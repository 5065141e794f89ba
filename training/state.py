"""Training checkpoints: the predictor's detectron2 layout plus what resuming needs.

A file is ``{"model": official-layout state dict, "iteration": N, "ovformer": {config,
clip, vocabulary}, "optimizer": ..., "scaler": ..., "trainer": {...}}``, so the predictor
and the official code load it as any released checkpoint, and `--resume` continues
exactly (data sampling and the step's random draws are functions of the iteration, and
the lr schedule too, so optimiser state + iteration is the whole state).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ovformer.checkpoint import convert_official_state_dict, load_into, save_checkpoint

LAST_CHECKPOINT = "last_checkpoint"  # detectron2's pointer file: the latest file's name


def checkpoint_name(iteration: int) -> str:
    """detectron2 naming: ``model_0000999.pth`` holds the state after 1000 iterations."""
    return f"model_{iteration - 1:07d}.pth"


def save_training_state(path: str | Path, model: nn.Module, *, iteration: int,
                        optimizer: torch.optim.Optimizer | None, scaler: Any | None,
                        text_embeds: torch.Tensor | None, meta: dict[str, Any],
                        trainer: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint (atomically) and point `last_checkpoint` at it.

    Args:
        iteration: number of completed iterations.
        text_embeds: (K, D) training-vocabulary embeddings, stored as the official
            ``zs_weight`` so the official code can run the file too.
        meta: {"config", "clip", "vocabulary"} as the predictor expects.
        trainer: extra resumable state (seed, settings) for checking a resume.
    """
    path = Path(path)
    extra: dict[str, Any] = {"trainer": trainer or {}}
    if optimizer is not None:
        extra["optimizer"] = optimizer.state_dict()
    if scaler is not None:
        extra["scaler"] = scaler.state_dict()
    save_checkpoint(path, model, iteration=iteration, text_embeds=text_embeds, meta=meta, extra=extra)
    (path.parent / LAST_CHECKPOINT).write_text(path.name)
    return path


def last_checkpoint(run_dir: str | Path) -> Path | None:
    """The file `last_checkpoint` points to, or None."""
    pointer = Path(run_dir) / LAST_CHECKPOINT
    if not pointer.exists():
        return None
    path = Path(run_dir) / pointer.read_text().strip()
    return path if path.exists() else None


@dataclass
class LoadedState:
    iteration: int
    optimizer: dict | None
    scaler: dict | None
    trainer: dict
    meta: dict


def load_training_state(path: str | Path, model: nn.Module) -> LoadedState:
    """Load a checkpoint's weights into ``model`` (strict) and return the rest."""
    raw = torch.load(Path(path), map_location="cpu", weights_only=True)
    conv = convert_official_state_dict(raw["model"])
    load_into(model, conv)
    return LoadedState(int(raw.get("iteration", 0)), raw.get("optimizer"), raw.get("scaler"),
                       raw.get("trainer", {}) or {}, raw.get("ovformer", {}) or {})


def load_init_weights(path: str | Path, model: nn.Module) -> int | None:
    """Initialise from a released or earlier checkpoint (weights only); returns its iteration."""
    raw = torch.load(Path(path), map_location="cpu", weights_only=True)
    state = raw.get("model", raw) if isinstance(raw, dict) else raw
    load_into(model, convert_official_state_dict(state))
    return raw.get("iteration") if isinstance(raw, dict) else None
