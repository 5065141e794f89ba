"""Training data: vocabulary union, frequencies, clip sampling, augmentation, batching; and
the solver's recipe defaults, parameter groups and schedule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.synthetic_ytvis import SyntheticSpec, write_synthetic_ytvis
from training.augment import ClipAugmentation, shorter_side_size
from training.data import (PIXEL_MEAN, ClipBatchStream, VideoClipDataset, build_vocabulary,
                           category_frequencies, load_ytvis_folder, sample_frame_indices)
from training.settings import TrainSettings, resolve
from training.solver import build_param_groups, lr_factor

SMALL = SyntheticSpec(num_videos=3, num_frames=6, height=48, width=64)


@pytest.fixture(scope="module")
def two_sets(tmp_path_factory) -> tuple[Path, Path]:
    a = tmp_path_factory.mktemp("a")
    write_synthetic_ytvis(a, seed=0, spec=SMALL)
    b = tmp_path_factory.mktemp("b")
    spec = SyntheticSpec(num_videos=2, num_frames=4, height=40, width=56, classes=(
        ("Red_Square", (220, 40, 40), "square"), ("purple circle", (150, 40, 200), "circle")))
    write_synthetic_ytvis(b, seed=1, spec=spec)
    return a, b


def test_synthetic_generator_is_deterministic(tmp_path):
    p1 = write_synthetic_ytvis(tmp_path / "x", seed=3, spec=SMALL)
    p2 = write_synthetic_ytvis(tmp_path / "y", seed=3, spec=SMALL)
    assert p1.read_text() == p2.read_text()
    d = json.loads(p1.read_text())
    assert d["annotations"] and all(len(a["segmentations"]) == v["length"]
                                    for a in d["annotations"] for v in d["videos"] if v["id"] == a["video_id"])
    assert (tmp_path / "x" / "JPEGImages" / d["videos"][0]["file_names"][0]).is_file()


def test_vocabulary_union_by_name_and_frequencies(two_sets):
    folders = [load_ytvis_folder(p) for p in two_sets]
    vocab = build_vocabulary(folders)
    # "Red_Square" merges with "red square"; "purple circle" is new and comes last
    assert vocab == ["red square", "green circle", "blue triangle", "yellow diamond", "purple circle"]
    freq = category_frequencies(folders, vocab)
    expected = torch.zeros(5)
    for f in folders:
        names = {c["id"]: c["name"].lower().replace("_", " ") for c in f.categories}
        for tracks in f.tracks.values():
            for n in {names[a["category_id"]] for a in tracks}:
                expected[vocab.index(n)] += 1
    assert torch.equal(freq, expected) and freq.sum() > 0


def test_frame_sampling_stays_near_the_reference():
    rng = np.random.default_rng(0)
    for _ in range(200):
        idx = sample_frame_indices(rng, 100, 3, 20)
        assert idx == sorted(idx) and len(idx) == 3 and max(idx) - min(idx) <= 40
    assert sample_frame_indices(rng, 1, 2, 20) == [0, 0]


def test_augmentation_is_clip_consistent():
    frames = [np.zeros((40, 60, 3), np.uint8) for _ in range(2)]
    masks = np.zeros((1, 2, 40, 60), bool)
    for t in range(2):
        frames[t][5:15, 2:12] = 255  # the object's pixels are white in both frames
        masks[0, t, 5:15, 2:12] = True
    aug = ClipAugmentation(min_sizes=(20, 30), max_size=1000, flip=True, crop=(0.7, 1.0))
    for seed in range(10):
        out_f, out_m = aug(np.random.default_rng(seed), frames, masks)
        assert out_f[0].shape == out_f[1].shape and out_m.shape[2:] == out_f[0].shape[:2]
        for t in range(2):  # the mask still covers exactly the bright pixels
            assert np.array_equal(out_m[0, t], out_m[0, 0])
            if out_m[0, t].any():
                assert out_f[t][out_m[0, t]].mean() > 200
    assert shorter_side_size(720, 1280, 360, 1333) == (360, 640)
    assert shorter_side_size(100, 1000, 360, 1333) == (133, 1333)


def test_batches_are_deterministic_and_padded(two_sets):
    folders = [load_ytvis_folder(p) for p in two_sets]
    ds = VideoClipDataset(folders, build_vocabulary(folders), ClipAugmentation((32, 40), 200, True), 2, 20)
    stream = ClipBatchStream(ds, batch_size=3, seed=5, rank=0, start=0, total=4)
    b1, b2 = stream.batch(2), stream.batch(2)
    assert torch.equal(b1.frames, b2.frames)
    assert all(torch.equal(x["masks"], y["masks"]) for x, y in zip(b1.targets, b2.targets))
    assert b1.frames.shape[:3] == (3, 2, 3)
    for (h, w), t in zip(b1.image_sizes, b1.targets):
        assert t["masks"].shape[1:] == b1.frames.shape[1:2] + b1.frames.shape[3:]
        assert t["masks"][..., h:, :].sum() == 0 and t["masks"][..., :, w:].sum() == 0
        assert len(t["labels"]) == len(t["masks"])
    padded = [(b, h, w) for b, (h, w) in enumerate(b1.image_sizes) if h < b1.frames.shape[3]]
    for b, h, _ in padded:
        assert torch.allclose(b1.frames[b, 0, :, h:, :].mean((1, 2)), torch.tensor(PIXEL_MEAN))
    # the stream yields the same batches as `batch(i)` from `start`, and ranks differ
    resumed = list(ClipBatchStream(ds, 3, 5, 0, 2, 4))
    assert torch.equal(resumed[0].frames, b1.frames)
    assert not torch.equal(ClipBatchStream(ds, 3, 5, 1, 0, 4).batch(2).frames, b1.frames)


@pytest.mark.parametrize("preset", ["r50-lvvis", "swinb-lvvis"])
def test_released_recipe_is_the_preset_default(preset):
    run = resolve(TrainSettings(data=[], out="x", preset=preset))
    r = run.recipe
    assert (run.iters, run.batch, run.lr, run.steps) == (2000, 8, 1e-4, (1000,))
    assert (run.num_frames, r.sampling_frame_range, run.min_sizes, run.max_size) == (2, 20, (360, 480), 1333)
    assert (run.num_points, r.oversample_ratio, r.importance_sample_ratio) == (12544, 3.0, 0.75)
    assert (r.weight_decay, run.backbone_multiplier, r.clip_gradients, r.amp) == (0.05, 0.1, 0.01, True)
    assert (r.warmup_iters, r.gamma, r.weight_decay_norm, r.weight_decay_embed) == (10, 0.1, 0.0, 0.0)
    assert (r.object_weight, r.class_weight, r.mask_weight, r.dice_weight) == (2.0, 2.0, 5.0, 5.0)
    assert (r.fed_loss_num_classes, r.fed_loss_freq_weight_power) == (50, 0.5)
    # a shorter run keeps the schedule's shape
    assert resolve(TrainSettings(data=[], out="x", preset=preset, iters=200)).steps == (100,)


def test_param_groups_and_schedule():
    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.GroupNorm(2, 4))
            self.query = torch.nn.Embedding(5, 4)
            self.head = torch.nn.Linear(4, 2)
            self.norm = torch.nn.LayerNorm(4)

    groups = build_param_groups(Toy(), 1e-4, 0.05, 0.1, 0.0, 0.0)
    by_size = {sum(p.numel() for p in g["params"]): (g["lr"], g["weight_decay"]) for g in groups}
    assert by_size[3 * 4 * 9 + 4] == pytest.approx((1e-5, 0.05))  # backbone conv
    assert by_size[8] == pytest.approx((1e-5, 0.0)) or by_size.get(8) is None  # backbone norm
    lrs = {(round(g["lr"], 8), g["weight_decay"]) for g in groups}
    assert lrs == {(1e-5, 0.05), (1e-5, 0.0), (1e-4, 0.0), (1e-4, 0.05)}
    assert lr_factor(0, (1000,), 0.1, 10, 1.0) == 1.0  # released warm-up factor 1: flat
    assert lr_factor(0, (1000,), 0.1, 10, 0.001) == pytest.approx(0.001)
    assert lr_factor(5, (1000,), 0.1, 10, 0.0) == pytest.approx(0.5)
    assert lr_factor(999, (1000,), 0.1, 10, 1.0) == 1.0
    assert lr_factor(1000, (1000,), 0.1, 10, 1.0) == pytest.approx(0.1)
