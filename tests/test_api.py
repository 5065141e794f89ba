"""Loading models: project checkpoints carry config, vocabulary and CLIP; clear errors."""
from __future__ import annotations

import warnings

import pytest
import torch

from ovformer.api import load_model
from ovformer.checkpoint import save_checkpoint
from ovformer.clip import clip_fingerprint, load_clip
from ovformer.factory import create_model
from ovformer.inference.predictor import OVFormerVideoPredictor
from ovformer.weights import WeightsNotFoundError


@pytest.fixture(scope="module")
def tiny_clip():
    return load_clip("tiny-random")


def _save(tmp_path, clip):
    model = create_model("tiny")
    text = clip.encode_text(["cat", "dog"])
    path = tmp_path / "model_final.pth"
    save_checkpoint(path, model, iteration=7, text_embeds=text,
                    meta={"config": model.config.to_dict(), "clip": clip_fingerprint(clip),
                          "vocabulary": ["cat", "dog"]})
    return path, model, text


def test_project_checkpoint_restores_config_vocabulary_and_weights(tmp_path, tiny_clip):
    path, model, text = _save(tmp_path, tiny_clip)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same CLIP: no warning
        pred = OVFormerVideoPredictor.from_pretrained(path, clip=tiny_clip)
    default = pred.default_text
    assert default.vocabulary.names == ["cat", "dog"] and default.vocabulary.ids == [1, 2]
    assert torch.allclose(default.embeds, text, atol=1e-6)
    assert default.sources == ("classifier", "classifier")
    assert "iteration 7" in pred.weights_label and not pred.untrained
    for k, v in model.state_dict().items():
        assert torch.equal(v, pred.model.state_dict()[k]), k


def test_loading_with_another_clip_warns(tmp_path, tiny_clip):
    path, _, _ = _save(tmp_path, tiny_clip)
    other = load_clip("random")
    with pytest.warns(UserWarning, match="CLIP"):
        OVFormerVideoPredictor.from_pretrained(path, clip=other)


def test_missing_released_weights_say_what_and_where(monkeypatch, tmp_path):
    monkeypatch.setenv("OVFORMER_HOME", str(tmp_path))
    with pytest.raises(WeightsNotFoundError) as err:
        load_model("r50-lvvis", download=False)
    msg = str(err.value)
    assert str(tmp_path) in msg and "ovformer weights download r50-lvvis" in msg
    assert "--untrained" in msg


def test_untrained_models_are_labelled_and_identical_across_calls():
    a, b = load_model(None, preset="tiny", untrained=True), load_model(None, preset="tiny",
                                                                       untrained=True)
    assert a.untrained and "UNTRAINED" in a.label
    assert all(torch.equal(v, b.model.state_dict()[k]) for k, v in a.model.state_dict().items())


def test_official_files_without_config_find_their_preset():
    """The LVIS image and LV-VIS video models share every key: 1203 classifier columns say LVIS."""
    from ovformer.api import _guess_preset
    r50, swin = ["backbone.base.conv1.weight"], ["backbone.patch_embed.proj.weight"]
    assert _guess_preset(r50, 1203) == "r50-lvis" and _guess_preset(swin, 1203) == "swinb-lvis"
    assert _guess_preset(r50, 1196) == "r50-lvvis" and _guess_preset(swin, None) == "swinb-lvvis"
