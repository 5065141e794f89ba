"""Learning test: the `tiny` preset, trained from scratch with a random tiny CLIP on
synthetic shape videos, reaches mAP >= 0.5 on held-out videos it never saw (and scores
near 0 untrained), on CPU in a few minutes."""

from __future__ import annotations

import time

import pytest
import torch

from tests.synthetic_ytvis import DEFAULT_CLASSES, SyntheticSpec, write_synthetic_ytvis
from training import TrainSettings, read_metrics
from training.loop import run_training

# 3 classes, up to 2 objects per video, frames of 64x96: the model's masks are 16x24.
SPEC = SyntheticSpec(num_videos=40, num_frames=10, height=64, width=96, max_objects=2,
                     size_range=(0.3, 0.5), classes=DEFAULT_CLASSES[:3])
HELD_OUT = SyntheticSpec(**{**SPEC.__dict__, "num_videos": 8})
ITERS = 200


@pytest.mark.slow
def test_tiny_learns_held_out_synthetic_videos(tmp_path):
    from ovformer.clip import load_clip
    from ovformer.factory import create_model
    from training.data import load_ytvis_folder
    from training.evaluation import evaluate_on_folder

    train, val = tmp_path / "train", tmp_path / "val"
    write_synthetic_ytvis(train, seed=11, spec=SPEC)
    write_synthetic_ytvis(val, seed=12, spec=HELD_OUT)  # other seed: videos never seen

    # the untrained model (same seed, so the same initial weights as the run below)
    torch.manual_seed(0)
    clip = load_clip("tiny-random")
    torch.manual_seed(0)
    untrained = evaluate_on_folder(create_model("tiny"), clip, load_ytvis_folder(val), min_size=64,
                                   max_size=256, clip_length=5, top_k=20, device=torch.device("cpu"))

    settings = TrainSettings(
        data=[str(train)], val=str(val), out=str(tmp_path / "run"), preset="tiny", clip="tiny-random",
        iters=ITERS, steps=(150,), batch=4, lr=5e-4, backbone_multiplier=1.0, min_sizes=(64,),
        eval_min_size=64, amp="off", checkpoint_period=0, log_period=10, seed=0)
    start = time.perf_counter()
    result = run_training(settings, progress_bar=False)
    minutes = (time.perf_counter() - start) / 60
    losses = [r["loss"] for r in read_metrics(tmp_path / "run") if "loss" in r]
    print(f"\nlearning test: untrained AP {untrained['AP']:.3f}, trained AP {result.last_eval['AP']:.3f} "
          f"(AP50 {result.last_eval['AP50']:.3f}) after {ITERS} iterations in {minutes:.1f} min; "
          f"loss {losses[0]:.1f} -> {losses[-1]:.1f}")
    assert untrained["AP"] < 0.05
    assert result.last_eval["AP"] >= 0.5
    assert losses[-1] < 0.5 * losses[0]
