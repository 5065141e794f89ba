"""Vocabularies: one type for a class list, bundled benchmark lists, lenient name matching.

Open vocabulary means the class names are given at run time. A :class:`Vocabulary` is an
ordered tuple of :class:`Category` (the data set's id and name, the LV-VIS partition and the
LVIS synonyms when known, and the text given to CLIP). Every path that turns class names into
text embeddings (``ovformer predict``, the app, training, its evaluation, the closed loop)
builds a Vocabulary and hands it to :func:`ovformer.text_embeddings.embed_vocabulary`.

The presets are the category lists of the data sets, stored as JSON in
``assets/vocab/<name>.json`` (a list of ``{"id", "name", "partition"?, "synonyms"?}``), with
names and ids exactly as in the data sets' annotation files so results can be evaluated
(where each file comes from: ``assets/vocab/SOURCES.md``):

- ``lvvis``: LV-VIS, 1196 categories; ``partition`` 0/1 = base (641), 2/3 = novel (555).
  Source: ``LVVIS_CATEGORIES`` of the official OVFormer code (fanghaook/OVFormer, Apache-2.0,
  ``ovformer/data_video/datasets/lvvis_categories.py``), entry for entry.
- ``lvis``: LVIS v1, 1203 categories with ``frequency`` and ``synonyms``, from detectron2's
  ``lvis_v1_categories.py`` (Apache-2.0), the training vocabulary of the LVIS checkpoints.
- ``ytvis2019``, ``ytvis2021`` (40 each): ``YTVIS_CATEGORIES_2019/2021`` as in the OVFormer
  and Mask2Former code.
- ``ovis`` (25): ``OVIS_CATEGORIES`` of the OVFormer code (the data set's own spelling,
  including ``Vehical``).
- ``coco`` (80): COCO thing classes with their original (non-contiguous) ids.

Names keep the data sets' underscores (``giant_panda``); :attr:`Category.prompt_name` gives the
text put in a CLIP prompt (``giant panda``). Names match leniently (:func:`name_key`: case,
underscores, spaces and parentheses do not count) and through LVIS synonyms, so
``"cell phone"`` and ``"cellular_telephone"`` are the same class.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

__all__ = [
    "VOCAB_PRESETS",
    "Category",
    "Vocabulary",
    "assets_dir",
    "categories_json",
    "load_vocab_preset",
    "name_key",
    "parse_vocab_text",
    "read_vocab_file",
]

VOCAB_PRESETS: tuple[str, ...] = ("lvvis", "lvis", "ytvis2019", "ytvis2021", "ovis", "coco")
"""Names accepted by :func:`load_vocab_preset`."""

NOVEL_PARTITIONS = frozenset({2, 3})
"""LV-VIS partitions of the novel classes (0/1 are base)."""


def name_key(name: str) -> str:
    """The key names are matched by: case, underscores and parentheses do not count, runs of
    spaces count as one.

    Example:
        >>> name_key("Bat_(animal)") == name_key("bat  animal") == "bat animal"
        True
    """
    return " ".join(re.sub(r"[_()]", " ", name.casefold()).split())


def _loose_key(key: str) -> str:
    """A :func:`name_key` without spaces, tried last (``cell phone`` -> LVIS ``cellphone``);
    LV-VIS has both ``paint_brush`` and ``paintbrush``, so it never decides alone."""
    return key.replace(" ", "")


@dataclass(frozen=True)
class Category:
    """One class of a vocabulary.

    Attributes:
        id: the data set's category id (as in its annotation files).
        name: the data set's category name, spelled as there (``aerosol_can``).
        partition: LV-VIS split marker (0/1 base, 2/3 novel); None elsewhere.
        synonyms: other names of the class (LVIS synonyms when known).
        text: the words given to CLIP; default :attr:`prompt_name`.
        supercategory: as in a YouTube-VIS/COCO file, when there.
        extra: other fields of an annotation file's category, kept verbatim (not compared).
    """

    id: int
    name: str
    partition: int | None = None
    synonyms: tuple[str, ...] = ()
    text: str | None = None
    supercategory: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def is_novel(self) -> bool | None:
        """True for LV-VIS novel classes, False for base ones, None when unknown."""
        return None if self.partition is None else self.partition in NOVEL_PARTITIONS

    @property
    def prompt_name(self) -> str:
        """The words for a CLIP prompt: ``text`` if set, else the name as DetPro wrote the LVIS
        names when it made the released classifiers (``prompt/run.py``: parentheses dropped,
        underscores as spaces): ``bat_(animal)`` -> ``bat animal``."""
        return self.text or " ".join(re.sub(r"[()]", "", self.name).replace("_", " ").split())

    @property
    def keys(self) -> tuple[str, ...]:
        """Match keys of the name, then of each synonym (see :func:`name_key`)."""
        return tuple(dict.fromkeys(name_key(n) for n in (self.name, *self.synonyms)))


@dataclass(frozen=True)
class Vocabulary:
    """An ordered list of classes: position k is label k of the model's outputs.

    Build one with :meth:`from_names` (typed names, ids 1..K), :meth:`from_categories` (an
    annotation file's ``categories``), :meth:`from_preset` or :meth:`from_file`.

    Raises:
        ValueError: empty, duplicate ids, or two classes with the same name key.
    """

    categories: tuple[Category, ...]

    def __post_init__(self) -> None:
        if not self.categories:
            raise ValueError("The vocabulary is empty: give at least one class name, "
                             "separated by commas or new lines.")
        ids: set[int] = set()
        keys: dict[str, str] = {}
        for c in self.categories:
            if c.id in ids:
                raise ValueError(f"duplicate category id {c.id} in the vocabulary")
            ids.add(c.id)
            key = name_key(c.name)
            if key in keys:
                raise ValueError(f"{keys[key]!r} and {c.name!r} name the same class")
            keys[key] = c.name

    def __len__(self) -> int:
        return len(self.categories)

    def __iter__(self) -> Iterator[Category]:
        return iter(self.categories)

    def __getitem__(self, index: int) -> Category:
        return self.categories[index]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.categories]

    @property
    def ids(self) -> list[int]:
        return [c.id for c in self.categories]

    @property
    def prompt_names(self) -> list[str]:
        """What CLIP reads for each class (:attr:`Category.prompt_name`)."""
        return [c.prompt_name for c in self.categories]

    @classmethod
    def from_names(cls, names: Iterable[str], ids: Sequence[int] | None = None) -> "Vocabulary":
        """Typed names (duplicates by :func:`name_key` dropped, first spelling kept); ids
        1..K unless given. Synonyms and partitions come from the bundled LVIS / LV-VIS lists
        where a name is one of theirs (for matching; the name itself is kept)."""
        names = list(names)
        if ids is not None and len(ids) != len(names):
            raise ValueError(f"{len(ids)} category ids for {len(names)} names")
        seen: set[str] = set()
        cats = []
        for k, raw in enumerate(names):
            name = " ".join(str(raw).split())
            if not name or name_key(name) in seen:
                continue
            seen.add(name_key(name))
            cats.append(Category(int(ids[k]) if ids is not None else len(cats) + 1, name))
        return cls(tuple(cats)).with_known_synonyms()

    @classmethod
    def from_categories(cls, categories: Iterable[Mapping[str, Any] | Category]) -> "Vocabulary":
        """An annotation file's ``categories`` (dicts with id, name, partition?, synonyms?),
        sorted by id, as the data set's label order."""
        cats = [c if isinstance(c, Category) else _category_from_dict(c) for c in categories]
        return cls(tuple(sorted(cats, key=lambda c: c.id))).with_known_synonyms()

    @classmethod
    def from_preset(cls, name: str) -> "Vocabulary":
        """A bundled benchmark list (see :func:`load_vocab_preset`)."""
        return cls(tuple(load_vocab_preset(name)))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> "Vocabulary":
        """Names from a file (see :func:`read_vocab_file`); an annotation file keeps its ids."""
        path = Path(path)
        if path.suffix.lower() == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and isinstance(data.get("categories"), list):
                return cls.from_categories(data["categories"])
            if isinstance(data, list) and data and all(isinstance(x, dict) and "id" in x
                                                       and "name" in x for x in data):
                return cls.from_categories(data)
        return cls.from_names(read_vocab_file(path))

    def with_known_synonyms(self) -> "Vocabulary":
        """Classes without synonyms whose name is an LVIS class (or an LV-VIS class named as
        one) get the LVIS synonyms, so matching sees them. Nothing else is copied."""
        known = _known_categories()
        cats = []
        for c in self.categories:
            ref = known.get(name_key(c.name))
            if ref is not None and not c.synonyms:
                c = replace(c, synonyms=ref.synonyms)
            cats.append(c)
        return Vocabulary(tuple(cats))

    def lookup(self, other: "Vocabulary") -> list[int | None]:
        """For each class of ``other``, its position in this vocabulary (None when new).

        A class matches by its name key first, then through synonyms (this vocabulary's or
        the other's), then by the same keys without spaces; a key claimed by two classes of
        this vocabulary goes to the one whose name it is, else to the first."""
        index: dict[str, int] = {}
        loose: dict[str, int] = {}
        for pos, c in enumerate(self.categories):  # names first, so they win over synonyms
            index.setdefault(name_key(c.name), pos)
        for pos, c in enumerate(self.categories):
            for key in c.keys:
                index.setdefault(key, pos)
                loose.setdefault(_loose_key(key), pos)
        out: list[int | None] = []
        for c in other.categories:
            pos = next((index[k] for k in c.keys if k in index), None)
            if pos is None:
                pos = next((loose[_loose_key(k)] for k in c.keys if _loose_key(k) in loose), None)
            out.append(pos)
        return out

    def to_json(self) -> list[dict[str, Any]]:
        """The ``categories`` layout of an annotation file (see :func:`categories_json`)."""
        return categories_json(self.categories)


def categories_json(categories: Iterable[Category]) -> list[dict[str, Any]]:
    """The ``categories`` layout of an annotation file: id, name, and supercategory,
    partition and synonyms where known, plus the fields kept in ``extra``."""
    return [{**dict(c.extra), "id": c.id, "name": c.name,
             **({} if c.supercategory is None else {"supercategory": c.supercategory}),
             **({} if c.partition is None else {"partition": c.partition}),
             **({"synonyms": list(c.synonyms)} if c.synonyms else {})}
            for c in categories]


def _category_from_dict(c: Mapping[str, Any]) -> Category:
    if not isinstance(c.get("name"), str) or "id" not in c:
        raise ValueError(f"a category needs an 'id' and a 'name': {dict(c)!r}")
    known = ("id", "name", "partition", "synonyms", "supercategory")
    return Category(int(c["id"]), c["name"], c.get("partition"),
                    tuple(c.get("synonyms") or ()), None, c.get("supercategory"),
                    {k: v for k, v in c.items() if k not in known})


@functools.lru_cache(maxsize=1)
def _known_categories() -> dict[str, Category]:
    """name key -> the LVIS v1 category of that name (with its synonyms)."""
    return {name_key(c.name): c for c in _load_preset("lvis")}


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
    return tuple(Category(int(r["id"]), str(r["name"]), r.get("partition"),
                          tuple(r.get("synonyms") or ())) for r in rows)


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
    return list(Vocabulary(_load_preset(key)).with_known_synonyms())


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
