"""Text embeddings reach the model the same way from every path, classifier first.

An official-layout checkpoint with 1196 classifier columns and no vocabulary of its own is an
LV-VIS model (as the released ``*-lvvis`` files): names matching its classes must use the
stored columns exactly, from the CLI as from a ``--text-embeds`` file.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from app.cli import main as cli
from ovformer.checkpoint import to_official_state_dict
from ovformer.factory import create_model
from ovformer.text_embeddings import TextEmbeddings, embed_vocabulary
from ovformer.vocab import Vocabulary

K_LVVIS = 1196


@pytest.fixture(scope="module")
def official_lvvis(tmp_path_factory) -> tuple[Path, torch.Tensor]:
    """A tiny model saved as the official code saves it: no ``ovformer`` metadata, 1196 classes.

    Returns the file and its stored (1196, 512) classifier rows."""
    torch.manual_seed(0)
    model = create_model("tiny")
    zs = torch.nn.functional.normalize(torch.randn(K_LVVIS, 512), dim=1)
    path = tmp_path_factory.mktemp("official") / "model_final.pth"
    torch.save({"model": to_official_state_dict(model.state_dict(), zs), "iteration": 10}, path)
    return path, zs


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    from PIL import Image
    folder = tmp_path_factory.mktemp("frames") / "clip"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (72, 96, 3), dtype=np.uint8)).save(folder / f"{i:05d}.jpg")
    return folder


def _predict(video: Path, out: Path, official: Path, *extra: str) -> list[dict]:
    rc = cli(["predict", str(video), "--preset", "tiny", "--weights", str(official),
              "--clip", "tiny-random", "--out", str(out), *extra])
    assert rc == 0
    return json.loads(out.read_text())


def test_cli_vocab_equals_the_stored_columns(official_lvvis, video, tmp_path, capsys):
    """`--vocab "accordion, aerosol can"` on an official LV-VIS file gives exactly the results of
    `--text-embeds` holding those two stored columns (LV-VIS ids 1 and 3)."""
    path, zs = official_lvvis
    by_name = _predict(video, tmp_path / "a.json", path, "--vocab", "accordion, aerosol can")
    err = capsys.readouterr().err
    assert "2 classes, 2 from the model's classifier" in err
    np.save(tmp_path / "two.npy", zs[[0, 2]].numpy())
    by_file = _predict(video, tmp_path / "b.json", path, "--vocab", "accordion, aerosol can",
                       "--text-embeds", str(tmp_path / "two.npy"))
    assert "2 from the classifier file" in capsys.readouterr().err
    assert by_name == by_file and len(by_name) > 0
    # a third class the classifier does not know is embedded, and said so
    _predict(video, tmp_path / "c.json", path, "--vocab", "accordion, unicorn")
    assert "1 from the model's classifier; 1 new: prompt ensemble" in capsys.readouterr().err


def test_text_embeds_file_must_fit_the_vocabulary(official_lvvis, video, tmp_path, capsys):
    path, zs = official_lvvis
    np.save(tmp_path / "three.npy", zs[:3].numpy())
    rc = cli(["predict", str(video), "--preset", "tiny", "--weights", str(path), "--clip",
              "tiny-random", "--out", str(tmp_path / "x.json"), "--vocab", "a, b",
              "--text-embeds", str(tmp_path / "three.npy")])
    assert rc == 2 and "3 rows for a vocabulary of 2 classes" in capsys.readouterr().err


def test_every_path_gives_the_same_bytes(tmp_path, monkeypatch):
    """The CLI, the app's pre-label, training (and its evaluation) and the closed loop name the
    classes the same way and embed them with the same function: byte-identical embeddings."""
    from ovformer.clip import load_clip
    from ovformer.inference.predictor import OVFormerVideoPredictor
    from ovformer.tools.common import add_vocab_args, text_from_args, vocab_from_args

    made: list[TextEmbeddings] = []
    real = TextEmbeddings.__post_init__
    monkeypatch.setattr(TextEmbeddings, "__post_init__", lambda self: (real(self), made.append(self)))
    categories = [{"id": 3, "name": "bat_(animal)"}, {"id": 1, "name": "aerosol_can"},
                  {"id": 7, "name": "Giant Panda"}]
    ann = tmp_path / "valid.json"
    ann.write_text(json.dumps({"videos": [], "annotations": [], "categories": categories}))
    clip = load_clip("tiny-random")
    pred = OVFormerVideoPredictor.from_pretrained(None, preset="tiny", untrained=True, clip=clip)

    import argparse
    p = argparse.ArgumentParser()
    add_vocab_args(p)
    args = p.parse_args(["--vocab-file", str(ann)])
    cli_text = text_from_args(args, pred, vocab_from_args(args))                 # ovformer predict
    app_text = pred.embed_vocabulary(["aerosol_can", "bat_(animal)", "Giant Panda"])  # app pre-label
    loop_text = pred.embed_vocabulary(Vocabulary.from_categories(categories))       # closed loop, eval
    from training.data import YTVISFolder, build_vocabulary
    names = build_vocabulary([YTVISFolder(ann, tmp_path, {"categories": categories})])
    train_text = embed_vocabulary(Vocabulary.from_names(names), clip)  # as training/loop.py
    assert cli_text.vocabulary.prompt_names == ["aerosol can", "bat animal", "Giant Panda"]
    assert loop_text.vocabulary.ids == cli_text.vocabulary.ids == [1, 3, 7]
    assert train_text.vocabulary.names == cli_text.vocabulary.names
    for other in (loop_text, train_text):
        assert other.embeds.numpy().tobytes() == cli_text.embeds.numpy().tobytes()
    # the app's typed names are in the project's order; the same class has the same bytes
    order = [app_text.vocabulary.names.index(n) for n in ["aerosol_can", "bat_(animal)", "Giant Panda"]]
    assert app_text.embeds[order].numpy().tobytes() == cli_text.embeds.numpy().tobytes()
    assert made and all(t.sources == ("templates",) * 3 for t in made)


def test_embed_vocabulary_without_clip_for_known_classes():
    """Known classes never touch CLIP (it may be absent): the stored rows are copied as stored."""
    from ovformer.text_embeddings import StoredClassifier
    training = Vocabulary.from_names(["cellular_telephone", "aerosol_can"])
    weight = torch.tensor([[3.0, 4.0], [0.5, 0.5]])  # not unit norm: used exactly as stored
    text = embed_vocabulary(Vocabulary.from_names(["spray can", "cell phone"]), clip=None,
                            classifier=StoredClassifier(training, weight))
    assert torch.equal(text.embeds, weight[[1, 0]]) and text.sources == ("classifier",) * 2


def test_doctor_offline_reports_what_it_could_not_check(official_lvvis, video, capsys):
    path, _ = official_lvvis
    rc = cli(["doctor", "--weights", str(path), "--preset", "tiny", "--clip", "tiny-random",
              "--classes", "20", "--video", str(video), "--frames", "2"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "stored classifier: 1196 classes (accordion, action_camera, aerosol_can, ...)" in out
    assert "the prompt ensemble on the first 20 training classes" in out
    assert "NOT CHECKED: DetPro's function against the stored classifier" in out
    assert "clip: 2 frames at 96x72" in out
    from ovformer.inference.runtime import describe_runtime, fastest_dtype
    if not torch.cuda.is_available():  # what auto resolves to here
        assert f"--device auto --dtype auto: {describe_runtime('cpu', fastest_dtype('cpu'))}" in out
    rc = cli(["doctor", "--weights", "r50-lvvis", "--clip", "tiny-random"])
    out = capsys.readouterr().out
    assert rc == 1 and "NOT CHECKED: the checkpoint" in out
    assert "ovformer weights download r50-lvvis" in out
