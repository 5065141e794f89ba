"""Class text embeddings for a vocabulary, from the best source there is for each class.

OVFormer scores a query against one embedding per class (logits are 50 x cosine, so a cosine of
0.95 between two candidate embeddings moves a logit by several units). The released checkpoints
carry the classifier they were trained with (``zs_weight``: DetPro learned-prompt embeddings of
their training vocabulary), and re-embedding those names with a hand-written prompt throws it
away. :func:`embed_vocabulary` is the one function every path (``ovformer predict``, the app,
training, its evaluation, the closed loop) calls; per class, in this order:

1. ``classifier``: the class matches a class of the checkpoint's training vocabulary
   (:meth:`ovformer.vocab.Vocabulary.lookup`: case, underscores, parentheses and LVIS synonyms
   do not matter); that column of the stored ``zs_weight`` is used exactly as stored.
2. ``detpro``: a new class, embedded with DetPro's learned prompt contexts (the function that
   made the released classifiers) when the context file is at hand and fits the CLIP.
3. ``templates``: a new class, embedded with a prompt ensemble (ViLD's 14 templates, or the
   templates the caller gives); never a single template.

A classifier file (``--text-embeds FILE.npy``, K x D rows in vocabulary order, as the official
``datasets/metadata/*.npy``) replaces all of them (:func:`load_text_embeddings_file`).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .vocab import Vocabulary

__all__ = ["SOURCES", "StoredClassifier", "TextEmbeddings", "embed_vocabulary",
           "find_detpro_context", "load_text_embeddings_file"]

SOURCES: dict[str, str] = {
    "classifier": "from the model's classifier",
    "detpro": "DetPro prompts",
    "templates": "prompt ensemble",
    "file": "from the classifier file",
}
"""Where a class's embedding came from -> how reports say it."""


@dataclass(frozen=True)
class StoredClassifier:
    """The classifier a checkpoint was trained with.

    Attributes:
        vocabulary: its training vocabulary (column k is class k).
        weight: (K, D) the stored ``zs_weight`` columns (without "no object"), as stored.
    """
    vocabulary: Vocabulary
    weight: torch.Tensor

    def __post_init__(self) -> None:
        if self.weight.ndim != 2 or self.weight.shape[0] != len(self.vocabulary):
            raise ValueError(f"classifier of shape {tuple(self.weight.shape)} for a vocabulary "
                             f"of {len(self.vocabulary)} classes")


@dataclass(frozen=True)
class TextEmbeddings:
    """A vocabulary with one text embedding per class and where each came from.

    Attributes:
        vocabulary: the classes; row k is label k.
        embeds: (K, D) float32 on the CPU.
        sources: per class, a key of :data:`SOURCES`.
        note: why a better source was not used (e.g. DetPro prompts not downloaded), or "".
    """
    vocabulary: Vocabulary
    embeds: torch.Tensor
    sources: tuple[str, ...]
    note: str = ""

    def __post_init__(self) -> None:
        if self.embeds.shape[0] != len(self.vocabulary) or len(self.sources) != len(self.vocabulary):
            raise ValueError(f"{self.embeds.shape[0]} embeddings and {len(self.sources)} sources "
                             f"for {len(self.vocabulary)} classes")

    def __len__(self) -> int:
        return len(self.vocabulary)

    def summary(self) -> str:
        """One line for banners and logs, e.g. ``1196 from the model's classifier; 3 new:
        DetPro prompts``."""
        counts = Counter(self.sources)
        parts = []
        for key in SOURCES:
            if counts.get(key):
                new = "" if key in ("classifier", "file") else " new:"
                parts.append(f"{counts[key]}{new} {SOURCES[key]}")
        return "; ".join(parts) + (f" ({self.note})" if self.note else "")

    def by_source(self, source: str) -> list[str]:
        """Names of the classes whose embedding came from ``source``."""
        return [c.name for c, s in zip(self.vocabulary, self.sources) if s == source]


