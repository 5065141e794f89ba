"""Vocabularies: bundled class lists of the benchmarks and parsing of user-typed ones.

Open vocabulary means the class names are given at run time. The presets are the
category lists of the data sets OVFormer is evaluated on, stored as JSON in
``assets/vocab/<name>.json`` (a list of ``{"id", "name", "partition"?}``), with names and
ids exactly as in the data sets' annotation files so results can be evaluated:

- ``lvvis``: LV-VIS, 1196 categories; ``partition`` 0/1 = base (641), 2/3 = novel (555).
  Source: ``LVVIS_CATEGORIES`` in haochenheheda/LVVIS (``lvvis_categories.py``), the list
  the official OVFormer code imports.
- ``ytvis2019``, ``ytvis2021`` (40 each): ``YTVIS_CATEGORIES_2019/2021`` of Mask2Former.
- ``ovis`` (25): ``OVIS_CATEGORIES`` as in OV2Seg/LV-VIS (the data set's own spelling,
  including ``Vehical``).
- ``coco`` (80): COCO thing classes with their original (non-contiguous) ids.

Names keep the data sets' underscores (``giant_panda``); :attr:`Category.prompt_name`
gives the text to put in a CLIP prompt.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "VOCAB_PRESETS",
    "Category",
    "assets_dir",
    "load_vocab_preset",
    "parse_vocab_text",
    "read_vocab_file",
]

VOCAB_PRESETS: tuple[str, ...] = ("lvvis", "ytvis2019", "ytvis2021", "ovis", "coco")
"""Names accepted by :func:`load_vocab_preset`."""

_NOVEL_PARTITIONS = frozenset({2, 3})


@dataclass(frozen=True)
class Category:
    """One class of a vocabulary.

    Attributes:
        id: the data set's category id (as in its annotation files).
        name: the data set's category name.
        partition: LV-VIS split marker (0/1 base, 2/3 novel); None elsewhere.
    """

    id: int
    name: str
    partition: int | None = None

    @property
    def is_novel(self) -> bool | None:
        """True for LV-VIS novel classes, False for base ones, None when unknown."""
        return None if self.partition is None else self.partition in _NOVEL_PARTITIONS

    @property
    def prompt_name(self) -> str:
        """The name as words for a CLIP prompt: ``giant_panda`` -> ``giant panda``."""
        return " ".join(self.name.replace("_", " ").split())


def assets_dir() -> Path:
    """The directory holding ``vocab/*.json``.

    ``$OVFORMER_ASSETS`` wins; otherwise ``assets/`` next to the ``ovformer`` package (a
    checkout or an editable install), then ``ovformer/assets`` (package data).
    """
    here = Path(__file__).resolve().parent
    candidates = [Path(p) for p in [os.environ.get("OVFORMER_ASSETS")] if p]
    candidates += [here.parent / "assets", here / "assets"]
    for cand in candidates:
        if (cand / "vocab").is_dir():
            return cand
    raise FileNotFoundError(
        "OVFormer assets not found (looked in: " + ", ".join(str(c) for c in candidates) + "). "
        "Set OVFORMER_ASSETS to the repository's assets/ directory."
    )


@functools.lru_cache(maxsize=None)
def _load_preset(name: str) -> tuple[Category, ...]:
    rows = json.loads((assets_dir() / "vocab" / f"{name}.json").read_text(encoding="utf-8"))
    return tuple(Category(int(r["id"]), str(r["name"]), r.get("partition")) for r in rows)


def load_vocab_preset(name: str) -> list[Category]:
    """The bundled category list of a benchmark.

    Args:
        name: one of :data:`VOCAB_PRESETS` (case-insensitive; ``-``/``_`` ignored, so
            ``"YTVIS-2019"`` works).

    Returns:
        Categories in the data set's order (sorted by id).

    Raises:
        ValueError: unknown preset name.
    """
    key = re.sub(r"[-_\s]", "", name.lower())
    if key not in VOCAB_PRESETS:
        raise ValueError(f"unknown vocabulary preset {name!r}; choose one of {', '.join(VOCAB_PRESETS)}")
    return list(_load_preset(key))


def parse_vocab_text(text: str) -> list[str]:
    """Class names from free text, as typed in the app or a ``--vocab`` argument.

    Names are separated by commas or new lines; surrounding and repeated whitespace is
    dropped; duplicates are removed case-insensitively, keeping the first spelling.

    Example:
        >>> parse_vocab_text("cat, dog\\n Dog ,giant  panda")
        ['cat', 'dog', 'giant panda']

    Raises:
        ValueError: no name at all.
    """
    return _clean_unique(re.split(r"[,\n\r]", text))


def _clean_unique(parts: list[str]) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    for part in parts:
        name = " ".join(part.split())
        if name and name.casefold() not in seen:
            seen.add(name.casefold())
            names.append(name)
    if not names:
        raise ValueError("The vocabulary is empty: give at least one class name, separated by commas or new lines.")
    return names


def read_vocab_file(path: str | os.PathLike[str]) -> list[str]:
    """Class names from a file.

    Accepted: a text file (commas or new lines; lines starting with ``#`` are comments),
    or JSON: a list of names, a list of ``{"name": ...}`` objects (our preset format), or
    a YouTube-VIS/COCO-style annotation file with a ``"categories"`` list (in id order).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file holds no names or an unsupported JSON layout.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        data: Any = json.loads(text)
        if isinstance(data, dict) and isinstance(data.get("categories"), list):
            data = sorted(data["categories"], key=lambda c: c.get("id", 0))
        if isinstance(data, list) and all(isinstance(x, str) for x in data):
            return _clean_unique(data)  # JSON names are taken whole, commas included
        if isinstance(data, list) and all(isinstance(x, dict) and "name" in x for x in data):
            return _clean_unique([str(x["name"]) for x in data])
        raise ValueError(
            f"{path}: JSON vocabulary must be a list of names, a list of {{'name': ...}} objects, "
            "or an annotation file with a 'categories' list"
        )
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    try:
        return parse_vocab_text("\n".join(lines))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
