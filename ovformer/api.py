"""Public entry points: build or load a model with its weights, vocabulary and provenance."""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import load_into, read_checkpoint
from .config import ModelConfig
from .factory import create_model, resolve_config
from .modeling import OVFormer

UNTRAINED_SEED = 0


@dataclass
class LoadedModel:
    """A model ready for inference and what is known about its weights.

    text_embeds: (K, D) default vocabulary from the checkpoint, or None.
    vocabulary: names of that default vocabulary when known.
    clip_fingerprint: which CLIP the checkpoint was trained with (project checkpoints only).
    """
    model: OVFormer
    config: ModelConfig
    label: str
    untrained: bool
    text_embeds: torch.Tensor | None = None
    vocabulary: list[str] | None = None
    clip_fingerprint: str | None = None
    iteration: int | None = None

    def check_clip(self, encoder) -> None:
        """Warn when ``encoder`` is not the CLIP the weights were trained with."""
        from .clip import check_clip_matches
        check_clip_matches(self.clip_fingerprint, encoder)


def _is_registered(name: str) -> bool:
    from .weights import list_pretrained
    return name in {e.name for e in list_pretrained()}


def _guess_preset(keys: list[str]) -> str:
    return "swinb-lvvis" if any(k.startswith("backbone.patch_embed") for k in keys) else "r50-lvvis"


def load_model(weights: str | Path | None = "r50-lvvis", *, preset: str | None = None,
               config: str | Path | ModelConfig | None = None, untrained: bool = False,
               download: bool = False) -> LoadedModel:
    """Build an OVFormer and load its weights.

    Args:
        weights: a released name (``r50-lvvis``, ``swinb-lvvis``, ``r50-lvis``, ``swinb-lvis``),
            a checkpoint path, or None with ``untrained=True``.
        preset: architecture preset; default: the checkpoint's own record, the released name,
            or a guess from its keys.
        config: an official YAML config or a ModelConfig (overrides ``preset``).
        untrained: random (seeded) weights; every output is labelled untrained.
        download: allow downloading a released checkpoint that is not cached.
    Raises:
        WeightsNotFoundError: the weights are not there (the message says where to put them).
    """
    if untrained:
        cfg = resolve_config(config or preset or (str(weights) if weights and
                                                  _is_registered(str(weights)) else "r50-lvvis"))
        with torch.random.fork_rng():  # same random weights on every machine and call
            torch.manual_seed(UNTRAINED_SEED)
            model = create_model(cfg)
        name = preset or (config if isinstance(config, (str, Path)) else None) or weights
        return LoadedModel(model.eval(), cfg, f"UNTRAINED random weights ({name})", True)
    if weights is None:
        raise ValueError("no weights given: pass a released name, a checkpoint path, or "
                         "untrained=True (--untrained)")
    from .weights import resolve_weights
    path = resolve_weights(weights, download=download)
    conv = read_checkpoint(path)
    meta = conv.meta
    if config is not None:
        cfg = resolve_config(config)
    elif meta.get("config"):
        cfg = ModelConfig.from_dict(meta["config"])
    else:
        cfg = resolve_config(preset or (str(weights) if _is_registered(str(weights))
                                        else _guess_preset(list(conv.state_dict))))
    model = create_model(cfg)
    load_into(model, conv)
    vocab = meta.get("vocabulary")
    if vocab is None and conv.text_embeds is not None and conv.text_embeds.shape[0] == 1196:
        from .vocab import load_vocab_preset
        vocab = [c.name for c in load_vocab_preset("lvvis")]
    if vocab is not None and conv.text_embeds is not None and len(vocab) != len(conv.text_embeds):
        warnings.warn(f"{path}: {len(vocab)} vocabulary names for {len(conv.text_embeds)} "
                      "stored text embeddings; ignoring the stored vocabulary")
        vocab = None
    label = f"{weights}" if _is_registered(str(weights)) else os.fspath(path)
    if conv.iteration is not None:
        label += f" (iteration {conv.iteration})"
    return LoadedModel(model.eval(), cfg, label, False, conv.text_embeds, vocab,
                       meta.get("clip"), conv.iteration)
