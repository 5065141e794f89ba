"""The page's vocabulary rules: the presets it offers and the limits on what may be typed
(checked on the text before parsing, so nothing oversized reaches the text encoder). Parsing and
the lists themselves are :mod:`ovformer.vocab`'s."""
from __future__ import annotations

from ovformer.vocab import parse_vocab_text

from .edits import MAX_LABEL


class VocabError(ValueError):
    """A vocabulary over the limits; the message is shown as is."""


MAX_VOCAB = 2000                      # classes (LVIS has 1203)
MAX_VOCAB_TEXT = MAX_VOCAB * (MAX_LABEL + 2)  # characters typed, checked before parsing
SAMPLE_VOCAB = "person, bicycle, car"
#: Vocabulary presets by the name the page shows.
PRESETS = {"LV-VIS": "lvvis", "LVIS": "lvis", "YTVIS-2019": "ytvis2019", "YTVIS-2021": "ytvis2021",
           "OVIS": "ovis", "COCO": "coco"}


def parse_vocab(text: str | None) -> list[str]:
    """Comma- or newline-separated class names (:func:`ovformer.vocab.parse_vocab_text`); [] if none.
    Raises :class:`VocabError` over the limits (checked on the text's length before parsing, then
    on the count and each name: nothing this large reaches the text encoder)."""
    text = text or ""
    if len(text) > MAX_VOCAB_TEXT:
        raise VocabError(f"the vocabulary text has {len(text):,} characters; at most {MAX_VOCAB_TEXT:,} "
                         f"({MAX_VOCAB} classes of up to {MAX_LABEL} characters) are accepted")
    try:
        names = parse_vocab_text(text)
    except ValueError:  # an empty vocabulary; callers say so
        return []
    if len(names) > MAX_VOCAB:
        raise VocabError(f"the vocabulary has {len(names):,} classes; at most {MAX_VOCAB} are accepted")
    if long := [n for n in names if len(n) > MAX_LABEL]:
        raise VocabError(f"a class name may have at most {MAX_LABEL} characters ({long[0][:40]}… has {len(long[0])})")
    return names


def vocab_text(names: list[str]) -> str:
    return ", ".join(names)
