"""Class-name embeddings the way the released OVFormer classifiers were made (DetPro).

OVFormer's checkpoints classify with ``zs_weight``, read from ``fg_bg_5_10_*_ens.npy``: rows
built by DetPro (Du et al., CVPR 2022, github.com/dyabel/detpro) from five *learned* prompt
contexts, not from hand-written templates. What the official code does (dyabel/detpro):

- ``prompt/trainer.py::checkpoint`` saves each context alone with ``torch.save(ctx.data)``: a
  (n_ctx=8, 512) tensor, one file per positive-IoU bucket of ``detpro.sh``.
- ``prompt/coop_mini.py::PromptLearner.forward_for_classes`` tokenises
  ``"X X X X X X X X " + name + "."`` with CLIP's tokenizer, embeds the tokens and replaces
  positions 1..8 (just after start-of-text) by the context vectors.
- ``coop_mini.py::TextEncoder.forward``: add the positional embedding, run CLIP's text
  transformer (its causal mask), ``ln_final``, take the row of the end-of-text token (the
  argmax of the token ids) and multiply by ``text_projection``; fp32 ViT-B/32.
- ``prompt/run.py::load_ens_embedding(norm=True)``: L2-normalise each context's result, sum
  the five, normalise again.
- OVFormer (``zero_shot_classifier.py``) transposes that (K, 512) array, appends a zero
  background column and normalises the columns: ``zs_weight`` is (512, K + 1).

Names are passed as CLIP should read them: DetPro's own LVIS list replaced ``_`` by spaces and
dropped parentheses before building prompts (``prompt/run.py``, ``CLASS_NAMES_FULL``).

When the prompt files are not available, :func:`template_ensemble_embeddings` is the
text-only fallback; :func:`classifier_agreement` measures how close either comes to a stored
classifier.

Example:
    >>> clip = load_clip("tiny-random")  # doctest: +SKIP
    >>> ctx = load_detpro_context(resolve_detpro_prompts(download=True))  # doctest: +SKIP
    >>> detpro_text_embeddings(clip, ctx, ["aerosol can", "zebra"]).shape  # doctest: +SKIP
    torch.Size([2, 512])
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from .clip import LVVIS_TEMPLATES, ClipEncoder, _tokenizer
from .weights import DETPRO_LVIS, get_prompts_entry, resolve_prompts

__all__ = ["VILD_TEMPLATES", "classifier_agreement", "detpro_text_embeddings", "load_detpro_context",
           "resolve_detpro_prompts", "template_ensemble_embeddings"]

VILD_TEMPLATES: tuple[str, ...] = LVVIS_TEMPLATES
"""The 14 detection prompts OVSeg (Liang et al., CVPR 2023, appendix A.2) credits to ViLD.

