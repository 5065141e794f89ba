"""Tests for ovformer.modeling.swin (Mask2Former D2SwinTransformer layout and numerics).

Forward tests use a small config; the full Swin-B is only built on the meta device to check
its checkpoint layout against the released model's manifest.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ovformer.modeling.swin import SwinBackbone, SwinStage, WindowAttention, shifted_window_mask

from tests.parity_fixture import FIXTURE  # noqa: E402
SMALL = dict(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), window_size=7, pretrain_img_size=224)


def _small(**kw) -> SwinBackbone:
    return SwinBackbone(**{**SMALL, "drop_path_rate": 0.0, **kw})


def _randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Deterministic non-trivial weights (LayerNorms near 1, everything else ~N(0, 0.2))."""
    g = torch.Generator().manual_seed(seed)
    ln_weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.LayerNorm)}
    with torch.no_grad():
        for _, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if id(p) in ln_weights else 0.0))
    return model


# ---------------------------------------------------------------- checkpoint layout


def _manifest_backbone() -> dict[str, tuple[tuple[int, ...], str]]:
    path = FIXTURE / "manifest_swinb_lvvis_full.txt"
    if not path.is_file():
        pytest.skip(f"parity manifest not found: {path}")
    out = {}
    for line in path.read_text().splitlines():
        if not line.startswith("backbone."):
            continue
        key, shape, dtype = line.split("\t")
        dims = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
        out[key[len("backbone."):]] = (dims, dtype)
    return out


def test_swinb_state_dict_matches_released_manifest() -> None:
    expected = _manifest_backbone()
    with torch.device("meta"):  # shapes only: the full Swin-B (87M params) is slow to initialise
        model = SwinBackbone()  # defaults = OVFormer Swin-B
    got = {k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()}
    assert sorted(set(got) - set(expected)) == [] and sorted(set(expected) - set(got)) == []
    assert got == expected
    assert model.out_channels == {"res2": 128, "res3": 256, "res4": 512, "res5": 1024}
    assert model.out_strides == {"res2": 4, "res3": 8, "res4": 16, "res5": 32}


def test_relative_position_index_values() -> None:
    # index = (dy + ws-1) * (2ws-1) + (dx + ws-1) with (dy, dx) = coords[i] - coords[j], row-major tokens
    idx = SwinBackbone(**{**SMALL, "window_size": 12}).state_dict()["layers.0.blocks.0.attn.relative_position_index"]
    assert idx.dtype == torch.int64 and idx.shape == (144, 144)
    assert idx[0, 0] == 11 * 23 + 11 == 264  # (0, 0): centre of the 529-entry table
    assert idx[0, 143] == 0  # token (0,0) vs (11,11): (dy, dx) = (-11, -11)
    assert idx[143, 0] == 528  # (+11, +11)
    assert idx[1, 0] == 264 + 1 and idx[12, 0] == 264 + 23  # right neighbour: dx=+1; row below: dy=+1
    assert set(idx.unique().tolist()) == set(range(529))


def test_ape_and_out_indices_change_the_layout() -> None:
    sd = _small(ape=True, out_indices=(1, 3)).state_dict()
    assert sd["absolute_pos_embed"].shape == (1, 32, 56, 56)
    assert [k for k in sd if k.startswith("norm")] == ["norm1.weight", "norm1.bias", "norm3.weight", "norm3.bias"]


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize("hw", [(67, 101), (96, 128)])
def test_forward_shapes_any_size(hw: tuple[int, int]) -> None:
    model = _small().eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *hw))
    assert list(out) == ["res2", "res3", "res4", "res5"]
    assert model.out_channels == {"res2": 32, "res3": 64, "res4": 128, "res5": 256}
    assert model.out_strides == {"res2": 4, "res3": 8, "res4": 16, "res5": 32}
    h, w = math.ceil(hw[0] / 4), math.ceil(hw[1] / 4)  # patch padding, then ceil(/2) per PatchMerging
    for name in out:
        assert out[name].shape == (2, model.out_channels[name], h, w)
        assert out[name].is_contiguous() and torch.isfinite(out[name]).all()
        h, w = (h + 1) // 2, (w + 1) // 2
    if hw == (96, 128):  # multiples of 32: strides are exact
        assert {k: v.shape[-1] * model.out_strides[k] for k, v in out.items()} == dict.fromkeys(out, 128)


