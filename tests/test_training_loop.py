"""The training loop end to end on a very small model: run folder, checkpoint layout,
exact resume, stop requests, and 2-process data parallelism (gloo) with torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.synthetic_ytvis import SyntheticSpec, write_synthetic_ytvis
from training import TrainSettings, read_metrics, read_progress
from training.loop import run_training

ROOT = Path(__file__).resolve().parent.parent

# An official-layout (detectron2) config of a very small OVFormer: the loop reads model and
# recipe from it exactly as from a released config.
MICRO_YAML = """
MODEL:
  TIMM: {BASE_NAME: resnet18}
  MASK_FORMER: {HIDDEN_DIM: 32, NUM_OBJECT_QUERIES: 4, NHEADS: 2, DIM_FEEDFORWARD: 32, DEC_LAYERS: 3,
                TRAIN_NUM_POINTS: 64}
  SEM_SEG_HEAD: {CONVS_DIM: 32, MASK_DIM: 32, TRANSFORMER_ENC_LAYERS: 1,
                 DEFORMABLE_TRANSFORMER_ENCODER_N_HEADS: 2, DEFORMABLE_TRANSFORMER_ENCODER_N_POINTS: 2}
INPUT: {MIN_SIZE_TRAIN: [32], MAX_SIZE_TRAIN: 64, MIN_SIZE_TEST: 32, MAX_SIZE_TEST: 64}
SOLVER: {IMS_PER_BATCH: 2, BASE_LR: 0.001, MAX_ITER: 4, STEPS: [3], CLIP_GRADIENTS: {CLIP_VALUE: 1.0},
         AMP: {ENABLED: false}}
