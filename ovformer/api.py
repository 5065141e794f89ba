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
from .text_embeddings import StoredClassifier
from .vocab import Vocabulary

UNTRAINED_SEED = 0

#: Training vocabularies of official-layout checkpoints that carry no names of their own, by
#: classifier width: the released ``*-lvvis`` (LV-VIS, 1196 in id order) and ``*-lvis`` (LVIS
#: v1, 1203 in id order) models; a file downloaded by hand behaves like the registry's.
TRAINING_VOCABULARIES: dict[int, str] = {1196: "lvvis", 1203: "lvis"}


@dataclass
class LoadedModel:
    """A model ready for inference and what is known about its weights.

    text_embeds: (K, D) the checkpoint's stored classifier (``zs_weight``), or None.
    vocabulary: names of its training vocabulary when known.
    classifier: the stored classifier with its training vocabulary, when both are known.
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
    classifier: StoredClassifier | None = None

    def check_clip(self, encoder) -> None:
        """Warn when ``encoder`` is not the CLIP the weights were trained with."""
        from .clip import check_clip_matches
        check_clip_matches(self.clip_fingerprint, encoder)


def _is_registered(name: str) -> bool:
    from .weights import list_pretrained
    return name in {e.name for e in list_pretrained()}


def _guess_preset(keys: list[str], num_classes: int | None) -> str:
    """The released preset an official file with no config of its own belongs to: Swin-B or R50
    from the keys; the LVIS image models (1203 classifier columns) or else the LV-VIS video
    models (the two share every key, so the classifier's width is the only tell)."""
    backbone = "swinb" if any(k.startswith("backbone.patch_embed") for k in keys) else "r50"
    return f"{backbone}-{'lvis' if num_classes == 1203 else 'lvvis'}"


def load_model(weights: str | Path | None = "r50-lvvis", *, preset: str | None = None,
               config: str | Path | ModelConfig | None = None, untrained: bool = False,
               download: bool = False,
               classifier_vocabulary: Vocabulary | None = None) -> LoadedModel:
    """Build an OVFormer and load its weights.

    Args:
        weights: a released name (``r50-lvvis``, ``swinb-lvvis``, ``r50-lvis``, ``swinb-lvis``),
            a checkpoint path, or None with ``untrained=True``.
        preset: architecture preset; default: the checkpoint's own record, the released name,
            or a guess from its keys.
        config: an official YAML config or a ModelConfig (overrides ``preset``).
        untrained: random (seeded) weights; every output is labelled untrained.
        download: allow downloading a released checkpoint that is not cached.
        classifier_vocabulary: the names of the stored classifier's columns, for an official
            checkpoint whose training vocabulary is neither recorded in it nor one of
            :data:`TRAINING_VOCABULARIES`.
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
                                        else _guess_preset(list(conv.state_dict), None if
                                                           conv.text_embeds is None else
                                                           conv.text_embeds.shape[0])))
    model = create_model(cfg)
    load_into(model, conv)
    classifier = _stored_classifier(path, conv.text_embeds, meta.get("vocabulary"),
                                    classifier_vocabulary)
    label = f"{weights}" if _is_registered(str(weights)) else os.fspath(path)
    if conv.iteration is not None:
        label += f" (iteration {conv.iteration})"
    return LoadedModel(model.eval(), cfg, label, False, conv.text_embeds,
                       classifier.vocabulary.names if classifier else None, meta.get("clip"),
                       conv.iteration, classifier)


def checkpoint_classifier(path: str | Path) -> StoredClassifier | None:
    """The classifier a checkpoint file was trained with and its training vocabulary, when both
    are known (see :func:`load_model`); None otherwise. Used by training to start a fine-tune
    from the released classifier."""
    from .checkpoint import read_checkpoint
    conv = read_checkpoint(path)
    return _stored_classifier(Path(path), conv.text_embeds, conv.meta.get("vocabulary"), None)


def _stored_classifier(path: Path, weight: torch.Tensor | None, names: list[str] | None,
                       given: Vocabulary | None) -> StoredClassifier | None:
    """The checkpoint's classifier with its training vocabulary: given by the caller, recorded
    in the file (checkpoints this project writes), or known from the classifier's width."""
    if weight is None:
        return None
    vocab = given
    if vocab is None and names:
        vocab = Vocabulary.from_names(names)
    if vocab is None and weight.shape[0] in TRAINING_VOCABULARIES:
        vocab = Vocabulary.from_preset(TRAINING_VOCABULARIES[weight.shape[0]])
    if vocab is not None and len(vocab) != weight.shape[0]:
        warnings.warn(f"{path}: {len(vocab)} vocabulary names for {weight.shape[0]} stored "
                      "classifier columns; the stored classifier is not used")
        return None
    return StoredClassifier(vocab, weight) if vocab is not None else None
