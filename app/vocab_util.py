"""Vocabulary text and presets for the page.

Uses ``ovformer.vocab`` when it is installed; otherwise reads the same ``assets/vocab/*.json``
files directly, so the app works while that module is being written.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "vocab"
PRESETS = {"LV-VIS": "lvvis", "YTVIS-2019": "ytvis2019", "YTVIS-2021": "ytvis2021", "OVIS": "ovis", "COCO": "coco"}


def parse_vocab(text: str) -> list[str]:
    """Comma- or newline-separated class names, stripped, de-duplicated, order kept."""
    try:
        from ovformer.vocab import parse_vocab_text
        return list(parse_vocab_text(text or ""))
    except ValueError:  # ovformer.vocab raises on an empty vocabulary; callers report it
        return []
    except ImportError:
        pass
    names = [n.strip() for n in re.split(r"[,\n;]", text or "")]
    return list(dict.fromkeys(n for n in names if n))


def load_preset(display: str) -> list[str]:
    """Class names of a preset by its display name (``LV-VIS``...)."""
    key = PRESETS.get(display, display)
    try:
        from ovformer.vocab import load_vocab_preset
        return [getattr(c, "name", c) for c in load_vocab_preset(key)]
    except ImportError:
        pass
    with open(ASSETS / f"{key}.json", encoding="utf-8") as f:
        return [c["name"] for c in json.load(f)]


def vocab_text(names: list[str]) -> str:
    return ", ".join(names)
