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
from training.data import (PIXEL_MEAN, ClipBatchStream, NovelRemoval, VideoClipDataset, build_vocabulary,
                           category_frequencies, load_ytvis_folder, remove_novel, sample_frame_indices)
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


def test_vocabulary_union_by_name(two_sets):
    folders = [load_ytvis_folder(p) for p in two_sets]
    # "Red_Square" merges with "red square"; "purple circle" is new and comes last
    assert build_vocabulary(folders) == ["red square", "green circle", "blue triangle", "yellow diamond",
                                         "purple circle"]


def lvvis_like(tmp_path: Path) -> Path:
    """Videos 0, 1, 2 of 5, 3 and 10 frames; LV-VIS partitions (2 and 3 are novel).
    Tracks: cat x2 in video 0 and cat in 1; dog in 2 plus a crowd dog in 1; fox (novel) in 0;
    owl (novel) in 2; yak never annotated."""
    def ann(i, video, cat, length, crowd=0):
        return {"id": i, "video_id": video, "category_id": cat, "iscrowd": crowd,
                "segmentations": [None] * length}
    data = {
        "videos": [{"id": i, "length": n, "width": 8, "height": 8,
                    "file_names": [f"v{i}/{t:05d}.jpg" for t in range(n)]} for i, n in ((0, 5), (1, 3), (2, 10))],
        "categories": [{"id": 1, "name": "cat", "partition": 0}, {"id": 2, "name": "dog", "partition": 1},
                       {"id": 3, "name": "fox", "partition": 2}, {"id": 4, "name": "owl", "partition": 3},
                       {"id": 5, "name": "yak", "partition": 0}],
        "annotations": [ann(1, 0, 1, 5), ann(2, 0, 1, 5), ann(3, 1, 1, 3), ann(4, 2, 2, 10),
                        ann(5, 1, 2, 3, crowd=1), ann(6, 0, 3, 5), ann(7, 2, 4, 10)],
    }
    (tmp_path / "train_instances.json").write_text(json.dumps(data))
    return tmp_path


def test_frequencies_count_frames_of_videos_as_the_official_cat_info(tmp_path):
    """tools/get_lvvis_cat_info.py: image_count = sum of `length` over the distinct videos
    with an annotation of the category (crowd too); the criterion samples with count ** 0.5."""
    folder = load_ytvis_folder(lvvis_like(tmp_path))
    vocab = build_vocabulary([folder])
    assert vocab == ["cat", "dog", "fox", "owl", "yak"]
    # cat: videos 0 (twice, counted once) and 1 -> 5 + 3; dog: 10 + 3 (crowd); fox 5; owl 10
    assert category_frequencies([folder], vocab).tolist() == [8, 13, 5, 10, 0]
    kept, removed = remove_novel(folder)
    freq = category_frequencies([kept], vocab)
    assert freq.tolist() == [8, 13, 0, 0, 0]
    from training.criterion import VideoSetCriterion
    from training.matcher import VideoHungarianMatcher

    crit = VideoSetCriterion(5, VideoHungarianMatcher(), freq)
    assert crit.fed_weight.tolist() == pytest.approx([8 ** 0.5, 13 ** 0.5, 0, 0, 0])


def test_novel_categories_are_left_out_by_default(tmp_path):
    """As tools/remove_lvvis_novel.py: annotations of partitions 2 and 3 go, categories stay."""
    folder = load_ytvis_folder(lvvis_like(tmp_path))
    kept, removed = remove_novel(folder)
    assert (removed.annotations, removed.categories) == (2, ["fox", "owl"])
    assert [a["id"] for a in kept.data["annotations"]] == [1, 2, 3, 4, 5]
    assert kept.categories == folder.categories  # the vocabulary does not change
    assert [a["id"] for a in kept.tracks[0]] == [1, 2] and [a["id"] for a in kept.tracks[2]] == [4]
    assert len(folder.data["annotations"]) == 7  # the input is left as it was
    # more categories by name or id ("1" = cat: its 3 tracks)
    assert remove_novel(folder, ["Dog"])[1].annotations == 4
    assert remove_novel(folder, ["1"])[1] == NovelRemoval(5, ["cat", "fox", "owl"])
    # the CLI: on by default, --keep-novel keeps everything
    from training.cli import build_parser, settings_from_args

    args = ["--data", "d", "--out", "o"]
    s = settings_from_args(build_parser().parse_args(args))
    assert (s.keep_novel, s.novel_categories) == (False, None)
    s = settings_from_args(build_parser().parse_args(args + ["--keep-novel", "--novel-category", "cat"]))
    assert (s.keep_novel, s.novel_categories) == (True, ["cat"])
    assert TrainSettings.from_dict(s.to_dict()) == s


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
    # padded to the model's grid (multiples of 32), beyond the largest clip
    assert b1.frames.shape[-2] % 32 == 0 and b1.frames.shape[-1] % 32 == 0
    assert b1.frames.shape[-1] - max(w for _, w in b1.image_sizes) in range(1, 32)
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
    run = resolve(TrainSettings(data=[], out="x", preset=preset, init=preset))  # fine-tuning
    r = run.recipe
    assert (run.iters, run.batch, run.lr, run.steps) == (2000, 8, 1e-4, (1000,))
    assert (run.num_frames, r.sampling_frame_range, run.min_sizes, run.max_size) == (2, 20, (360, 480), 1333)
    assert (run.num_points, r.oversample_ratio, r.importance_sample_ratio) == (12544, 3.0, 0.75)
    assert (r.weight_decay, run.backbone_multiplier, r.clip_gradients, r.amp) == (0.05, 0.1, 0.01, True)
    assert (r.warmup_iters, r.gamma, r.weight_decay_norm, r.weight_decay_embed) == (10, 0.1, 0.0, 0.0)
    assert (r.object_weight, r.class_weight, r.mask_weight, r.dice_weight) == (2.0, 2.0, 5.0, 5.0)
    assert (r.fed_loss_num_classes, r.fed_loss_freq_weight_power) == (50, 0.5)
    # a shorter run keeps the schedule's shape
    assert resolve(TrainSettings(data=[], out="x", preset=preset, init=preset, iters=200)).steps == (100,)
    # from scratch (no init) the backbone learns at the full rate, with a higher base lr
    scratch = resolve(TrainSettings(data=[], out="x", preset=preset))
    assert (scratch.lr, scratch.backbone_multiplier, scratch.from_scratch) == (5e-4, 1.0, True)
    assert resolve(TrainSettings(data=[], out="x", preset=preset, lr=2e-4,
                                 backbone_multiplier=0.5)).lr == 2e-4  # explicit values win


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
