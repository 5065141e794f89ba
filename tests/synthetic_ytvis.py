"""Synthetic YouTube-VIS datasets: coloured shapes moving, appearing and leaving.

Importable by any test (``from synthetic_ytvis import write_synthetic_ytvis``) and runnable
(``python tests/synthetic_ytvis.py OUT_DIR --videos 20 --seed 0``). The output is a
YouTube-VIS folder exactly as the app exports it::

    OUT_DIR/annotations.json
    OUT_DIR/JPEGImages/<video>/<frame:05d>.jpg

Each class is a (colour, shape) pair with a name that CLIP can embed ("red square"...).
Everything is drawn with numpy from one seeded generator, so a seed gives the same bytes.
Objects are drawn in order, so a later object occludes an earlier one and the earlier
one's mask loses the covered pixels (frames where nothing is left are ``null``).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

#: default classes: (name, RGB colour, shape)
DEFAULT_CLASSES: tuple[tuple[str, tuple[int, int, int], str], ...] = (
    ("red square", (220, 40, 40), "square"),
    ("green circle", (40, 200, 60), "circle"),
    ("blue triangle", (50, 80, 230), "triangle"),
    ("yellow diamond", (230, 210, 40), "diamond"),
)


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate.

    Attributes:
        num_videos: number of videos.
        num_frames: frames per video.
        height, width: frame size in pixels.
        max_objects: at most this many object tracks per video (at least 1).
        size_range: object size (bounding square side) as a fraction of min(height, width).
        classes: ``(name, rgb, shape)`` triples; shape in square/circle/triangle/diamond.
    """

    num_videos: int = 20
    num_frames: int = 12
    height: int = 96
    width: int = 128
    max_objects: int = 3
    size_range: tuple[float, float] = (0.25, 0.45)
    classes: tuple[tuple[str, tuple[int, int, int], str], ...] = DEFAULT_CLASSES


def _shape_mask(shape: str, cy: float, cx: float, r: float, h: int, w: int) -> np.ndarray:
    """Boolean (h, w) mask of a shape of half-size ``r`` centred at (cy, cx)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dy, dx = yy + 0.5 - cy, xx + 0.5 - cx
    if shape == "square":
        return (np.abs(dy) <= r) & (np.abs(dx) <= r)
    if shape == "circle":
        return dy * dy + dx * dx <= r * r
    if shape == "diamond":
        return np.abs(dy) + np.abs(dx) <= r
    if shape == "triangle":  # apex up: inside when below the two slanted edges and above the base
        return (dy <= r) & (dy >= -r) & (np.abs(dx) <= (dy + r) / 2.0)
    raise ValueError(f"unknown shape {shape!r}")


def _track_frames(rng: np.random.Generator, n: int) -> tuple[int, int]:
    """First and last frame (inclusive) of a track: most live the whole video, some
    appear late or leave early, so the data has tracks with null frames."""
    start = 0 if rng.random() < 0.6 else int(rng.integers(0, max(1, n // 2)))
    end = n - 1 if rng.random() < 0.6 else int(rng.integers(min(n - 1, start + 2), n))
    return start, max(start, end)


def _encode(m: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def write_synthetic_ytvis(out_dir: str | Path, seed: int = 0, spec: SyntheticSpec | None = None) -> Path:
    """Write a synthetic YouTube-VIS dataset and return the path of its ``annotations.json``.

    Args:
        out_dir: folder to create (existing files with the same names are overwritten).
        seed: seed of the generator; the same seed and spec give identical files.
        spec: what to draw; ``SyntheticSpec()`` if None.
    """
    spec = spec or SyntheticSpec()
    rng = np.random.default_rng(seed)
    out = Path(out_dir)
    (out / "JPEGImages").mkdir(parents=True, exist_ok=True)
    h, w, n = spec.height, spec.width, spec.num_frames
    categories = [{"id": i + 1, "name": c[0], "supercategory": "shape"} for i, c in enumerate(spec.classes)]
    videos, annotations = [], []
    for v in range(spec.num_videos):
        name = f"vid{seed:03d}_{v:04d}"
        (out / "JPEGImages" / name).mkdir(exist_ok=True)
        # a dim, slightly tinted and noisy background, different per video
        bg = rng.integers(20, 90, size=3).astype(np.float32)
        objects = []
        for _ in range(int(rng.integers(1, spec.max_objects + 1))):
            cls = int(rng.integers(0, len(spec.classes)))
            r = 0.5 * min(h, w) * float(rng.uniform(*spec.size_range))
            start, end = _track_frames(rng, n)
            pos = np.array([rng.uniform(0, h), rng.uniform(0, w)], dtype=np.float32)
            vel = rng.uniform(-0.06, 0.06, size=2).astype(np.float32) * np.array([h, w], np.float32)
            objects.append((cls, r, start, end, pos, vel))
        masks = np.zeros((len(objects), n, h, w), dtype=bool)
        for t in range(n):
            img = bg[None, None, :] + rng.normal(0.0, 6.0, size=(h, w, 3)).astype(np.float32)
            for k, (cls, r, start, end, pos, vel) in enumerate(objects):
                if not start <= t <= end:
                    continue
                cy, cx = pos + vel * t  # objects may drift out of the frame: they leave
                m = _shape_mask(spec.classes[cls][2], float(cy), float(cx), r, h, w)
                masks[:k, t] &= ~m  # occlusion: the newer object covers the older ones
                masks[k, t] = m
                img[m] = np.asarray(spec.classes[cls][1], np.float32)
            frame = np.clip(img, 0, 255).astype(np.uint8)
            Image.fromarray(frame).save(out / "JPEGImages" / name / f"{t:05d}.jpg", quality=95)
        vid_id = v + 1
        videos.append({"id": vid_id, "width": w, "height": h, "length": n,
                       "file_names": [f"{name}/{t:05d}.jpg" for t in range(n)]})
        for k, (cls, *_rest) in enumerate(objects):
            segs, areas, boxes = [], [], []
            for t in range(n):
                m = masks[k, t]
                if not m.any():
                    segs.append(None), areas.append(None), boxes.append(None)
                    continue
                rle = _encode(m)
                segs.append(rle)
                areas.append(int(m.sum()))
                boxes.append([float(x) for x in mask_utils.toBbox(rle)])
            if all(s is None for s in segs):
                continue  # never visible (fully occluded or off-screen): not an instance
            annotations.append({"id": len(annotations) + 1, "video_id": vid_id, "category_id": cls + 1,
                                "iscrowd": 0, "height": h, "width": w, "segmentations": segs,
                                "areas": areas, "bboxes": boxes})
    ann_path = out / "annotations.json"
    ann_path.write_text(json.dumps({"info": {"description": f"synthetic shapes, seed {seed}"},
                                    "videos": videos, "annotations": annotations,
                                    "categories": categories}))
    return ann_path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--videos", type=int, default=20)
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, nargs=2, default=(96, 128), metavar=("H", "W"))
    a = p.parse_args(argv)
    spec = SyntheticSpec(num_videos=a.videos, num_frames=a.frames, height=a.size[0], width=a.size[1])
    print(write_synthetic_ytvis(a.out, a.seed, spec))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
