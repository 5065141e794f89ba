"""Vocabulary text and presets for the page (names typed in a box, presets by display name).

The parsing and the lists are :mod:`ovformer.vocab`'s; this module only maps the page's
display names and turns its errors into an empty list the callers report.
"""
from __future__ import annotations

from ovformer.vocab import load_vocab_preset, parse_vocab_text

PRESETS = {"LV-VIS": "lvvis", "LVIS": "lvis", "YTVIS-2019": "ytvis2019", "YTVIS-2021": "ytvis2021",
           "OVIS": "ovis", "COCO": "coco"}


def parse_vocab(text: str) -> list[str]:
    """Comma- or newline-separated class names, stripped, de-duplicated, order kept; [] if none."""
    try:
        return parse_vocab_text(text or "")
    except ValueError:  # an empty vocabulary; callers say so
        return []


def load_preset(display: str) -> list[str]:
    """Class names of a preset by its display name (``LV-VIS``...), spelled as the data set."""
    return [c.name for c in load_vocab_preset(PRESETS.get(display, display))]


def vocab_text(names: list[str]) -> str:
    return ", ".join(names)
