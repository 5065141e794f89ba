"""Numerical parity with the official implementation on the reference fixture.

The fixture (env ``OVFORMER_PARITY_FIXTURE``, default ``../shared/reference/ovformer_parity``,
else the vendored copy; see ``tests/parity_fixture.py``) holds an official-layout checkpoint with random weights, its detectron2 config, inputs and the
official outputs. Nothing below assumes this fixture's sizes.
"""
from __future__ import annotations


import numpy as np
import pytest
import torch

from ovformer.inference.postprocess import select_topk, video_scores
from ovformer.inference.tracker import ClipResult, VideoState

from tests.parity_fixture import FIXTURE, load_parity_model

pytestmark = pytest.mark.skipif(not (FIXTURE / "expected_outputs.pt").is_file(),
                                reason=f"parity fixture not found at {FIXTURE}")


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    return load_parity_model(tmp_path_factory.mktemp("parity"))


@pytest.fixture(scope="module")
def run(fixture):
    """Run the fixture's video clip by clip through the model and the video state."""
    model, conv, exp = fixture
    frames, clip_feats = exp["frames_chw_rgb_0_255"], exp["clip_image_features"]
    n, c = frames.shape[0], int(exp["clip_length"])
    # The reference scored against the checkpoint's stored zs_weight, exactly as stored.
    text = conv.text_embeds
    raw, state = [], VideoState()
    with torch.no_grad():
        for s in range(0, n, c):
            out = model(frames[s:s + c][None], clip_feats[s:s + c][None], text)
            raw.append(out)
            state.add(ClipResult.from_output(out))
    yield raw, state
    state.close()


def test_checkpoint_loads_strictly_and_carries_the_vocabulary(fixture):
    model, conv, exp = fixture
    assert conv.unknown == []
    assert all(k.startswith("criterion.") for k in conv.dropped)
    # zs_weight is the fixture's text embeddings, up to the fixture's int8/fp16 packing
    assert conv.text_embeds.shape == exp["text_embeddings"].shape
    assert torch.allclose(conv.text_embeds, exp["text_embeddings"], atol=0.07)


def test_per_clip_outputs_match(run, fixture):
    raw, _ = run
    exp = fixture[2]
    assert len(raw) == len(exp["per_clip"])
    for out, ref in zip(raw, exp["per_clip"]):
        for key in ("pred_logits", "pred_object_logits", "pred_masks", "pred_embds"):
            ours = getattr(out, key)
            assert ours.shape == ref[key].shape, key
            assert (ours - ref[key]).abs().max().item() < 1e-3, key


def test_association_matches(run, fixture):
    _, state = run
    expected = fixture[2]["match_indices"]
    assert [p.tolist() for p in state.permutations] == [list(m) for m in expected]


