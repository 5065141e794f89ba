"""DetPro prompt-context embeddings, the 14-template fallback, the loader and the registry entry.

The reference below is written out step by step (a Python loop over tokens, the causal mask
built by hand, each transformer block called in turn) so that it shares no code with
``ovformer.detpro`` beyond the CLIP weights themselves.
"""

from __future__ import annotations

import math
from pathlib import Path

import open_clip
import pytest
import torch

import ovformer.detpro as detpro
from ovformer.clip import load_clip
from ovformer.detpro import (
    VILD_TEMPLATES,
    classifier_agreement,
    detpro_text_embeddings,
    load_detpro_context,
    resolve_detpro_prompts,
    template_ensemble_embeddings,
)
from ovformer.weights import WeightsNotFoundError, get_prompts_entry, list_prompt_sets, prompts_dir

NAMES = ["aerosol can", "zebra", "traffic light", "", "Baby Buggy"]
RELEASED = [f"fg_bg_5_{a}_{b}_r1_prompt.pth" for a, b in ((5, 6), (6, 7), (7, 8), (8, 9), (9, 10))]


@pytest.fixture(scope="module")
def clip():
    return load_clip("tiny-random")


@pytest.fixture(scope="module")
def context(clip) -> torch.Tensor:
    width = clip.model.token_embedding.weight.shape[1]  # 64 for tiny-random
    gen = torch.Generator().manual_seed(7)
    return torch.randn(5, 8, width, generator=gen) * 0.02  # DetPro's init scale


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OVFORMER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("OVFORMER_OFFLINE", raising=False)
    return tmp_path / "home"


def hand_built(clip, context: torch.Tensor, names: list[str]) -> torch.Tensor:
    m = clip.model
    assert m.transformer.batch_first  # the blocks below take (N, L, D)
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    P, n_ctx, _ = context.shape
    rows = []
    with torch.no_grad():
        for name in names:
            ids = tokenizer(["X X X X X X X X " + name + "."])[0]
            assert tokenizer.decode(ids[1 : 1 + n_ctx].tolist()).split() == ["x"] * n_ctx
            per_prompt = []
            for p in range(P):
                vectors = []
                for i, t in enumerate(ids.tolist()):
                    vectors.append(context[p, i - 1] if 1 <= i <= n_ctx else m.token_embedding.weight[t])
                x = torch.stack(vectors)[None] + m.positional_embedding  # (1, 77, width)
                L = x.shape[1]
                causal = torch.full((L, L), float("-inf")).triu(1)  # token i sees tokens <= i
                for block in m.transformer.resblocks:
                    x = block(x, attn_mask=causal)
                x = m.ln_final(x)
                e = x[0, int(ids.argmax())] @ m.text_projection
                per_prompt.append(e / e.norm())
            total = per_prompt[0]
            for e in per_prompt[1:]:
                total = total + e
            rows.append(total / total.norm())
    return torch.stack(rows)


def test_matches_hand_built_reference(clip, context) -> None:
    got = detpro_text_embeddings(clip, context, NAMES)
    want = hand_built(clip, context, NAMES)
    assert got.shape == (len(NAMES), 512) and got.dtype == torch.float32
    assert (got - want).abs().max().item() < 1e-6
    assert torch.allclose(got.norm(dim=-1), torch.ones(len(NAMES)), atol=1e-6)


def test_context_matters_and_single_context(clip, context) -> None:
    five = detpro_text_embeddings(clip, context, NAMES[:2])
    one = detpro_text_embeddings(clip, context[0], NAMES[:2])  # (n_ctx, width) -> P = 1
    assert (one - hand_built(clip, context[:1], NAMES[:2])).abs().max().item() < 1e-6
    assert (five - one).abs().max().item() > 1e-3
    other = detpro_text_embeddings(clip, context.flip(0).roll(1, dims=1), NAMES[:2])
    assert (five - other).abs().max().item() > 1e-3


def test_batched_equals_unbatched_and_is_deterministic(clip, context, monkeypatch) -> None:
    whole = detpro_text_embeddings(clip, context, NAMES)
    assert torch.equal(whole, detpro_text_embeddings(clip, context, NAMES))
    monkeypatch.setattr(detpro, "_BATCH", 2)  # 5 names -> batches of 2, 2, 1
    assert (detpro_text_embeddings(clip, context, NAMES) - whole).abs().max().item() < 1e-6
    assert detpro_text_embeddings(clip, context, []).shape == (0, 512)
    assert not whole.requires_grad


def test_rejects_bad_context_and_overlong_names(clip, context) -> None:
    with pytest.raises(ValueError, match="text width 64"):
        detpro_text_embeddings(clip, torch.zeros(5, 8, 512), ["cat"])
    with pytest.raises(ValueError, match="too long"):
        detpro_text_embeddings(clip, context, ["word " * 70])


def test_template_ensemble_is_mean_of_normalised_over_14_templates(clip) -> None:
    assert len(VILD_TEMPLATES) == 14 and len(set(VILD_TEMPLATES)) == 14
    assert VILD_TEMPLATES[0] == "a photo of a {}." and VILD_TEMPLATES[-1] == "There is a large {} in the scene."
    names = ["zebra", "traffic light"]
    got = template_ensemble_embeddings(clip, names)
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    with torch.no_grad():
        for k, name in enumerate(names):
            singles = []
            for template in VILD_TEMPLATES:
                e = clip.model.encode_text(tokenizer([template.format(name)]))[0]
                singles.append(e / e.norm())
            mean = torch.stack(singles).mean(dim=0)
            assert (got[k] - mean / mean.norm()).abs().max().item() < 1e-6
            # not any one template alone
            assert min((got[k] - s).abs().max().item() for s in singles) > 1e-3


