"""Learning test: `ovformer train --data D --preset tiny --clip tiny-random --iters 600`, with
no other training option (the from-scratch defaults), learns synthetic shape videos: mAP
>= 0.5 on held-out videos it never saw, from ~0 untrained. About 4 minutes on a quiet 2-core CPU.

Runnable alone for the numbers: ``python -m tests.test_training_learning [OUT_DIR]``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from tests.synthetic_ytvis import DEFAULT_CLASSES, SyntheticSpec, write_synthetic_ytvis

# 3 classes, up to 2 objects per video; 96x144 frames are padded to 96x160 by the model
# (144 is not a multiple of 32), so the targets' padding matters here too.
SPEC = SyntheticSpec(num_videos=40, num_frames=10, height=96, width=144, max_objects=2,
                     size_range=(0.3, 0.5), classes=DEFAULT_CLASSES[:3])
HELD_OUT = SyntheticSpec(**{**SPEC.__dict__, "num_videos": 8})
COMMAND = ["train", "--preset", "tiny", "--clip", "tiny-random", "--iters", "600"]


def _evaluate(checkpoint: Path | None, val: Path) -> dict:
    """YouTube-VIS AP of a checkpoint (None: the untrained model the run starts from) at the
    preset's test settings."""
    from ovformer.api import load_model
    from ovformer.clip import load_clip
    from ovformer.factory import create_model, resolve_config
    from training.data import load_ytvis_folder
    from training.evaluation import evaluate_on_folder

    cfg = resolve_config("tiny")
    if checkpoint is None:
        torch.manual_seed(0)  # the run's seed: the same initial weights
        model = create_model(cfg)
    else:
        model = load_model(checkpoint).model
    return evaluate_on_folder(model, load_clip("tiny-random"), load_ytvis_folder(val), min_size=cfg.min_size_test,
                              max_size=cfg.max_size_test, clip_length=cfg.clip_length, top_k=cfg.test_topk,
                              device=torch.device("cpu"))


def learn(root: Path) -> dict:
    """Write the data, run the command, evaluate; returns the numbers."""
    from training import read_metrics
    from training.cli import main

    train, val, run = root / "train", root / "val", root / "run"
    write_synthetic_ytvis(train, seed=11, spec=SPEC)
    write_synthetic_ytvis(val, seed=12, spec=HELD_OUT)  # other seed: videos never seen
    untrained = _evaluate(None, val)
    start = time.perf_counter()
    assert main(COMMAND + ["--data", str(train), "--out", str(run), "--no-progress"]) == 0
    minutes = (time.perf_counter() - start) / 60
    trained = _evaluate(run / "model_final.pth", val)
    losses = [r["loss"] for r in read_metrics(run) if "loss" in r]
    resolved = json.loads((run / "config.json").read_text())["resolved"]
    return {"untrained_AP": untrained["AP"], "AP": trained["AP"], "AP50": trained["AP50"],
            "train_minutes": minutes, "first_loss": losses[0], "last_loss": losses[-1], "resolved": resolved}


@pytest.mark.slow
def test_tiny_learns_held_out_synthetic_videos_with_default_settings(tmp_path):
    r = learn(tmp_path)
    print(f"\nlearning test: untrained AP {r['untrained_AP']:.3f}, trained AP {r['AP']:.3f} (AP50 {r['AP50']:.3f}) "
          f"after 600 iterations in {r['train_minutes']:.1f} min; loss {r['first_loss']:.1f} -> {r['last_loss']:.1f}")
    # the from-scratch defaults were used (no --init)
    assert (r["resolved"]["lr"], r["resolved"]["backbone_multiplier"], r["resolved"]["from_scratch"]) == (5e-4, 1.0, True)
    assert r["untrained_AP"] < 0.05
    assert r["AP"] >= 0.5
    assert r["last_loss"] < 0.5 * r["first_loss"]


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="learn-"))
    print(json.dumps(learn(out), indent=1))