def test_out_indices_subset() -> None:
    model = _small(out_indices=(1, 2)).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    assert list(out) == ["res3", "res4"] and list(model.out_channels) == ["res3", "res4"]


def test_input_padding_is_zero_padding() -> None:
    # D2Swin zero-pads the image bottom/right to a multiple of the patch size.
    model = _randomise(_small()).eval()
    x = torch.randn(1, 3, 67, 101)
    with torch.no_grad():
        a, b = model(x), model(F.pad(x, (0, 3, 0, 1)))
    assert all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- numerics


def test_matches_timm_swin_on_window_aligned_input() -> None:
    """Independent implementation: timm's Swin (downsample at the start of a stage, NHWC).

    At sizes where every stage is a multiple of the window the two padding conventions
    coincide; ``always_partition`` makes timm shift even when the map is a single window, as
    D2Swin does. Output i of ours == norm{i}(output of timm stage i).
    """
    swin = pytest.importorskip("timm.models.swin_transformer")
    ours = _randomise(_small(window_size=4)).eval()
    ref = swin.SwinTransformer(img_size=128, embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), window_size=4,
                               num_classes=0, always_partition=True, strict_img_size=False).eval()
    sd = {k: v for k, v in swin.checkpoint_filter_fn(ours.state_dict(), ref).items() if not k.startswith("norm")}
    missing, unexpected = ref.load_state_dict(sd, strict=False)
    assert missing == ["norm.weight", "norm.bias"] and unexpected == []  # timm's head norm, unused here
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out, y = ours(x), ref.patch_embed(x)
        for i, stage in enumerate(ref.layers):
            y = stage(y)
            expected = getattr(ours, f"norm{i}")(y).permute(0, 3, 1, 2)
            torch.testing.assert_close(out[f"res{i + 2}"], expected, rtol=1e-5, atol=1e-5)


# Golden values computed with Mask2Former's D2SwinTransformer code (facebookresearch/Mask2Former
# @161be51, mask2former/modeling/backbone/swin.py), weights from _randomise(seed=0) on the SMALL
# config, input from a seeded generator at 67x101: every stage needs window padding, res4/res5
# are smaller than the 7x7 window. Pins the D2 padding/shift conventions.
# name -> (mean |x|, <x, fixed random vector> / sqrt(numel), x[0, 0, -1, -1], x[0, -1, 0, 0])
GOLDEN: dict[str, tuple[float, float, float, float]] = {
    "res2": (0.837989, 0.512483, 1.243779, -0.921048),
    "res3": (0.795492, -0.781345, -0.984552, -0.711709),
    "res4": (0.806056, -0.043681, -0.689368, -1.398284),
    "res5": (0.831449, -0.915795, 1.257686, 0.926647),
}


