"""Benchmark (not a test): click latency of :meth:`QueryBank.candidates` and the disk cost of a
query bank, on a 300-frame 360p video's worth of synthetic query logits (100 queries).

    .venv/bin/python tests/bench_candidates.py [--frames 300] [--queries 100] [--classes 1196] [--raw]

Clicks land on random frames, so most read a clip not yet cached (the cold case). The synthetic
masks are soft ellipses whose background saturates, so the compressed size is a best case; a
real model's background logits are noisier (see the reply / README for measured numbers).

Prints the bank's bytes per frame, the time to write it, and per click: candidates() (median and
max over random clicks on random frames, 1 and 3 points), one candidate's mask on the clicked
frame at full size (what the app draws), and a whole full-resolution track (RLE per frame).
"""
from __future__ import annotations

import argparse
import math
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ovformer.inference.queries import QueryBank, QueryBankWriter


def _clip_logits(rng: np.random.Generator, centres: np.ndarray, radii: np.ndarray,
                 start: int, length: int, low: tuple[int, int]) -> np.ndarray:
    """(Q, t, h, w) logits of moving soft ellipses (8 inside, about -12 far outside)."""
    h, w = low
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((len(centres), length, h, w), np.float32)
    for t in range(length):
        f = start + t
        cx = (centres[:, 0] + 0.3 * f) % w
        cy = centres[:, 1]
        d = ((xx[None] - cx[:, None, None]) / radii[:, 0, None, None]) ** 2 + \
            ((yy[None] - cy[:, None, None]) / radii[:, 1, None, None]) ** 2
        out[:, t] = 8.0 - 10.0 * np.sqrt(d)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--classes", type=int, default=1196)
    ap.add_argument("--clip", type=int, default=5)
    ap.add_argument("--clicks", type=int, default=50)
    ap.add_argument("--dtype", default="int8", choices=["int8", "float16"])
    ap.add_argument("--raw", action="store_true", help="uncompressed, memory-mapped clip files")
    ap.add_argument("--dir", default=None, help="where the bank goes (a temporary folder)")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)

    out_size, image_size, padded = (360, 640), (360, 640), (384, 640)  # 360p, divisibility 32
    low = (padded[0] // 4, padded[1] // 4)
    rng = np.random.default_rng(0)
    centres = np.stack([rng.uniform(0, low[1], args.queries), rng.uniform(0, low[0], args.queries)], 1)
    radii = rng.uniform(4, 30, (args.queries, 2))
    tmp = Path(args.dir or tempfile.mkdtemp(prefix="bench-candidates-"))
    try:
        writer = QueryBankWriter(tmp / "bank", dtype=args.dtype, compress=not args.raw)
        t0 = time.perf_counter()
        for s in range(0, args.frames, args.clip):
            writer.add_clip(_clip_logits(rng, centres, radii, s, min(args.clip, args.frames - s), low))
        scores = rng.random((args.queries, args.classes), dtype=np.float32)
        bank = writer.finish(scores, padded, image_size, out_size)
        write_s = time.perf_counter() - t0
        size = bank.disk_bytes()
        print(f"bank: {args.frames} frames, {args.queries} queries, {args.dtype}{'' if args.raw else ' zlib'}, low-res {low}: "
              f"{size / 2**20:.1f} MiB = {size / args.frames / 2**20:.3f} MiB per frame "
              f"(written in {write_s:.1f} s, incl. generating the logits)")

        bank = QueryBank(tmp / "bank")  # fresh: nothing mapped yet
        H, W = out_size
        for npts in (1, 3):
            times, n_found = [], 0
            for _ in range(args.clicks):
                f = int(rng.integers(args.frames))
                pts = [(float(rng.uniform(0, W)), float(rng.uniform(0, H)), i == 0 or bool(rng.random() < 0.5))
                       for i in range(npts)]
                t = time.perf_counter()
                cands = bank.candidates(f, pts)
                times.append(time.perf_counter() - t)
                n_found += bool(cands)
            print(f"candidates(), {npts} point(s): median {1e3 * statistics.median(times):.2f} ms, "
                  f"max {1e3 * max(times):.2f} ms over {args.clicks} clicks "
                  f"({n_found} found a candidate)")
        f = args.frames // 2
        q = bank.candidates(f, [(W / 2, H / 2, True)], min_score=0.0)[0]
        t = time.perf_counter()
        q.frame_mask(f)
        print(f"one candidate's full-size mask on the clicked frame: "
              f"{1e3 * (time.perf_counter() - t):.1f} ms")
        t = time.perf_counter()
        segs = q.segmentations()
        dt = time.perf_counter() - t
        print(f"whole full-resolution track ({len(segs)} frames, RLE): {dt:.2f} s "
              f"({1e3 * dt / len(segs):.1f} ms per frame)")
    finally:
        if args.dir is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
