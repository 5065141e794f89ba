"""Bundled vocabulary presets and parsing of user vocabularies."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from ovformer.vocab import (VOCAB_PRESETS, Category, Vocabulary, assets_dir, load_vocab_preset, name_key,
                            parse_vocab_text, read_vocab_file)


@pytest.mark.parametrize("name,count", [("lvvis", 1196), ("lvis", 1203), ("ytvis2019", 40), ("ytvis2021", 40),
                                        ("ovis", 25), ("coco", 80)])
def test_preset_sizes_and_ids(name: str, count: int) -> None:
    cats = load_vocab_preset(name)
    assert len(cats) == count
    ids = [c.id for c in cats]
    assert ids == sorted(ids) and len(set(ids)) == count
    assert len({c.name for c in cats}) == count
    assert all(isinstance(c, Category) and c.name == c.name.strip() and c.name for c in cats)


def test_presets_listed_and_aliases() -> None:
    assert set(VOCAB_PRESETS) == {"lvvis", "lvis", "ytvis2019", "ytvis2021", "ovis", "coco"}
    assert load_vocab_preset("YTVIS-2019") == load_vocab_preset("ytvis2019")
    # LV-VIS classes named as LVIS classes carry the LVIS synonyms (for matching)
    assert load_vocab_preset("LV-VIS")[0] == Category(1, "accordion", 3)  # not an LVIS class
    assert load_vocab_preset("LV-VIS")[2] == Category(3, "aerosol_can", 1, ("aerosol_can", "spray_can"))
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
    # Spot checks against LVVIS_CATEGORIES of the official OVFormer code.
    assert (by_name["person"].id, by_name["person"].partition) == (773, 0)
    assert (by_name["hang_glider"].id, by_name["hang_glider"].partition) == (523, 3)
    assert (by_name["steak_knife"].id, by_name["steak_knife"].partition) == (1000, 2)
    assert (by_name["zucchini"].id, by_name["zucchini"].partition) == (1196, 1)
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
    assert Category(3, "bow_(weapon)").prompt_name == "bow weapon"  # as DetPro's prompt/run.py
    assert Category(4, "bow_(weapon)", text="a bow").prompt_name == "a bow"


def test_assets_dir_is_the_repo_assets() -> None:
    assert assets_dir() == Path(__file__).resolve().parent.parent / "assets"
    for name in VOCAB_PRESETS:
        rows = json.loads((assets_dir() / "vocab" / f"{name}.json").read_text())
        assert all(set(r) <= {"id", "name", "partition", "frequency", "synonyms"} for r in rows)


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


def test_lvis_list_spot_checks() -> None:
    """LVIS v1 (detectron2's lvis_v1_categories.py): ids 1..1203 with synonyms."""
    lvis = load_vocab_preset("lvis")
    assert [c.id for c in lvis] == list(range(1, 1204))
    by_name = {c.name: c for c in lvis}
    assert by_name["aerosol_can"].synonyms == ("aerosol_can", "spray_can")
    assert by_name["cellular_telephone"].id == 230 and "cellphone" in by_name["cellular_telephone"].synonyms
    assert lvis[-1].name == "zucchini"


@pytest.mark.parametrize("typed,lvis_name", [
    ("cell phone", "cellular_telephone"),      # a synonym, spaces ignored as a last resort
    ("Cellular Telephone", "cellular_telephone"),
    ("aerosol can", "aerosol_can"),
    ("spray can", "aerosol_can"),              # LVIS synonym
    ("bat (animal)", "bat_(animal)"),
    ("Bat_(animal)", "bat_(animal)"),
    ("bat animal", "bat_(animal)"),
])
def test_lenient_matching(typed: str, lvis_name: str) -> None:
    lvis = Vocabulary.from_preset("lvis")
    (pos,) = lvis.lookup(Vocabulary.from_names([typed]))
    assert pos is not None and lvis[pos].name == lvis_name


def test_matching_keeps_classes_apart() -> None:
    lvvis = Vocabulary.from_preset("lvvis")
    # LV-VIS has both spellings as separate classes: each finds its own
    pos = lvvis.lookup(Vocabulary.from_names(["paint brush", "paintbrush", "unicorn"]))
    assert [lvvis[p].name for p in pos[:2]] == ["paint_brush", "paintbrush"] and pos[2] is None
    assert lvvis.lookup(lvvis) == list(range(len(lvvis)))
    assert name_key("Bat_(animal)") == name_key("bat  animal") == "bat animal"


def test_vocabulary_builders(tmp_path: Path) -> None:
    v = Vocabulary.from_names(["aerosol_can", "Aerosol Can", "dog"])  # same class twice: first kept
    assert v.names == ["aerosol_can", "dog"] and v.ids == [1, 2]
    assert v.prompt_names == ["aerosol can", "dog"]
    assert v[0].synonyms == ("aerosol_can", "spray_can")
    ann = tmp_path / "valid.json"
    ann.write_text(json.dumps({"videos": [], "categories": [{"id": 7, "name": "dog", "partition": 2},
                                                           {"id": 3, "name": "bat_(animal)"}]}))
    f = Vocabulary.from_file(ann)
    assert f.ids == [3, 7] and f.names == ["bat_(animal)", "dog"] and f[1].is_novel
    assert f.to_json()[1] == {"id": 7, "name": "dog", "partition": 2, "synonyms": ["dog"]}
    with pytest.raises(ValueError, match="same class"):
        Vocabulary((Category(1, "paint_brush"), Category(2, "Paint Brush")))
    with pytest.raises(ValueError, match="duplicate category id"):
        Vocabulary((Category(1, "a"), Category(1, "b")))
    with pytest.raises(ValueError, match="empty"):
        Vocabulary.from_names([" "])