def test_video_scores_labels_and_masks_match(run, fixture):
    _, state = run
    exp = fixture[2]
    k = exp["pred_scores"].numel()
    scores, queries, labels = select_topk(video_scores(*state.video_logits()), k)
    ours = sorted(zip(scores.tolist(), labels.tolist(), queries.tolist()))
    ref = sorted(zip(exp["pred_scores"].tolist(), exp["pred_labels"].tolist(), range(k)))
    assert [lab for _, lab, _ in ours] == [lab for _, lab, _ in ref]
    assert np.abs(np.array([s for s, _, _ in ours]) - np.array([s for s, _, _ in ref])).max() < 1e-4

    shape = list(exp["pred_masks_shape"])
    ref_masks = np.unpackbits(exp["pred_masks_packbits"].numpy(), axis=-1)[..., :shape[-1]]
    ref_masks = ref_masks.reshape(shape).astype(bool)  # (k, T, H, W)
    frames = exp["frames_chw_rgb_0_255"]
    h, w = frames.shape[-2:]
    d = 32
    padded = ((h + d - 1) // d * d, (w + d - 1) // d * d)
    out_size = (int(exp["output_height"]), int(exp["output_width"]))
    # order both sides by (score, label) so pairs line up
    ours_sorted = [q for _, _, q in ours]
    ref_order = [i for _, _, i in ref]
    q = torch.tensor(ours_sorted)
    ours_masks = np.stack([m for _, m in state.iter_frame_masks(q, padded, (h, w), out_size)], 1)
    differ = (ours_masks != ref_masks[ref_order]).mean()
    assert ours_masks.shape == ref_masks.shape
    assert differ <= 1e-3, f"{differ:.5%} of mask pixels differ"


# -- the vocabulary: the checkpoint's own classifier first ---------------------------------------

@pytest.fixture(scope="module")
def vocab_predictor(tmp_path_factory, fixture):
    """A predictor on the fixture checkpoint whose classifier columns are named (the fixture
    records no names: any K names do) and a CLIP whose text tower must not run."""
    from ovformer.clip import load_clip
    from ovformer.inference.predictor import OVFormerVideoPredictor
    from ovformer.vocab import Vocabulary
    from tests.parity_fixture import build_checkpoint

    k = fixture[1].text_embeds.shape[0]
    training = Vocabulary(tuple(Vocabulary.from_preset("lvis").categories[:k]))
    ckpt = build_checkpoint(tmp_path_factory.mktemp("vocab") / "model_official_format.pth")
    clip = load_clip("tiny-random")
    pred = OVFormerVideoPredictor.from_pretrained(ckpt, config=FIXTURE / "official_config.yaml",
                                                  clip=clip, classifier_vocabulary=training)
    return pred, training


def _forbid_text_encoding(clip, monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("CLIP's text tower ran for a class the classifier knows")
    monkeypatch.setattr(clip, "encode_text", refuse)
    monkeypatch.setattr(clip.model, "encode_text", refuse)


def test_known_classes_reproduce_the_official_logits(vocab_predictor, fixture, monkeypatch):
    """A shuffled subset of the checkpoint's classes, typed loosely (spaces, upper case), scores
    exactly as the official model scored those columns; CLIP's text tower never runs."""
    pred, training = vocab_predictor
    _, conv, exp = fixture
    _forbid_text_encoding(pred.clip, monkeypatch)
    k = len(training)
    cols = torch.randperm(k, generator=torch.Generator().manual_seed(0))[: max(2, k // 2)].tolist()
    text = pred.embed_vocabulary([training[c].prompt_name.upper() for c in cols])
    assert text.sources == ("classifier",) * len(cols)
    assert torch.equal(text.embeds, conv.text_embeds[cols].float())
    assert text.summary() == f"{len(cols)} from the model's classifier"
    frames, feats = exp["frames_chw_rgb_0_255"], exp["clip_image_features"]
    c = int(exp["clip_length"])
    for i, s in enumerate(range(0, frames.shape[0], c)):
        out = pred.forward(frames[s:s + c].float(), feats[s:s + c], text.embeds)
        ref = exp["per_clip"][i]["pred_logits"][..., cols]
        assert (out.pred_logits[..., :-1] - ref).abs().max().item() < 1e-5


def test_mixed_vocabulary_reports_each_source(vocab_predictor):
    """Known names take their stored column; new ones are embedded (prompt ensemble here: no
    DetPro prompts with a tiny CLIP), and each class says where its embedding came from."""
    from ovformer.detpro import template_ensemble_embeddings

    pred, training = vocab_predictor
    names = [training[3].name, "unicorn", training[0].prompt_name, "dragon fruit"]
    text = pred.embed_vocabulary(names)
    assert text.sources == ("classifier", "templates", "classifier", "templates")
    assert text.by_source("templates") == ["unicorn", "dragon fruit"]
    assert text.summary().startswith("2 from the model's classifier; 2 new: prompt ensemble")
    torch.testing.assert_close(text.embeds[[1, 3]],
                               template_ensemble_embeddings(pred.clip, ["unicorn", "dragon fruit"]),
                               rtol=0, atol=0)
    assert torch.equal(text.embeds[[0, 2]], pred.classifier.weight[[3, 0]].float())
