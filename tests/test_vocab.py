"""Bundled vocabulary presets and parsing of user vocabularies."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from ovformer.vocab import VOCAB_PRESETS, Category, assets_dir, load_vocab_preset, parse_vocab_text, read_vocab_file


@pytest.mark.parametrize("name,count", [("lvvis", 1196), ("ytvis2019", 40), ("ytvis2021", 40), ("ovis", 25), ("coco", 80)])
def test_preset_sizes_and_ids(name: str, count: int) -> None:
    cats = load_vocab_preset(name)
    assert len(cats) == count
    ids = [c.id for c in cats]
    assert ids == sorted(ids) and len(set(ids)) == count
    assert len({c.name for c in cats}) == count
    assert all(isinstance(c, Category) and c.name == c.name.strip() and c.name for c in cats)


def test_presets_listed_and_aliases() -> None:
    assert set(VOCAB_PRESETS) == {"lvvis", "ytvis2019", "ytvis2021", "ovis", "coco"}
    assert load_vocab_preset("YTVIS-2019") == load_vocab_preset("ytvis2019")
    assert load_vocab_preset("LV-VIS")[0] == Category(1, "accordion", 3)
    with pytest.raises(ValueError, match="lvvis"):
        load_vocab_preset("imagenet")


def test_lvvis_partitions() -> None:
    cats = load_vocab_preset("lvvis")
    assert [c.id for c in cats] == list(range(1, 1197))
    assert set(Counter(c.partition for c in cats)) == {0, 1, 2, 3}
    base = [c for c in cats if c.partition in (0, 1)]
    novel = [c for c in cats if c.partition in (2, 3)]
    assert (len(base), len(novel)) == (641, 555)
    assert sum(c.is_novel is False for c in cats) == 641 and sum(bool(c.is_novel) for c in cats) == 555
    by_name = {c.name: c for c in cats}
    # Spot checks against LVVIS_CATEGORIES (haochenheheda/LVVIS).
    assert by_name["person"] == Category(773, "person", 0)
    assert by_name["hang_glider"] == Category(523, "hang_glider", 3)
    assert by_name["steak_knife"] == Category(1000, "steak_knife", 2)
    assert by_name["zucchini"] == Category(1196, "zucchini", 1)
    assert by_name["CD"].id == 215


def test_other_presets_spot_checks() -> None:
    y19 = load_vocab_preset("ytvis2019")
    assert (y19[0].name, y19[-1].name, y19[38].name) == ("person", "tennis_racket", "earless_seal")
    y21 = load_vocab_preset("ytvis2021")
    assert (y21[0].name, y21[13].name, y21[-1].name) == ("airplane", "flying_disc", "zebra")
    ovis = load_vocab_preset("ovis")
    assert (ovis[0].name, ovis[-1].name) == ("Person", "Vehical")  # the data set's spelling
    coco = load_vocab_preset("coco")
    assert (coco[0].id, coco[-1].id, coco[-1].name) == (1, 90, "toothbrush")
    assert all(c.partition is None and c.is_novel is None for c in coco)


def test_prompt_name() -> None:
    assert Category(2, "giant_panda").prompt_name == "giant panda"
    assert Category(3, "bow_(weapon)").prompt_name == "bow (weapon)"


def test_assets_dir_is_the_repo_assets() -> None:
    assert assets_dir() == Path(__file__).resolve().parent.parent / "assets"
    for name in VOCAB_PRESETS:
        rows = json.loads((assets_dir() / "vocab" / f"{name}.json").read_text())
        assert all(set(r) <= {"id", "name", "partition"} for r in rows)


def test_assets_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "vocab").mkdir()
    monkeypatch.setenv("OVFORMER_ASSETS", str(tmp_path))
    assert assets_dir() == tmp_path


@pytest.mark.parametrize(
    "text,expected",
    [
        ("a, b\nc", ["a", "b", "c"]),
        ("cat, dog\n Dog ,giant   panda", ["cat", "dog", "giant panda"]),
        ("  person\r\n\r\nbicycle,,  ,PERSON\n", ["person", "bicycle"]),
        ("Car", ["Car"]),
    ],
)
def test_parse_vocab_text(text: str, expected: list[str]) -> None:
    assert parse_vocab_text(text) == expected


@pytest.mark.parametrize("text", ["", "   ", ",,\n , \n"])
def test_parse_vocab_text_empty(text: str) -> None:
    with pytest.raises(ValueError, match="vocabulary is empty"):
        parse_vocab_text(text)


def test_read_vocab_file_formats(tmp_path: Path) -> None:
    txt = tmp_path / "v.txt"
    txt.write_text("# my classes\nperson, bicycle\ndog\n  # another comment\nPerson\n")
    assert read_vocab_file(txt) == ["person", "bicycle", "dog"]

    plain = tmp_path / "names.json"
    plain.write_text(json.dumps(["cat", "traffic light, red", "Cat"]))
    assert read_vocab_file(plain) == ["cat", "traffic light, red"]  # JSON names kept whole

    preset_like = tmp_path / "preset.json"
    preset_like.write_text(json.dumps([{"id": 1, "name": "zebra"}, {"id": 2, "name": "horse"}]))
    assert read_vocab_file(preset_like) == ["zebra", "horse"]

    ann = tmp_path / "valid.json"
    ann.write_text(json.dumps({"videos": [], "categories": [{"id": 2, "name": "dog"}, {"id": 1, "name": "cat"}]}))
    assert read_vocab_file(ann) == ["cat", "dog"]


def test_read_vocab_file_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_vocab_file(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing here\n\n")
    with pytest.raises(ValueError, match="empty.txt"):
        read_vocab_file(empty)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"names": ["a"]}))
    with pytest.raises(ValueError, match="categories"):
        read_vocab_file(bad)