"""


@pytest.fixture(scope="module")
def micro(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("micro")
    write_synthetic_ytvis(root / "train", seed=0, spec=SyntheticSpec(num_videos=3, num_frames=5, height=32, width=48))
    write_synthetic_ytvis(root / "val", seed=1, spec=SyntheticSpec(num_videos=1, num_frames=3, height=32, width=48))
    (root / "micro.yaml").write_text(MICRO_YAML)
    return {"train": root / "train", "val": root / "val", "yaml": root / "micro.yaml"}


def _settings(micro, out: Path, **kw) -> TrainSettings:
    base = dict(data=[str(micro["train"])], out=str(out), preset=None, config=str(micro["yaml"]),
                clip="tiny-random", iters=4, log_period=1, checkpoint_period=0, seed=3)
    base.update(kw)
    return TrainSettings(**base)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


@pytest.mark.slow
def test_run_folder_resume_and_stop(micro, tmp_path):
    # uninterrupted run, with a validation set evaluated at the end
    full = run_training(_settings(micro, tmp_path / "full", val=str(micro["val"]), eval_min_size=32),
                        progress_bar=False)
    ckpt = torch.load(full.final_checkpoint, map_location="cpu", weights_only=True)
    assert full.final_checkpoint == tmp_path / "full" / "model_final.pth"
    assert ckpt["iteration"] == 4 and "optimizer" in ckpt
    assert ckpt["ovformer"]["clip"].startswith("tiny-random@") and len(ckpt["ovformer"]["vocabulary"]) == 4
    assert any(k.startswith("sem_seg_head.predictor.") for k in ckpt["model"])  # official layout
    records = read_metrics(tmp_path / "full")
    train = [r for r in records if "loss" in r]
    assert [r["iteration"] for r in train] == [1, 2, 3, 4]
    for key in ("loss", "loss_ce", "loss_object_ce", "loss_mask", "loss_dice", "lr", "iter_time_s",
                "samples_per_s"):
        assert key in train[0]
    # STEPS [3]: the 4th iteration (0-based 3) runs at lr x 0.1; no --init, so the base lr is
    # the from-scratch default 5e-4, not the YAML's fine-tuning BASE_LR
    assert [r["lr"] for r in train] == pytest.approx([5e-4, 5e-4, 5e-4, 5e-5])
    evals = [r for r in records if "eval" in r]
    assert evals and "AP" in evals[-1]["eval"] and (tmp_path / "full" / "eval").is_dir()
    assert read_progress(tmp_path / "full")["state"] == "finished"
    cfg = json.loads((tmp_path / "full" / "config.json").read_text())
    assert cfg["settings"]["iters"] == 4 and cfg["vocabulary"]

    # interrupted after 2 iterations by the progress callback, then resumed
    stopped = run_training(_settings(micro, tmp_path / "part"), progress_bar=False,
                           progress_callback=lambda p: p.iteration < 2)
    assert stopped.stopped and stopped.iteration == 2 and stopped.final_checkpoint is None
    assert (tmp_path / "part" / "model_0000001.pth").is_file()
    resumed = run_training(_settings(micro, tmp_path / "part", resume=True), progress_bar=False)
    assert resumed.iteration == 4 and not resumed.stopped
    a, b = _weights(full.final_checkpoint), _weights(resumed.final_checkpoint)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resume differs from the uninterrupted run"
    losses_full = [r["loss"] for r in records if "loss" in r]
    losses_part = [r["loss"] for r in read_metrics(tmp_path / "part") if "loss" in r]
    assert losses_part == losses_full


@pytest.mark.slow
def test_cli_and_final_checkpoint_loads_in_the_predictor(micro, tmp_path):
    import warnings

    from ovformer.inference.predictor import OVFormerVideoPredictor
    from training.cli import main

    out = tmp_path / "run"
    rc = main(["train", "--data", str(micro["train"]), "--config", str(micro["yaml"]), "--clip", "tiny-random",
               "--iters", "2", "--batch", "2", "--out", str(out), "--no-progress", "--log-period", "1"])
    assert rc == 0 and (out / "model_final.pth").is_file()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. a CLIP mismatch warning would fail the test
        pred = OVFormerVideoPredictor.from_pretrained(str(out / "model_final.pth"), clip="tiny-random")
    assert pred.default_text.vocabulary.names == ["red square", "green circle", "blue triangle",
                                                  "yellow diamond"]
    assert pred.model.decoder.num_queries == 4 if hasattr(pred.model.decoder, "num_queries") else True


@pytest.mark.slow
def test_torchrun_two_processes_keep_identical_weights(micro, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "training",
           "train", "--data", str(micro["train"]), "--config", str(micro["yaml"]), "--clip", "tiny-random",
           "--iters", "3", "--batch", "2", "--out", str(out), "--no-progress", "--log-period", "1",
           "--device", "cpu"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    final = [r for r in read_metrics(out) if "rank_fingerprints" in r][-1]
    fps = final["rank_fingerprints"]
    assert len(fps) == 2 and fps[0] == fps[1], fps
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["resolved"]["world_size"] == 2
    # the weights moved: a step happened on both ranks
    assert (out / "model_final.pth").is_file()


@pytest.mark.slow
def test_start_run_in_background_then_read_metrics(micro, tmp_path):
    """What the app does: start a run in another process, poll it, read its metrics."""
    from training import read_progress, start_run

    handle = start_run(_settings(micro, tmp_path / "bg", iters=2), env={"OMP_NUM_THREADS": "1"})
    assert handle.wait(timeout=600) == 0, (tmp_path / "bg" / "train.log").read_text()[-3000:]
    assert not handle.running()
    assert read_progress(tmp_path / "bg")["state"] == "finished"
    assert [r["iteration"] for r in read_metrics(tmp_path / "bg") if "loss" in r] == [1, 2]
    assert (tmp_path / "bg" / "model_final.pth").is_file()


def test_amp_auto_is_the_official_fp16_on_cuda_and_bf16_only_on_bf16_cpus(monkeypatch):
    """--amp auto: fp16 with loss scaling on CUDA as the official recipe (SOLVER.AMP); on a CPU,
    bf16 only where it has bf16 units (an AVX2 CPU emulates it), full precision elsewhere."""
    import pytest

    from ovformer.inference import runtime
    from training.settings import amp_dtype
    monkeypatch.setattr(runtime, "_cpu_flags", lambda: frozenset({"avx2"}))
    assert amp_dtype("auto", True, "cuda") == "float16"
    assert amp_dtype("auto", True, "cpu") is None
    assert amp_dtype("auto", False, "cuda") is None and amp_dtype("off", True, "cuda") is None
    assert amp_dtype("bf16", True, "cpu") == "bfloat16"  # asked for: given, even emulated
    with pytest.raises(ValueError):
        amp_dtype("fp16", True, "cpu")
    monkeypatch.setattr(runtime, "_cpu_flags", lambda: frozenset({"avx2", "amx_bf16"}))
    assert amp_dtype("auto", True, "cpu") == "bfloat16"