def test_matches_d2swin_golden_values_with_padding() -> None:
    model = _randomise(_small()).eval()
    x = torch.randn(1, 3, 67, 101, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = model(x)
    def stats(v: torch.Tensor) -> tuple[float, float, float, float]:
        w = torch.randn(v.numel(), generator=torch.Generator().manual_seed(4))
        proj = (v.flatten() @ w).item() / v.numel() ** 0.5
        return v.abs().mean().item(), proj, v[0, 0, -1, -1].item(), v[0, -1, 0, 0].item()

    got = {k: stats(v) for k, v in out.items()}
    assert got.keys() == GOLDEN.keys()
    for k in GOLDEN:
        assert got[k] == pytest.approx(GOLDEN[k], rel=1e-4, abs=1e-4), k


def test_window_attention_identical_tokens_returns_value_projection() -> None:
    # Identical tokens -> identical values -> any softmax row (weights sum to 1) returns v itself,
    # whatever the bias or the mask; the output is proj(Wv t + bv) for every token.
    torch.manual_seed(0)
    dim, ws = 8, 3
    attn = WindowAttention(dim, ws, num_heads=2)
    token = torch.randn(dim)
    x = token.expand(4, ws * ws, dim).contiguous()  # 4 windows
    wv, bv = attn.qkv.weight[2 * dim:], attn.qkv.bias[2 * dim:]
    expected = attn.proj(wv @ token + bv).expand(4, ws * ws, dim)
    with torch.no_grad():
        attn.relative_position_bias_table.zero_()
        torch.testing.assert_close(attn(x), expected, rtol=1e-6, atol=1e-6)
        attn.relative_position_bias_table.normal_(std=3.0)  # also with a bias and a shift mask
        mask = shifted_window_mask(2 * ws, 2 * ws, ws, ws // 2)
        torch.testing.assert_close(attn(x, mask), expected, rtol=1e-5, atol=1e-5)


def test_relative_bias_orientation() -> None:
    # q = k = 0, so the logits are the bias alone. A large bias at offset (dy, dx) = (0, +1)
    # (query one column right of the key) makes every token copy its LEFT neighbour's value.
    torch.manual_seed(0)
    dim, ws = 4, 3
    attn = WindowAttention(dim, ws, num_heads=1)
    with torch.no_grad():
        attn.qkv.weight[: 2 * dim].zero_()
        attn.qkv.bias[: 2 * dim].zero_()
        attn.relative_position_bias_table.zero_()
        attn.relative_position_bias_table[(0 + ws - 1) * (2 * ws - 1) + (1 + ws - 1)] = 100.0
        x = torch.randn(1, ws * ws, dim)
        out = attn(x)
        v = attn.qkv(x)[..., 2 * dim:]
        for r in range(ws):
            for c in range(1, ws):
                torch.testing.assert_close(out[0, r * ws + c], attn.proj(v[0, r * ws + c - 1]))
            # column 0 has no left neighbour: uniform average of the window
            torch.testing.assert_close(out[0, r * ws], attn.proj(v[0].mean(0)), rtol=1e-5, atol=1e-5)


def test_shifted_window_mask_structure() -> None:
    ws, shift = 4, 2
    mask = shifted_window_mask(2 * ws, 2 * ws, ws, shift)
    assert mask.shape == (4, ws * ws, ws * ws)
    assert set(mask.unique().tolist()) == {-100.0, 0.0}
    allowed = (mask == 0).sum(dim=(1, 2)).tolist()
    # top-left window: one region; top-right / bottom-left: two halves of 8 tokens; bottom-right: 4 quadrants
    assert allowed == [256, 2 * 8 * 8, 2 * 8 * 8, 4 * 4 * 4]


def test_shifted_blocks_do_not_leak_across_the_wrap_around() -> None:
    # One stage, window 7 on a 14x14 map, perturb token (0, 0). Block 0 (regular windows) spreads
    # it to rows/cols 0..6; block 1 (shift 3) to the shifted windows holding those tokens, i.e.
    # rows/cols 0..9. The cyclic roll brings rows 11..13 next to rows 0..2, but the mask must
    # keep them apart: rows/cols 10..13 stay exactly unchanged.
    # float64 so that second-order effects stay far above rounding.
    stage = SwinStage(16, depth=2, num_heads=2, window_size=7, mlp_ratio=2.0, qkv_bias=True, drop_path=[0.0, 0.0],
                      downsample=False)
    stage = _randomise(stage).double().eval()
    x = torch.randn(1, 14 * 14, 16, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    x2 = x.clone()
    x2[0, 0] += torch.linspace(-1.0, 1.0, 16, dtype=torch.float64)  # not a constant: LayerNorm would remove it
    with torch.no_grad():
        a = stage(x, 14, 14)[0].view(14, 14, 16)
        b = stage(x2, 14, 14)[0].view(14, 14, 16)
    changed = (a - b).abs().amax(-1) > 0
    assert changed[:10, :10].all()
    assert not changed[10:].any() and not changed[:, 10:].any()


def test_eval_is_deterministic_and_train_drops_paths() -> None:
    model = _randomise(_small(drop_path_rate=0.5))
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        model.eval()
        a, b = model(x), model(x)
        assert all(torch.equal(a[k], b[k]) for k in a)
        model.train()
        torch.manual_seed(0)
        c = model(x)
        assert not torch.allclose(c["res5"], a["res5"])  # stochastic depth is active in train mode
    assert model.layers[0].blocks[0].drop_path.p == 0.0  # linear rule: 0 ... drop_path_rate
    assert model.layers[3].blocks[1].drop_path.p == pytest.approx(0.5)


def test_every_parameter_gets_a_gradient() -> None:
    torch.manual_seed(0)
    model = _small().train()  # drop_path 0: a branch dropped for the whole batch would get no grad
    out = model(torch.randn(2, 3, 61, 77))
    sum((v * torch.randn_like(v)).sum() for v in out.values()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