def embed_vocabulary(vocabulary: Vocabulary, clip, *, classifier: StoredClassifier | None = None,
                     detpro_context: torch.Tensor | None = None,
                     templates: Sequence[str] | None = None, note: str = "") -> TextEmbeddings:
    """Text embeddings for ``vocabulary``, each class from its best source (module docstring).

    Args:
        vocabulary: the classes, in label order.
        clip: the :class:`~ovformer.clip.ClipEncoder` the model was trained with (only called
            for classes the classifier does not know).
        classifier: the checkpoint's own classifier, or None (training from scratch).
        detpro_context: (P, n_ctx, width) DetPro prompt contexts for new classes, or None.
        templates: prompt templates (each with ``{}``) for new classes instead of DetPro and
            ViLD's ensemble.
        note: said with the summary (why DetPro was not used, for instance).
    Returns:
        :class:`TextEmbeddings` with (K, D) float32 embeddings on the CPU.
    """
    from .detpro import detpro_text_embeddings, template_ensemble_embeddings

    positions = classifier.vocabulary.lookup(vocabulary) if classifier is not None else \
        [None] * len(vocabulary)
    new = [k for k, p in enumerate(positions) if p is None]
    new_text = [vocabulary[k].prompt_name for k in new]
    rows: dict[int, torch.Tensor] = {}
    sources: list[str] = ["classifier"] * len(vocabulary)
    if new:
        if templates:
            emb, source = clip.encode_text(new_text, tuple(templates)), "templates"
        elif detpro_context is not None:
            emb, source = detpro_text_embeddings(clip, detpro_context, new_text), "detpro"
        else:
            emb, source = template_ensemble_embeddings(clip, new_text), "templates"
        for i, k in enumerate(new):
            rows[k], sources[k] = emb[i].float().cpu(), source
    for k, p in enumerate(positions):
        if p is not None:
            rows[k] = classifier.weight[p].float().cpu()
    dims = {r.shape[-1] for r in rows.values()}
    if len(dims) != 1:
        raise ValueError(f"the checkpoint's classifier is {classifier.weight.shape[1]}-d but "
                         f"CLIP {getattr(clip, 'name', clip)!r} gives other widths: {sorted(dims)}")
    embeds = torch.stack([rows[k] for k in range(len(vocabulary))])
    return TextEmbeddings(vocabulary, embeds, tuple(sources), note if new else "")


def load_text_embeddings_file(path: str | Path, vocabulary: Vocabulary) -> TextEmbeddings:
    """A classifier file: (K, D) rows in ``vocabulary`` order (``.npy`` as the official
    ``datasets/metadata/*.npy``, or a torch ``.pt``/``.pth`` tensor).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a 2-D array, or K differs from the vocabulary's size.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"text embeddings file not found: {path}")
    if path.suffix.lower() == ".npy":
        array = torch.from_numpy(np.load(path, allow_pickle=False))
    else:
        array = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(array, torch.Tensor) or array.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D (classes x dim) array")
    if array.shape[0] != len(vocabulary):
        raise ValueError(f"{path} holds {array.shape[0]} rows for a vocabulary of "
                         f"{len(vocabulary)} classes (give the names with --vocab/--vocab-file/"
                         "--vocab-preset in the file's order)")
    return TextEmbeddings(vocabulary, array.float().contiguous(), ("file",) * len(vocabulary))


def find_detpro_context(clip) -> tuple[torch.Tensor | None, str]:
    """DetPro's prompt contexts when they are downloaded and fit ``clip``'s text tower.

    The contexts were learned against OpenAI's ViT-B/32 text tower; with the seeded random
    CLIPs (tests, demos) they mean nothing and are not used. Nothing is downloaded here.

    Returns:
        ((P, n_ctx, width) contexts or None, a note for reports saying why they are not used).
    """
    from .detpro import load_detpro_context, resolve_detpro_prompts
    from .weights import WeightsNotFoundError

    if getattr(clip, "spec", None) in ("random", "tiny-random"):
        return None, f"DetPro prompts do not apply to the {clip.spec} CLIP"
    try:
        folder = resolve_detpro_prompts(download=False)
    except WeightsNotFoundError:
        return None, "DetPro prompts not downloaded: ovformer weights download detpro-lvis"
    context = load_detpro_context(folder)
    width = clip.model.token_embedding.weight.shape[1]
    if context.shape[-1] != width:
        return None, (f"DetPro prompts are {context.shape[-1]}-wide, this CLIP's text tower "
                      f"{width}")
    return context, ""
