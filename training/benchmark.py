"""Time training iterations of a preset: `python -m training.benchmark --preset r50-lvvis`.

Runs the real step (`loop._train_step`: forward, matching + losses on every layer,
backward, clipping, AdamW) on random clips of the requested size with two random
instances each, and prints seconds per iteration (the first, warm-up iteration excluded).
CLIP is outside the timed step (its frame embeddings are cached per file during training).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from ovformer.factory import create_model, resolve_config
from training.criterion import VideoSetCriterion
from training.data import ClipBatch
from training.loop import _train_step
from training.matcher import VideoHungarianMatcher
from training.settings import RELEASED_NO_OBJECT_WEIGHT, amp_dtype
from training.solver import build_optimizer


class _FixedEmbeds:
    """Stands in for the CLIP cache: random (B, T, D) frame embeddings."""

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def __call__(self, frame_paths: list[list[str]], device: torch.device) -> torch.Tensor:
        return torch.randn(len(frame_paths), len(frame_paths[0]), self.dim, device=device)


def benchmark(preset: str, height: int, width: int, frames: int = 2, batch: int = 1, iters: int = 3,
              num_classes: int = 50, amp: str = "off", device: str = "cpu") -> dict:
    """Seconds per training iteration of ``preset`` on (batch, frames, 3, height, width) clips.

    Returns:
        {"preset", "shape", "amp", "iter_s" (mean after warm-up), "all_s" (every iteration)}.
    """
    torch.manual_seed(0)
    dev = torch.device(device)
    cfg = resolve_config(preset)
    r = cfg.train
    model = create_model(cfg).to(dev).train()
    opt = build_optimizer(model, r.base_lr, r.weight_decay, r.backbone_multiplier, r.weight_decay_norm,
                          r.weight_decay_embed)
    matcher = VideoHungarianMatcher(r.class_weight, r.mask_weight, r.dice_weight, r.train_num_points)
    crit = VideoSetCriterion(num_classes, matcher, torch.ones(num_classes),
                             {"loss_object_ce": r.object_weight, "loss_ce": r.class_weight,
                              "loss_mask": r.mask_weight, "loss_dice": r.dice_weight},
                             RELEASED_NO_OBJECT_WEIGHT, r.train_num_points, r.oversample_ratio,
                             r.importance_sample_ratio, r.fed_loss_num_classes).to(dev)
    text = torch.nn.functional.normalize(torch.randn(num_classes, cfg.clip_dim), dim=-1).to(dev)
    hp, wp = -(-height // 32) * 32, -(-width // 32) * 32
    dtype = amp_dtype(amp, True, dev.type)
    times = []
    for _ in range(iters + 1):
        masks = torch.zeros(2, frames, hp, wp)
        masks[0, :, : height // 2, : width // 2] = 1
        masks[1, :, height // 2 : height, width // 2 : width] = 1
        b = ClipBatch(torch.rand(batch, frames, 3, height, width) * 255,
                      [{"labels": torch.tensor([0, 1]), "masks": masks} for _ in range(batch)],
                      [(height, width)] * batch, [["x"] * frames] * batch)
        t = time.perf_counter()
        _train_step(model, crit, opt, None, b, _FixedEmbeds(cfg.clip_dim), text, dev, dtype, r.clip_gradients)
        times.append(time.perf_counter() - t)
    return {"preset": preset, "shape": [batch, frames, 3, height, width], "amp": dtype or "fp32",
            "threads": torch.get_num_threads(), "iter_s": sum(times[1:]) / iters, "all_s": times}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--size", type=int, nargs=2, default=(360, 640), metavar=("H", "W"))
    p.add_argument("--frames", type=int, default=2)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--amp", default="off", choices=["off", "bf16", "fp16", "auto"])
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    print(json.dumps(benchmark(a.preset, a.size[0], a.size[1], a.frames, a.batch, a.iters, amp=a.amp,
                               device=a.device)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
