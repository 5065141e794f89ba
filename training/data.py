"""YouTube-VIS training data: several folders, one name-matched vocabulary, clip batches.

Any YouTube-VIS layout works (the app's exports, YTVIS-2019/2021, LV-VIS, OVIS). Categories
are matched across datasets by normalised name, so datasets with different vocabularies
mix: the union of names is the training vocabulary, embedded once with CLIP. The federated
loss needs category frequencies; they are counted here from the training data itself
(videos containing the category, like LV-VIS's `image_count`), so no metadata file is needed.

Sampling is a pure function of (seed, rank, iteration): resuming at iteration i replays
exactly the batches an uninterrupted run would have seen, with no sampler state to save.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image

# find_annotation_file is also used from here by the app (held-out annotation files)
from ovformer.vocab import name_key
from ovformer.ytvis.rle import decode_rle
from ovformer.ytvis.dataset import find_annotation_file, frame_file_name, image_root  # noqa: F401
from training.augment import ClipAugmentation

#: RGB pixel mean of the model's input normalisation; padding with it gives zeros after
#: normalisation, which is what detectron2's ImageList padding of normalised images gives.
PIXEL_MEAN = (123.675, 116.28, 103.53)


#: Key used to match category names across datasets ("Bow_(weapon)" == "bow weapon"): the
#: library's one rule (ovformer.vocab.name_key).
normalize_name = name_key


@dataclass
class YTVISFolder:
    """One YouTube-VIS dataset on disk.

    Attributes:
        annotation_file: the ground-truth JSON.
        image_root: folder the videos' `file_names` are relative to.
        data: the parsed JSON (videos, annotations, categories).
        tracks: video id -> its non-crowd annotations (one per track).
    """

    annotation_file: Path
    image_root: Path
    data: dict
    tracks: dict[int, list[dict]] = field(default_factory=dict)

    @property
    def videos(self) -> list[dict]:
        return self.data["videos"]

    @property
    def categories(self) -> list[dict]:
        return self.data["categories"]


def load_ytvis_folder(path: str | Path) -> YTVISFolder:
    """Read a YouTube-VIS / LV-VIS dataset: a folder or its annotation JSON, found as every
    reader finds it (`ovformer.ytvis.dataset`: annotations.json, train.json, valid.json,
    train_instances.json, val_instances.json, ... and JPEGImages/ or the official layouts).
    Windows separators in ``file_names`` are normalised here, once."""
    ann = find_annotation_file(path)
    data = json.loads(ann.read_text())
    for v in data["videos"]:
        v["file_names"] = [frame_file_name(n) for n in v.get("file_names") or []]
    probe = next((v["file_names"][0] for v in data["videos"] if v["file_names"]), None)
    root = image_root(ann, probe)
    tracks: dict[int, list[dict]] = {v["id"]: [] for v in data["videos"]}
    for a in data.get("annotations", []):
        if a.get("iscrowd", 0) == 0:  # the released mapper drops crowd regions in training
            tracks.setdefault(a["video_id"], []).append(a)
    return YTVISFolder(ann, root, data, tracks)


def build_vocabulary(folders: Sequence[YTVISFolder]) -> list[str]:
    """Union of category names over datasets, in order of first appearance (dataset order,
    then category id), spelled as the first dataset spells them (``aerosol_can``; CLIP reads
    them through ``Vocabulary``). Names equal after `normalize_name` merge."""
    names: dict[str, str] = {}
    for f in folders:
        for c in sorted(f.categories, key=lambda c: c["id"]):
            names.setdefault(normalize_name(c["name"]), c["name"])
    return list(names.values())


#: LV-VIS category partitions left out of training (0/1 are base, 2/3 novel: the official
#: tools/remove_lvvis_novel.py and the evaluator's base/novel split)
NOVEL_PARTITIONS = (2, 3)


@dataclass
class NovelRemoval:
    """What `remove_novel` left out of one dataset."""

    annotations: int  # annotations (tracks) dropped
    categories: list[str]  # names of the categories whose annotations were dropped


def novel_category_ids(folder: YTVISFolder, extra: Sequence[int | str] = ()) -> set[int]:
    """Ids of the categories of ``folder`` to leave out of training: LV-VIS partitions 2 and
    3 (categories with a ``partition`` field), plus ``extra`` given as category ids or names
    (matched by `normalize_name`; a string of digits is an id)."""
    ids = {int(c["id"]) for c in folder.categories if c.get("partition") in NOVEL_PARTITIONS}
    names = {normalize_name(str(x)) for x in extra if not str(x).strip().isdigit()}
    numbers = {int(str(x).strip()) for x in extra if str(x).strip().isdigit()}
    ids |= {int(c["id"]) for c in folder.categories if c["id"] in numbers or normalize_name(c["name"]) in names}
    return ids


def remove_novel(folder: YTVISFolder, extra: Sequence[int | str] = ()) -> tuple[YTVISFolder, NovelRemoval]:
    """The dataset without the annotations of its novel categories (`novel_category_ids`).

    As the official tools/remove_lvvis_novel.py (which writes train_instances_nonovel.json),
    only annotations go: the categories stay, so the vocabulary is unchanged, and they get
    frequency 0 (`category_frequencies`), so the federated loss never samples them as
    negatives either. Videos left without tracks stay (the LV-VIS config does not filter
    empty videos: FILTER_EMPTY_ANNOTATIONS False).
    """
    novel = novel_category_ids(folder, extra)
    anns = folder.data.get("annotations", [])
    kept = [a for a in anns if a["category_id"] not in novel]
    dropped_cats = sorted({a["category_id"] for a in anns if a["category_id"] in novel})
    names = {c["id"]: c["name"] for c in folder.categories}
    data = {**folder.data, "annotations": kept} if "annotations" in folder.data else dict(folder.data)
    tracks = {vid: [a for a in ts if a["category_id"] not in novel] for vid, ts in folder.tracks.items()}
    return (YTVISFolder(folder.annotation_file, folder.image_root, data, tracks),
            NovelRemoval(len(anns) - len(kept), [names[i] for i in dropped_cats]))


def category_frequencies(folders: Sequence[YTVISFolder], vocabulary: Sequence[str]) -> torch.Tensor:
    """(K,) float: the official LV-VIS ``image_count`` of each vocabulary category, the
    number of *frames* of the training videos in which the category has a track.

    As tools/get_lvvis_cat_info.py: each video containing the category counts once with its
    ``length`` (the number of its frames, not of the frames the track is visible in), however
    many tracks of the category it has; crowd annotations count as well. The criterion samples federated negatives with
    probability proportional to ``freq ** 0.5`` (`load_class_freq(..., 0.5)`); a category
    without training annotations (novel, or absent) has 0 and is never sampled.
    (The official script looks videos up as ``videos[video_id]``, a list index, which is
    the video with that id only because LV-VIS numbers videos 0, 1, ...; here by id.)
    """
    index = {normalize_name(n): i for i, n in enumerate(vocabulary)}
    counts = torch.zeros(len(vocabulary), dtype=torch.float64)
    for f in folders:
        cat_name = {c["id"]: normalize_name(c["name"]) for c in f.categories}
        length = {v["id"]: int(v.get("length") or len(v["file_names"])) for v in f.videos}
        videos_of: dict[int, set[int]] = {}  # category -> videos (crowd annotations count too)
        for a in f.data.get("annotations", []):
            videos_of.setdefault(index[cat_name[a["category_id"]]], set()).add(a["video_id"])
        for k, vids in videos_of.items():
            counts[k] += sum(length[v] for v in vids)
    return counts.float()


def sample_frame_indices(rng: np.random.Generator, length: int, num_frames: int, frame_range: int) -> list[int]:
    """Frame indices of a training clip, sorted: a uniformly random reference frame plus
    ``num_frames - 1`` frames drawn (with replacement, as released) within
    ``+-frame_range`` of it, the reference excluded. A 1-frame video repeats its frame."""
    ref = int(rng.integers(0, length))
    near = [i for i in range(max(0, ref - frame_range), min(length, ref + frame_range + 1)) if i != ref]
    if not near:
        near = [ref]
    others = rng.choice(np.asarray(near), size=num_frames - 1, replace=True).tolist()
    return sorted(others + [ref])


@dataclass
class TrainClip:
    """One augmented training clip.

    Attributes:
        frames: (T, 3, H, W) float32 RGB 0..255.
        labels: (N,) int64 vocabulary indices of the instances visible in the clip.
        masks: (N, T, H, W) bool; an instance absent from a frame has an empty mask there.
        frame_paths: T image files, the keys of the (un-augmented) CLIP frame embeddings.
    """

    frames: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    frame_paths: list[str] = field(default_factory=list)


@dataclass
class ClipBatch:
    """A padded batch.

    Attributes:
        frames: (B, T, 3, Hp, Wp) float32 RGB 0..255, padded bottom/right with PIXEL_MEAN to
            the model's grid (a multiple of its size_divisibility, see `collate_clips`).
        targets: B dicts with "labels" (N_b,) int64 and "masks" (N_b, T, Hp, Wp) float32.
        image_sizes: B (h, w) sizes before padding.
        frame_paths: B lists of T image files (CLIP embedding keys).
    """

    frames: torch.Tensor
    targets: list[dict[str, torch.Tensor]]
    image_sizes: list[tuple[int, int]]
    frame_paths: list[list[str]] = field(default_factory=list)

    def pin_memory(self) -> "ClipBatch":
        """Page-locked copies (the DataLoader calls this with ``pin_memory=True``), so that the
        ``non_blocking`` copies to the GPU overlap the step in flight."""
        return ClipBatch(self.frames.pin_memory(),
                         [{k: v.pin_memory() for k, v in t.items()} for t in self.targets],
                         self.image_sizes, self.frame_paths)


class VideoClipDataset:
    """Draws augmented clips from several YouTube-VIS folders with a shared vocabulary.

    Args:
        folders: datasets from `load_ytvis_folder`.
        vocabulary: category display names (e.g. from `build_vocabulary`); every category of
            every folder must be in it, by normalised name.
        augmentation: the per-clip transform.
        num_frames: frames per clip (T).
        frame_range: the other frames lie within +-frame_range of the reference frame.
    """

    def __init__(self, folders: Sequence[YTVISFolder], vocabulary: Sequence[str],
                 augmentation: ClipAugmentation, num_frames: int = 2, frame_range: int = 20) -> None:
        index = {normalize_name(n): i for i, n in enumerate(vocabulary)}
        self.folders = list(folders)
        self.augmentation = augmentation
        self.num_frames = num_frames
        self.frame_range = frame_range
        self._label: list[dict[int, int]] = []
        for f in self.folders:
            missing = [c["name"] for c in f.categories if normalize_name(c["name"]) not in index]
            if missing:
                raise ValueError(f"{f.annotation_file}: categories not in the vocabulary: {missing[:5]}")
            self._label.append({c["id"]: index[normalize_name(c["name"])] for c in f.categories})
        # videos with at least one frame; (folder index, video dict)
        self.items = [(i, v) for i, f in enumerate(self.folders) for v in f.videos if v["file_names"]]
        if not self.items:
            raise ValueError("no videos in the training data")

    def __len__(self) -> int:
        return len(self.items)

    def clip(self, rng: np.random.Generator, index: int) -> TrainClip:
        """Draw frames of video ``index`` with ``rng`` and return the augmented clip."""
        fi, video = self.items[index]
        folder = self.folders[fi]
        idx = sample_frame_indices(rng, len(video["file_names"]), self.num_frames, self.frame_range)
        paths = [str(folder.image_root / video["file_names"][t]) for t in idx]
        frames = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
        h, w = frames[0].shape[:2]
        tracks = [a for a in folder.tracks.get(video["id"], [])
                  if any(a["segmentations"][t] for t in idx if t < len(a["segmentations"]))]
        masks = np.zeros((len(tracks), len(idx), h, w), dtype=bool)
        for n, a in enumerate(tracks):
            for j, t in enumerate(idx):
                seg = a["segmentations"][t] if t < len(a["segmentations"]) else None
                m = decode_rle(seg, h, w) if seg else None
                if m is not None:
                    masks[n, j] = m[:h, :w]
        frames, masks = self.augmentation(rng, frames, masks)
        # a crop can remove an instance from every frame: it is then not a target
        keep = masks.reshape(len(tracks), -1).any(axis=1) if len(tracks) else np.zeros(0, bool)
        labels = [self._label[fi][a["category_id"]] for a, k in zip(tracks, keep) if k]
        return TrainClip(
            frames=torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float(),
            labels=torch.tensor(labels, dtype=torch.int64),
            masks=torch.from_numpy(masks[keep]),
            frame_paths=paths,
        )


def padded_size(h: int, w: int, size_divisibility: int = 32) -> tuple[int, int]:
    """(Hp, Wp): ``(h, w)`` rounded up to a multiple of ``size_divisibility``, the grid the
    model pads its input to (`OVFormer.preprocess`); its masks are (Hp/4, Wp/4)."""
    d = max(int(size_divisibility), 1)
    return -(-h // d) * d, -(-w // d) * d


def collate_clips(clips: Sequence[TrainClip], size_divisibility: int = 32) -> ClipBatch:
    """Pad clips to one size and stack them.

    Frames and target masks are both padded (bottom/right) to the batch maximum rounded up
    to ``size_divisibility``: the model pads its input to that grid anyway, and the
    criterion samples predictions and targets at the same normalised coordinates, so the
    targets must cover exactly the predicted grid (the released `prepare_targets` pads the
    masks to the padded image tensor's size). A target only padded to the batch maximum
    would be stretched over the padding, e.g. by 24 rows for a 360x640 clip.

    Args:
        clips: B clips, frames (T, 3, h_b, w_b).
        size_divisibility: the model config's ``size_divisibility`` (32 for every preset).

    Returns:
        A `ClipBatch` with frames (B, T, 3, Hp, Wp) and masks (N_b, T, Hp, Wp).
    """
    hs = [c.frames.shape[-2] for c in clips]
    ws = [c.frames.shape[-1] for c in clips]
    hm, wm = padded_size(max(hs), max(ws), size_divisibility)
    t = clips[0].frames.shape[0]
    # PIXEL_MEAN normalises to exactly 0, the value the model pads with
    frames = torch.tensor(PIXEL_MEAN).view(1, 1, 3, 1, 1).repeat(len(clips), t, 1, hm, wm)
    targets = []
    for b, c in enumerate(clips):
        h, w = c.frames.shape[-2:]
        frames[b, :, :, :h, :w] = c.frames
        masks = torch.zeros(len(c.labels), t, hm, wm)
        masks[:, :, :h, :w] = c.masks.float()
        targets.append({"labels": c.labels, "masks": masks})
    return ClipBatch(frames, targets, list(zip(hs, ws)), [c.frame_paths for c in clips])


class ClipBatchStream(torch.utils.data.IterableDataset):
    """Batches for iterations ``start .. total-1``; batch i depends only on (seed, rank, i).

    With a DataLoader of ``num_workers`` workers (batch_size=None), worker k builds the
    batches i with ``i % num_workers == k`` and the loader's round-robin keeps the order.

    Args:
        dataset: the clip source.
        batch_size: clips per batch on this rank.
        seed, rank: make the draws differ across runs and data-parallel ranks.
        start, total: iteration range.
        size_divisibility: batches are padded to a multiple of this (the model's).
    """

    def __init__(self, dataset: VideoClipDataset, batch_size: int, seed: int, rank: int,
                 start: int, total: int, size_divisibility: int = 32) -> None:
        super().__init__()
        self.dataset, self.batch_size = dataset, batch_size
        self.seed, self.rank, self.start, self.total = seed, rank, start, total
        self.size_divisibility = size_divisibility

    def batch(self, iteration: int) -> ClipBatch:
        rng = np.random.default_rng([self.seed, self.rank, iteration])
        picks = rng.integers(0, len(self.dataset), size=self.batch_size)
        return collate_clips([self.dataset.clip(rng, int(i)) for i in picks], self.size_divisibility)

    def __iter__(self) -> Iterator[ClipBatch]:
        info = torch.utils.data.get_worker_info()
        k, n = (info.id, info.num_workers) if info is not None else (0, 1)
        for i in range(self.start, self.total):
            if (i - self.start) % n == k:
                yield self.batch(i)
