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
