"""``ovformer bench`` output, bf16 agreement, and the fast paths the benchmark relies on."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from ovformer.layers.ms_deform_attn import ms_deform_attn_core, ms_deform_attn_grid_sample
from ovformer.layers.transformer import attention
from ovformer.tools import bench

from tests.parity_fixture import FIXTURE, load_parity_model  # noqa: E402


def test_bench_json_has_every_key_with_sane_values(capsys):
    assert bench.main(["--preset", "tiny", "--frames", "2", "--size", "64x96", "--json",
                       "--repeats", "1"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert (res["preset"], res["dtype"], res["frames"], res["size"]) == ("tiny", "fp32", 2,
                                                                         [64, 96])
    s, g = res["s_per_frame"], res["gflop_per_frame"]
    for part in ("model", "clip", "total"):
        assert 0 < s[part] < 60 and 0 < g[part] < 10, part
    assert s["total"] >= s["model"] + s["clip"]  # total also holds the resize
    assert g["total"] == pytest.approx(g["model"] + g["clip"])
    # every part of the model is counted, the deformable sampling included
    assert sum(res["gflop_per_frame_parts"].values()) == pytest.approx(g["model"])
    assert res["gflop_per_frame_parts"]["pixel_decoder"] > 0
    assert 1 < res["machine_gflops"] < 1e5
    assert (res["dtype_native"], res["matmul_n"], res["runtime"]) == (True, 2048, "cpu, fp32 (exact)")
    assert res["floor_ratio"] == pytest.approx(
        s["total"] / (g["total"] / res["machine_gflops"]), rel=1e-9)
    assert res["floor_ratio"] > 0.5  # nothing beats its own matmul by 2x
    assert 0.1 < res["peak_rss_gb"] < 64
    assert res["threads"] >= 1
    # end to end on the real sample video, beside the model and CLIP on the same frames
    e = res["end_to_end"]
    assert e["video"].endswith("bikes.mp4") and e["frames"] == 2
    assert e["video_size"] == [272, 640] and e["model_size"] == [64, 151]
    assert 0 < e["model_and_clip_s_per_frame"] < 60 and 0 < e["s_per_frame"] < 60  # one pass: noisy
    assert e["ratio"] == pytest.approx(e["s_per_frame"] / e["model_and_clip_s_per_frame"])


def test_bench_rejects_bad_arguments():
    with pytest.raises(SystemExit):
        bench.main(["--size", "360by640"])
    with pytest.raises(SystemExit):
        bench.main(["--preset", "nope"])


@pytest.fixture(scope="module")
def parity_model(tmp_path_factory):
    if not (FIXTURE / "expected_outputs.pt").is_file():
        pytest.skip(f"parity fixture not found at {FIXTURE}")
    model, conv, expected = load_parity_model(tmp_path_factory.mktemp("parity"))
    return model, conv.text_embeds, expected


def test_bf16_masks_agree_with_fp32_on_the_parity_checkpoint(parity_model):
    from ovformer.inference.postprocess import resize_mask_logits
    model, text, exp = parity_model
    frames, feats = exp["frames_chw_rgb_0_255"], exp["clip_image_features"]
    c = int(exp["clip_length"])
    h, w = frames.shape[-2:]
    padded = ((h + 31) // 32 * 32, (w + 31) // 32 * 32)
    same = total = 0
    with torch.inference_mode():
        for s in range(0, frames.shape[0], c):
            args = (frames[s:s + c][None], feats[s:s + c][None], text)
            ref = model(*args).pred_masks[0]
            with torch.autocast("cpu", dtype=torch.bfloat16):
                low = model(*args).pred_masks[0].float()
            a = resize_mask_logits(ref, padded, (h, w), (h, w))
            b = resize_mask_logits(low, padded, (h, w), (h, w))
            same += int((a == b).sum())
            total += a.numel()
    print(f"bf16 masks agree on {same / total:.4%} of pixels")
    assert same / total >= 0.99, f"bf16 masks agree on {same / total:.3%} of pixels"


def test_gather_sampling_matches_grid_sample_with_gradients():
    g = torch.Generator().manual_seed(0)
    shapes = [(3, 5), (6, 4), (2, 2)]
    n, m, d, lv, p = 2, 2, 4, len(shapes), 3
    s = sum(h * w for h, w in shapes)
    value = torch.randn(n, s, m, d, generator=g)
    # locations inside, near and far off every border
    loc = torch.rand(n, 7, m, lv, p, 2, generator=g) * 1.6 - 0.3
    loc[0, 0, 0, 0, 0] = torch.tensor([-2.0, 0.5])
    loc[0, 1, 1, 2, 1] = torch.tensor([1.0, 1.0])
    attn = torch.rand(n, 7, m, lv, p, generator=g).softmax(-1)
    grad = torch.randn(n, 7, m * d, generator=g)
    results = []
    for fn in (ms_deform_attn_grid_sample, ms_deform_attn_core):
        inputs = [t.clone().requires_grad_() for t in (value, loc, attn)]
        out = fn(inputs[0], shapes, inputs[1], inputs[2])
        (out * grad).sum().backward()
        results.append([out.detach()] + [t.grad for t in inputs])
    for ref, ours, name in zip(*results, ("out", "d_value", "d_loc", "d_attn")):
        assert torch.allclose(ref, ours, atol=1e-4, rtol=1e-4), name


@pytest.mark.parametrize("per_head", [False, True])
def test_attention_matches_nn_multihead_attention(per_head):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4).eval()
    q, kv = torch.randn(5, 2, 16), torch.randn(9, 2, 16)
    blocked = torch.rand(2, 1, 5, 9) > 0.6
    blocked[..., 0] = False  # no row blocked everywhere
    per_head_mask = blocked.expand(-1, 4, -1, -1).flatten(0, 1)
    ref = mha(q, kv + 1, kv, attn_mask=per_head_mask, need_weights=False)[0]
    ours = attention(mha, q, kv + 1, kv, per_head_mask if per_head else blocked)
    assert torch.allclose(ref, ours, atol=1e-5)
    assert torch.allclose(mha(q, q, kv[:5], need_weights=False)[0], attention(mha, q, q, kv[:5]),
                          atol=1e-5)


def test_runtime_line_says_exact_agreeing_or_emulated(monkeypatch):
    """What the CLI's first line and the app's banner say for each device and dtype, with the
    CPU's flags as given (an AVX2-only CPU, one with AMX)."""
    from ovformer.inference import runtime
    monkeypatch.setattr(runtime, "_cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert runtime.describe_runtime("cpu", "fp32") == "cpu, fp32 (exact)"
    assert not runtime.native_dtype("cpu", "bf16") and runtime.fastest_dtype("cpu") == "fp32"
    line = runtime.describe_runtime("cpu", "bf16")
    assert line.startswith("cpu, bf16 (WARNING: this CPU has no AVX512-BF16 or AMX-BF16")
    assert "emulated" in line and "--dtype auto or fp32" in line
    assert "AVX512-FP16" in runtime.describe_runtime("cpu", "fp16")
    assert runtime.resolve_runtime("cpu", "auto") == (torch.device("cpu"), "fp32")
    assert runtime.resolve_runtime("cpu", "bf16") == (torch.device("cpu"), "bf16")
    monkeypatch.setattr(runtime, "_cpu_flags", lambda: frozenset({"avx2", "amx_bf16"}))
    assert runtime.native_dtype("cpu", "bf16") and not runtime.native_dtype("cpu", "fp16")
    assert runtime.resolve_runtime("cpu", "auto") == (torch.device("cpu"), "bf16")
    assert runtime.describe_runtime("cpu", "bf16") == (
        "cpu, bf16 (masks agree with fp32 on >= 99% of pixels; --dtype fp32 for exact output)")
    assert runtime.native_dtype("cuda:0", "fp16") and runtime.fastest_dtype("cuda:0") == "fp16"
    if not torch.cuda.is_available():
        assert runtime.resolve_runtime("auto", "auto")[0] == torch.device("cpu")


def test_clip_follows_bf16_only_where_the_cpu_has_bf16_units(monkeypatch):
    """encode_clip: float32 with fp32, and with bf16 where bf16 would be emulated (the same
    numbers); bf16 autocast where the CPU has the units (close to float32, not equal)."""
    import numpy as np

    from ovformer.inference import runtime
    from ovformer.inference.predictor import OVFormerVideoPredictor
    torch.manual_seed(0)
    pred = OVFormerVideoPredictor.from_pretrained(None, preset="tiny", untrained=True,
                                                  clip="tiny-random", dtype="bf16")
    rgb = list(np.random.default_rng(0).integers(0, 256, (2, 48, 64, 3), dtype=np.uint8))
    pred.dtype = "fp32"
    ref = pred.encode_clip(rgb)
    pred.dtype = "bf16"
    monkeypatch.setattr(runtime, "_cpu_flags", lambda: frozenset({"avx2"}))
    assert torch.equal(pred.encode_clip(rgb), ref)
    monkeypatch.setattr(runtime, "_cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    low = pred.encode_clip(rgb)
    assert low.dtype == torch.float32 and not torch.equal(low, ref)
    cos = torch.nn.functional.cosine_similarity(low, ref, dim=-1)
    assert cos.min() > 0.99, cos