The same tuple as ``ovformer.clip.LVVIS_TEMPLATES`` (that name is kept for its users).
"""

_BATCH = 256  # prompts per text-tower call: bounds memory for LVIS-sized vocabularies
_CTX_WORD = "X"  # DetPro's placeholder word; its token embeddings are replaced by the context


def resolve_detpro_prompts(*, download: bool) -> Path:
    """Folder of the cached DetPro LVIS prompt files (registry entry ``"detpro-lvis"``).

    Args:
        download: allow fetching missing files from Google Drive (``OVFORMER_OFFLINE=1``
            forbids it regardless).

    Raises:
        ovformer.weights.WeightsNotFoundError: not cached and not allowed to download; the
            message names the missing files and ``ovformer weights download detpro-lvis``.
    """
    return resolve_prompts(DETPRO_LVIS, download=download)


def _context_files(path: Path) -> list[Path]:
    """The prompt files of a folder: the released names in release order, else ``*.pth`` sorted."""
    released = [path / f for f in get_prompts_entry(DETPRO_LVIS).filenames]
    if all(p.is_file() for p in released):
        return released
    found = sorted(p for p in path.glob("*.pth") if p.is_file())
    if not found:
        raise FileNotFoundError(f"No DetPro prompt files (*.pth) in {path}")
    return found


def _read_context_file(path: Path) -> list[torch.Tensor]:
    try:
        # map_location: DetPro saved ctx.data straight from the GPU it trained on.
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors of all kinds: name the file
        raise ValueError(f"Cannot read DetPro prompt file {path}: {exc}") from exc
    if isinstance(obj, dict):  # a saved state dict of the prompt learner: take its ctx
        keys = [k for k, v in obj.items() if str(k).split(".")[-1] == "ctx" and torch.is_tensor(v)]
        if len(keys) != 1:
            raise ValueError(f"DetPro prompt file {path} holds a dict without exactly one 'ctx' "
                             f"tensor (keys: {', '.join(map(str, obj)) or 'none'})")
        obj = obj[keys[0]]
    if not torch.is_tensor(obj) or not obj.is_floating_point() or obj.ndim not in (2, 3):
        what = f"a {tuple(obj.shape)} {obj.dtype} tensor" if torch.is_tensor(obj) else type(obj).__name__
        raise ValueError(f"DetPro prompt file {path} holds {what}; expected a float "
                         "(n_ctx, width) context tensor, e.g. (8, 512), or a stack (P, n_ctx, width)")
    if obj.numel() == 0 or not torch.isfinite(obj).all():
        raise ValueError(f"DetPro prompt file {path} holds an empty or non-finite {tuple(obj.shape)} tensor")
    return list(obj.float()) if obj.ndim == 3 else [obj.float()]


def load_detpro_context(path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> torch.Tensor:
    """Load DetPro prompt contexts into one (P, n_ctx, width) float32 tensor.

    Args:
        path: one of
            - a folder (e.g. :func:`resolve_detpro_prompts`): the five released files
              ``fg_bg_5_*_r1_prompt.pth`` in release order, otherwise every ``*.pth``
              sorted by name;
            - one file: a (n_ctx, width) tensor as DetPro saves it (P = 1), a stacked
              (P, n_ctx, width) tensor, or a dict holding one ``ctx`` tensor;
            - a list of such files, concatenated in order.

    Returns:
        (P, n_ctx, width) float32 on the CPU (released LVIS set: (5, 8, 512)).

    Raises:
        FileNotFoundError: a path does not exist / a folder holds no ``.pth`` file.
        ValueError: a file is unreadable or holds something else; contexts of different
            shapes. Messages name the file.
    """
    paths = [Path(path)] if isinstance(path, (str, os.PathLike)) else [Path(p) for p in path]
    if not paths:
        raise ValueError("load_detpro_context: no prompt file given")
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += _context_files(p)
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"DetPro prompt file not found: {p}")
    contexts: list[tuple[Path, torch.Tensor]] = [(f, t) for f in files for t in _read_context_file(f)]
    first_file, first = contexts[0]
    for f, t in contexts[1:]:
        if t.shape != first.shape:
            raise ValueError(f"DetPro prompt contexts differ in shape: {tuple(first.shape)} in {first_file}, "
                             f"{tuple(t.shape)} in {f}")
    return torch.stack([t for _, t in contexts]).contiguous()


def _check_context(clip: ClipEncoder, context: torch.Tensor) -> torch.Tensor:
    width = clip.model.token_embedding.weight.shape[1]
    if context.ndim == 2:
        context = context[None]
    if context.ndim != 3 or context.shape[0] == 0 or context.shape[1] == 0 or context.shape[2] != width:
        raise ValueError(f"context must be (P, n_ctx, {width}) for this CLIP's text width {width}, "
                         f"got {tuple(context.shape)}")
    return context.to(clip.device, torch.float32)


def _tokenize(names: Sequence[str], n_ctx: int, context_length: int) -> torch.Tensor:
    """(B, context_length) token ids of DetPro's prompts, refusing what CLIP would truncate."""
    tok = _tokenizer()
    prefix = " ".join([_CTX_WORD] * n_ctx)
    prompts = [f"{prefix} {name}." for name in names]
    for name, prompt in zip(names, prompts):
        # OpenAI's clip.tokenize (what DetPro called) raises on overflow; open_clip would
        # silently truncate and move the end token, so check here.
        if len(tok.encode(prompt)) + 2 > context_length:
            raise ValueError(f"class name {name!r} is too long for CLIP's {context_length}-token context "
                             f"after DetPro's {n_ctx} context tokens")
    tokens = tok(prompts, context_length=context_length)
    placeholder = tok.encode(_CTX_WORD)
    # The layout DetPro relies on: start token, then exactly n_ctx placeholder tokens.
    if len(placeholder) != 1 or not bool((tokens[:, 1 : 1 + n_ctx] == placeholder[0]).all()):
        raise RuntimeError("tokenizer did not give one token per context placeholder; DetPro layout broken")
    return tokens