def test_loader_reads_released_layout_in_release_order(tmp_path: Path) -> None:
    folder = tmp_path / "prompts"
    folder.mkdir()
    for i, name in reversed(list(enumerate(RELEASED))):  # written out of order on purpose
        torch.save(torch.full((8, 512), float(i)), folder / name)  # what DetPro's checkpoint() writes
    ctx = load_detpro_context(folder)
    assert ctx.shape == (5, 8, 512) and ctx.dtype == torch.float32
    assert ctx[:, 0, 0].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert load_detpro_context(folder / RELEASED[2]).shape == (1, 8, 512)
    pair = load_detpro_context([folder / RELEASED[4], str(folder / RELEASED[0])])
    assert pair[:, 0, 0].tolist() == [4.0, 0.0]


def test_loader_other_layouts(tmp_path: Path) -> None:
    stacked = torch.arange(2 * 8 * 4, dtype=torch.float16).view(2, 8, 4)
    torch.save(stacked, tmp_path / "stack.pth")
    assert torch.equal(load_detpro_context(tmp_path / "stack.pth"), stacked.float())
    torch.save({"prompt_learner.ctx": stacked[0], "prompt_learner.token_prefix": torch.zeros(1, 1, 4)}, tmp_path / "sd.pth")
    assert torch.equal(load_detpro_context(tmp_path / "sd.pth")[0], stacked[0].float())


def test_loader_errors_name_the_file(tmp_path: Path) -> None:
    torch.save(torch.zeros(512), tmp_path / "flat.pth")
    with pytest.raises(ValueError, match="flat.pth.*\\(512,\\)"):
        load_detpro_context(tmp_path / "flat.pth")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    torch.save(torch.zeros(8, 512), mixed / "a.pth")
    torch.save(torch.zeros(4, 512), mixed / "b.pth")
    with pytest.raises(ValueError, match="a.pth.*b.pth"):
        load_detpro_context(mixed)  # not the released names: every *.pth, sorted
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="junk.pth"):
        load_detpro_context(tmp_path / "junk.pth")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_detpro_context(tmp_path / "nope.pth")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="No DetPro prompt files"):
        load_detpro_context(tmp_path / "empty")


def test_agreement_numbers_by_hand() -> None:
    computed = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    stored = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, 3.0]])  # cosines 1, 1/sqrt(2), 0
    rep = classifier_agreement(computed, stored, ["a", "b", "c"], worst=2)
    assert rep["num_classes"] == 3
    assert rep["per_class"].tolist() == pytest.approx([1.0, 1 / math.sqrt(2), 0.0], abs=1e-7)
    assert rep["mean_cosine"] == pytest.approx((1 + 1 / math.sqrt(2)) / 3, abs=1e-7)
    assert rep["min_cosine"] == pytest.approx(0.0, abs=1e-7)
    assert [(i, n) for i, n, _ in rep["worst"]] == [(2, "c"), (1, "b")]
    with pytest.raises(ValueError, match="zs_weight"):
        classifier_agreement(computed, stored.T)
    with pytest.raises(ValueError, match="background"):
        classifier_agreement(computed, torch.cat([stored[:2], torch.zeros(1, 2)]))


def test_registry_entry() -> None:
    (entry,) = [e for e in list_prompt_sets() if e.name == "detpro-lvis"]
    assert entry.kind == "prompts" and entry.gdrive_folder_id == "1DSkfTO3TWrIW0k1kt67Ez-wLwXy9mVqF"
    assert list(entry.filenames) == RELEASED
    assert entry.url == "https://drive.google.com/drive/folders/1DSkfTO3TWrIW0k1kt67Ez-wLwXy9mVqF"
    assert get_prompts_entry("detpro-lvis") == entry


def test_resolves_from_cache_without_network(isolated_home: Path, clip) -> None:
    folder = isolated_home / "weights" / "detpro-lvis"
    assert prompts_dir("detpro-lvis") == folder
    folder.mkdir(parents=True)
    for name in RELEASED:
        torch.save(torch.zeros(8, 64), folder / name)
    assert resolve_detpro_prompts(download=False) == folder
    ctx = load_detpro_context(resolve_detpro_prompts(download=True))  # cached: no download
    assert detpro_text_embeddings(clip, ctx, ["cat"]).shape == (1, 512)


def test_offline_error_names_files_and_command(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = isolated_home / "weights" / "detpro-lvis"
    folder.mkdir(parents=True)
    torch.save(torch.zeros(8, 512), folder / RELEASED[0])  # one of five present
    with pytest.raises(WeightsNotFoundError) as err:
        resolve_detpro_prompts(download=False)
    msg = str(err.value)
    for name in RELEASED[1:]:
        assert f"missing file: {folder / name}" in msg
    assert str(folder / RELEASED[0]) not in msg
    assert "ovformer weights download detpro-lvis" in msg
    assert "https://drive.google.com/drive/folders/1DSkfTO3TWrIW0k1kt67Ez-wLwXy9mVqF" in msg
    monkeypatch.setenv("OVFORMER_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match="OVFORMER_OFFLINE"):
        resolve_detpro_prompts(download=True)