@torch.inference_mode()
def detpro_text_embeddings(clip: ClipEncoder, context: torch.Tensor, names: Sequence[str]) -> torch.Tensor:
    """Embed class names through DetPro's learned prompt contexts (DetPro ensembling).

    For each name and each context p: tokens of ``"X X X X X X X X {name}."``, token
    embeddings with rows 1..n_ctx replaced by ``context[p]``, + positional embedding, text
    transformer with CLIP's causal mask, ``ln_final``, end-of-text row, ``text_projection``;
    the P results are L2-normalised, summed in order p = 0..P-1, and normalised again.

    Args:
        clip: the CLIP the contexts were learned for (ViT-B/32 ``"openai"`` for the release).
        context: (P, n_ctx, width) contexts (:func:`load_detpro_context`); (n_ctx, width)
            is taken as P = 1. width must equal the text transformer's width.
        names: K class names as CLIP should read them (``"aerosol can"``, not ``"aerosol_can"``).

    Returns:
        (K, D) float32 unit rows on ``clip.device``; (0, D) for no names. Deterministic
        (fixed batching and summation order), computed without gradients.

    Raises:
        ValueError: context shape does not fit this CLIP; a name too long for 77 tokens.
    """
    model = clip.model
    cast = model.transformer.get_cast_dtype()  # fp32 for every ClipEncoder; as encode_text does
    ctx = _check_context(clip, context).to(cast)
    n_ctx = ctx.shape[1]
    context_length = model.positional_embedding.shape[0]
    names = list(names)
    out = []
    for start in range(0, len(names), _BATCH):
        tokens = _tokenize(names[start : start + _BATCH], n_ctx, context_length).to(clip.device)
        embedded = model.token_embedding(tokens).to(cast)  # (B, L, width)
        eot = tokens.argmax(dim=-1)  # the end-of-text id is the largest in CLIP's vocabulary
        total = torch.zeros(len(tokens), clip.dim, device=clip.device)
        for p in range(ctx.shape[0]):
            x = embedded.clone()
            x[:, 1 : 1 + n_ctx] = ctx[p]
            x = x + model.positional_embedding.to(cast)
            x = model.transformer(x, attn_mask=model.attn_mask)  # (B, L, width) in and out
            x = model.ln_final(x)[torch.arange(len(tokens), device=clip.device), eot]
            proj = model.text_projection
            x = proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj
            total = total + F.normalize(x.float(), dim=-1)
        out.append(F.normalize(total, dim=-1))
    return torch.cat(out) if out else torch.zeros(0, clip.dim, device=clip.device)


def template_ensemble_embeddings(clip: ClipEncoder, names: Sequence[str]) -> torch.Tensor:
    """Fallback without prompt files: CLIP prompt ensembling over the 14 :data:`VILD_TEMPLATES`.

    Each name is written into all 14 templates; each template's embedding is L2-normalised,
    the 14 are averaged and the mean normalised again (CLIP's ImageNet prompt-ensembling
    recipe). Only approximates the released DetPro classifiers.

    Args:
        clip: a CLIP encoder.
        names: K class names as CLIP should read them.

    Returns:
        (K, D) float32 unit rows on ``clip.device``.
    """
    return clip.encode_text(names, VILD_TEMPLATES)


def classifier_agreement(computed: torch.Tensor, stored: torch.Tensor, names: Sequence[str] | None = None,
                         *, worst: int = 5) -> dict[str, Any]:
    """How well computed class embeddings reproduce a stored classifier, row by row.

    Args:
        computed: (K, D) embeddings, e.g. from :func:`detpro_text_embeddings`.
        stored: (K, D) rows of the same classes, e.g. a checkpoint's ``zs_weight[:, :K].T``
            (drop OVFormer's zero background column first). Rows need not be unit norm.
        names: optional K class names to label the worst rows.
        worst: how many lowest-agreement classes to report.

    Returns:
        ``{"num_classes": K, "mean_cosine": float, "min_cosine": float,
        "per_class": (K,) float32 CPU tensor of cosines, "worst": [(index, name or None,
        cosine), ...] lowest first}``. For K = 0 the means are NaN and ``worst`` is empty.

    Raises:
        ValueError: shapes differ or are not 2-D, ``names`` has the wrong length, or a
            stored row is all zeros (a background column left in).
    """
    if computed.ndim != 2 or computed.shape != stored.shape:
        raise ValueError(f"computed and stored must both be (K, D); got {tuple(computed.shape)} and "
                         f"{tuple(stored.shape)} (a checkpoint's zs_weight is (D, K+1): use zs_weight[:, :K].T)")
    if names is not None and len(names) != computed.shape[0]:
        raise ValueError(f"{len(names)} names for {computed.shape[0]} classes")
    a = computed.detach().float().cpu()
    b = stored.detach().float().cpu()
    zero = (b.norm(dim=-1) == 0).nonzero().flatten().tolist()
    if zero:
        raise ValueError(f"stored rows {zero[:5]} are all zeros (background column?); drop them first")
    cos = (F.normalize(a, dim=-1) * F.normalize(b, dim=-1)).sum(dim=-1)
    order = torch.argsort(cos, stable=True)[: max(0, worst)].tolist()
    return {
        "num_classes": int(cos.numel()),
        "mean_cosine": float(cos.mean()) if cos.numel() else float("nan"),
        "min_cosine": float(cos.min()) if cos.numel() else float("nan"),
        "per_class": cos,
        "worst": [(i, names[i] if names is not None else None, float(cos[i])) for i in order],
    }
