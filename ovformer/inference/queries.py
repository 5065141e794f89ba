"""Every query of a video, kept compactly, and click-to-candidate ranking over them.

OVFormer computes 100 query masks per clip, aligns them across clips into whole-video tracks and
scores each over the whole vocabulary; post-processing keeps only the top-k (query, class) pairs.
A :class:`QueryBank` keeps *all* queries: per clip the aligned low-resolution mask logits
(``(Q, t, Hp/4, Wp/4)``, int8-quantised by default, or float16) and, per video, the class scores
``(Q, K)``, plus the sizes that map a low-resolution mask back to the original frame (see
:func:`~.postprocess.resize_mask_logits`). Any query can then become a full-resolution track
later, without the model.

Layout of a bank folder::

    meta.json           sizes, clip lengths, storage dtype and scale, vocabulary
    scores.npy          (Q, K) float32 video-level scores (``video_scores``)
    clip_000000.npz     (Q, t, Hp/4, Wp/4) int8 (logit * scale, clipped) or float16 logits,
                        zlib-compressed (default; ``.npy``, memory-mapped, with compress=False)

:meth:`QueryBank.candidates` reads only the clicked frame's clip (decompressed once and cached:
``Q * t * Hp/4 * Wp/4`` bytes; uncompressed banks read one frame of it through a memory map), so
a click costs the same on a 10-frame and a 10-hour video.

int8 quantisation: ``q = clip(round(logit * scale), -127, 127)`` with ``scale = 127 / 16``
(logits beyond +-16 saturate; sigmoid(16) = 1 - 1e-7). The sign, hence the mask, is exact except
for ``|logit| < 1 / (2 * scale) ~ 0.06``.
"""
from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from ..ytvis.rle import encode_mask
from .postprocess import resize_mask_logits

__all__ = ["Candidate", "QueryBank", "QueryBankWriter", "INT8_SCALE"]

#: int8 steps per logit unit (+-16 logits fit in +-127)
INT8_SCALE = 127.0 / 16.0
_META = "meta.json"
_SCORES = "scores.npy"


def _clip_name(i: int) -> str:
    return f"clip_{i:06d}.npy"


class QueryBankWriter:
    """Writes a bank while a video is predicted: :meth:`add_clip` per aligned clip, then
    :meth:`finish`. A folder with no ``meta.json`` is an unfinished bank (a crash mid-video).

    Args:
        path: the bank's folder (created; an old bank there is replaced).
        dtype: "int8" (default, 1 byte per low-res pixel) or "float16".
    """

    def __init__(self, path: str | Path, dtype: str = "int8", compress: bool = True) -> None:
        if dtype not in ("int8", "float16"):
            raise ValueError(f"dtype must be int8 or float16, got {dtype!r}")
        self.path = Path(path)
        if (self.path / _META).exists() or any(self.path.glob("clip_*.np*")):
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.dtype, self.compress = dtype, bool(compress)
        self.clip_lengths: list[int] = []

    def add_clip(self, masks: torch.Tensor | np.ndarray) -> None:
        """One aligned clip's mask logits (Q, t, Hp/4, Wp/4)."""
        x = masks.detach().float().cpu().numpy() if isinstance(masks, torch.Tensor) else \
            np.asarray(masks, dtype=np.float32)
        if self.dtype == "int8":
            arr = np.clip(np.rint(x * INT8_SCALE), -127, 127).astype(np.int8)
        else:
            arr = x.astype(np.float16)
        name = self.path / _clip_name(len(self.clip_lengths))
        if self.compress:  # zlib: background logits saturate at -127 and compress well
            with open(name.with_suffix(".npz"), "wb") as fh:
                np.savez_compressed(fh, masks=arr)
        else:
            np.save(name, arr)
        self.clip_lengths.append(int(arr.shape[1]))

    def finish(self, scores: torch.Tensor | np.ndarray, padded_size: tuple[int, int],
               image_size: tuple[int, int], output_size: tuple[int, int],
               vocabulary: Sequence[str] = (), category_ids: Sequence[int] = ()) -> "QueryBank":
        """Write the video-level scores (Q, K) and the sizes; returns the bank, open."""
        s = scores.detach().float().cpu().numpy() if isinstance(scores, torch.Tensor) else \
            np.asarray(scores, np.float32)
        np.save(self.path / _SCORES, s.astype(np.float32))
        meta = {"version": 1, "dtype": self.dtype, "scale": INT8_SCALE if self.dtype == "int8"
                else 1.0, "clip_lengths": self.clip_lengths,
                "padded_size": list(padded_size), "image_size": list(image_size),
                "output_size": list(output_size), "num_queries": int(s.shape[0]),
                "compressed": self.compress, "vocabulary": list(vocabulary), "category_ids": [int(c) for c in category_ids]}
        tmp = self.path / (_META + ".tmp")
        tmp.write_text(json.dumps(meta))
        tmp.replace(self.path / _META)  # the bank exists once meta.json does
        return QueryBank(self.path)


@dataclass
class Candidate:
    """One query proposed for a click.

    query: the query id (its row in the bank); score: how well its mask fits the clicks (0..1,
    the geometric mean of the mask probability at positive clicks and of one minus it at
    negative ones); rank_score: what the order used (score, weighted by class confidence and,
    for a fix, by overlap with the track being fixed); classes: top-5 (label, score) over the
    vocabulary from the video-level scores, best first; frames: the frame range [start, end)
    the candidate covers (the whole video for an add).
    """
    query: int
    score: float
    rank_score: float
    classes: list[tuple[int, float]]
    frames: tuple[int, int]
    bank: "QueryBank" = field(repr=False, compare=False)

    @property
    def label(self) -> int:
        return self.classes[0][0]

    def frame_mask(self, frame: int) -> np.ndarray:
        """(H, W) bool mask at the original size on one frame."""
        return self.bank.frame_masks(frame, [self.query])[0]

    def masks(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(frame, (H, W) bool)`` over :attr:`frames`, one frame at a time."""
        for f, m in self.bank.iter_masks([self.query], *self.frames):
            yield f, m[0]

    def segmentations(self) -> list[dict | None]:
        """RLE per frame of :attr:`frames` at the original size, None where empty."""
        return [encode_mask(m) if m.any() else None for _, m in self.masks()]


class QueryBank:
    """A finished bank, read lazily (clip files memory-mapped on demand)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        meta_file = self.path / _META
        if not meta_file.exists():
            raise FileNotFoundError(f"no query bank at {self.path} (no {_META})")
        meta = json.loads(meta_file.read_text())
        self.dtype: str = meta["dtype"]
        self.scale: float = float(meta["scale"])
        self.clip_lengths: list[int] = [int(n) for n in meta["clip_lengths"]]
        self.padded_size = tuple(meta["padded_size"])
        self.image_size = tuple(meta["image_size"])
        self.output_size = tuple(meta["output_size"])
        self.vocabulary: list[str] = meta.get("vocabulary", [])
        self.category_ids: list[int] = meta.get("category_ids", [])
        self.scores = np.load(self.path / _SCORES)  # (Q, K) float32, small
        self.num_queries = int(self.scores.shape[0])
        self.clip_starts = np.concatenate([[0], np.cumsum(self.clip_lengths)]).astype(int)
        self.compressed = bool(meta.get("compressed", False))
        self._maps: dict[int, np.ndarray] = {}

    @classmethod
    def exists(cls, path: str | Path) -> bool:
        return (Path(path) / _META).exists()

    @property
    def num_frames(self) -> int:
        return int(self.clip_starts[-1])

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())

    # --- low-level reads ------------------------------------------------------------------
    def locate(self, frame: int) -> tuple[int, int]:
        """(clip index, frame within the clip) of a video frame."""
        if not 0 <= frame < self.num_frames:
            raise IndexError(f"frame {frame} outside 0..{self.num_frames - 1}")
        c = int(np.searchsorted(self.clip_starts, frame, side="right") - 1)
        return c, frame - int(self.clip_starts[c])

    def _clip(self, c: int) -> np.ndarray:
        m = self._maps.get(c)
        if m is None:
            if self.compressed:  # the whole clip, decompressed once (Q * t * h * w bytes)
                with np.load((self.path / _clip_name(c)).with_suffix(".npz")) as z:
                    m = z["masks"]
            else:
                m = np.load(self.path / _clip_name(c), mmap_mode="r")
            if len(self._maps) >= (2 if self.compressed else 8):  # bounded memory
                self._maps.clear()
                self._maps.clear()
            self._maps[c] = m
        return m

    def frame_logits(self, frame: int, queries: Sequence[int] | None = None) -> np.ndarray:
        """(N, Hp/4, Wp/4) float32 low-resolution logits of one frame (all queries by default)."""
        c, t = self.locate(frame)
        arr = self._clip(c)
        x = arr[:, t] if queries is None else arr[np.asarray(queries, dtype=np.int64), t]
        return np.asarray(x, dtype=np.float32) / self.scale

    def frame_masks(self, frame: int, queries: Sequence[int], chunk: int = 16) -> np.ndarray:
        """(N, H, W) bool masks of some queries on one frame at the original size."""
        logits = self.frame_logits(frame, queries)
        out = np.empty((len(logits), *self.output_size), dtype=bool)
        for s in range(0, len(logits), chunk):
            part = torch.from_numpy(logits[s:s + chunk])[:, None]
            out[s:s + chunk] = resize_mask_logits(part, self.padded_size, self.image_size,
                                                  self.output_size)[:, 0].numpy()
        return out

    def iter_masks(self, queries: Sequence[int], start: int = 0, end: int | None = None,
                   chunk: int = 16) -> Iterator[tuple[int, np.ndarray]]:
        """``(frame, (N, H, W) bool)`` for frames start..end-1."""
        end = self.num_frames if end is None else min(end, self.num_frames)
        start = max(0, start)
        if start >= end:
            return
        idx = np.asarray(queries, dtype=np.int64)
        c = self.locate(start)[0]
        while c < len(self.clip_lengths) and self.clip_starts[c] < end:
            c0 = int(self.clip_starts[c])
            t0, t1 = max(start, c0) - c0, min(end, int(self.clip_starts[c + 1])) - c0
            # one resize call per clip and query chunk: (N, t, h, w) at once
            x = np.asarray(self._clip(c)[idx, t0:t1], dtype=np.float32) / self.scale
            out = np.empty((len(idx), t1 - t0, *self.output_size), dtype=bool)
            for s in range(0, len(idx), chunk):
                out[s:s + chunk] = resize_mask_logits(torch.from_numpy(x[s:s + chunk]),
                                                      self.padded_size, self.image_size,
                                                      self.output_size).numpy()
            for t in range(t1 - t0):
                yield c0 + t0 + t, out[:, t]
            c += 1

    def top_classes(self, query: int, k: int = 5) -> list[tuple[int, float]]:
        s = self.scores[query]
        order = np.argsort(-s, kind="stable")[:k]
        return [(int(i), float(s[i])) for i in order]

    def track(self, query: int) -> list[dict | None]:
        """The full-resolution track of any query: RLE per frame, None where empty."""
        return [encode_mask(m[0]) if m[0].any() else None for _, m in self.iter_masks([query])]

    # --- clicks ---------------------------------------------------------------------------
    def _lowres_coords(self, x: float, y: float) -> tuple[float, float]:
        """An original-frame pixel centre in low-resolution (Hp/4, Wp/4) sample coordinates,
        following the resize chain of :func:`resize_mask_logits` (align_corners=False)."""
        H, W = self.output_size
        h, w = self.image_size
        Hp, Wp = self.padded_size
        lh, lw = self._lowres_shape()
        xi = (x + 0.5) * w / W - 0.5          # model input (= padded, cropped at top-left)
        yi = (y + 0.5) * h / H - 0.5
        return (xi + 0.5) * lw / Wp - 0.5, (yi + 0.5) * lh / Hp - 0.5

    def _lowres_shape(self) -> tuple[int, int]:
        shape = self._clip(0).shape
        return int(shape[2]), int(shape[3])

    def click_logits(self, frame: int, points: Sequence[tuple[float, float]]) -> np.ndarray:
        """(Q, P) mask logits of every query at each (x, y) point of one frame, bilinear in
        the low-resolution map (reads only 4 pixels per point per query)."""
        c, t = self.locate(frame)
        arr = self._clip(c)
        lh, lw = arr.shape[2], arr.shape[3]
        out = np.empty((arr.shape[0], len(points)), dtype=np.float32)
        for j, (x, y) in enumerate(points):
            lx, ly = self._lowres_coords(float(x), float(y))
            lx, ly = min(max(lx, 0.0), lw - 1.0), min(max(ly, 0.0), lh - 1.0)
            x0, y0 = int(math.floor(lx)), int(math.floor(ly))
            x1, y1 = min(x0 + 1, lw - 1), min(y0 + 1, lh - 1)
            fx, fy = lx - x0, ly - y0
            v = np.asarray(arr[:, t, y0:y1 + 1, x0:x1 + 1], dtype=np.float32)  # (Q, <=2, <=2)
            v00, v01 = v[:, 0, 0], v[:, 0, -1]
            v10, v11 = v[:, -1, 0], v[:, -1, -1]
            out[:, j] = ((1 - fy) * ((1 - fx) * v00 + fx * v01)
                         + fy * ((1 - fx) * v10 + fx * v11)) / self.scale
        return out

    def candidates(self, frame: int, points: Iterable[tuple[float, float, bool]], *,
                   limit: int = 10, exclude: Iterable[int] = (), min_score: float = 0.5,
                   class_weight: float = 0.25, frames: tuple[int, int] | None = None,
                   like: int | None = None) -> list[Candidate]:
        """Queries ranked by how well their mask on ``frame`` fits the clicks, best first.

        Args:
            frame: the clicked frame.
            points: (x, y, positive) in original-frame pixels; at least one positive.
            limit: candidates returned at most.
            exclude: queries not to propose (e.g. those already tracks).
            min_score: drop candidates whose click fit (:attr:`Candidate.score`) is lower
                (0.5: every positive click inside the mask and every negative outside, on
                average in the geometric sense).
            class_weight: rank by ``score * best_class_score ** class_weight``: among queries
                that fit the clicks equally, the more confident object first (0: clicks only).
            frames: the [start, end) range the candidates cover (default: the whole video).
            like: a query whose low-res mask on ``frame`` the candidates should overlap (a fix):
                the rank is also weighted by ``0.2 + 0.8 * IoU`` with it.
        """
        pts = [(float(x), float(y), bool(p)) for x, y, p in points]
        if not any(p for *_, p in pts):
            raise ValueError("at least one positive click is needed")
        H, W = self.output_size
        for x, y, _ in pts:
            if not (0 <= x < W and 0 <= y < H):
                raise ValueError(f"click ({x}, {y}) outside the {W}x{H} frame")
        logits = self.click_logits(frame, [(x, y) for x, y, _ in pts])  # (Q, P)
        sign = np.array([1.0 if p else -1.0 for *_, p in pts], dtype=np.float32)
        # log-probability that the mask agrees with each click, averaged: geometric mean
        logp = -np.logaddexp(0.0, -logits * sign)  # log sigmoid(sign * logit)
        fit = np.exp(logp.mean(1))
        best_cls = self.scores.max(1) if self.scores.size else np.ones(self.num_queries)
        rank = fit * np.power(np.clip(best_cls, 1e-6, 1.0), class_weight)
        if like is not None:
            low = self.frame_logits(frame) > 0  # (Q, h, w)
            ref = low[like]
            inter = (low & ref).reshape(len(low), -1).sum(1)
            union = (low | ref).reshape(len(low), -1).sum(1)
            iou = inter / np.maximum(union, 1)
            rank = rank * (0.2 + 0.8 * iou)
        banned = set(int(q) for q in exclude)
        if like is not None:
            banned.add(int(like))
        rng = frames or (0, self.num_frames)
        out = []
        for q in np.argsort(-rank, kind="stable"):
            q = int(q)
            if q in banned or fit[q] < min_score:
                continue
            out.append(Candidate(q, float(fit[q]), float(rank[q]), self.top_classes(q), rng,
                                 self))
            if len(out) >= limit:
                break
        return out

    def fix_candidates(self, query: int, frame: int,
                       points: Iterable[tuple[float, float, bool]], *, until: str = "clip",
                       limit: int = 10, exclude: Iterable[int] = ()) -> list[Candidate]:
        """Masks from other queries to replace track ``query`` on ``frame`` and the following
        frames up to the end of its clip (``until="clip"``) or of the video (``"video"``),
        ranked by their fit to the clicks and their overlap with the track's mask there."""
        if until not in ("clip", "video"):
            raise ValueError("until must be 'clip' or 'video'")
        c, _ = self.locate(frame)
        end = int(self.clip_starts[c + 1]) if until == "clip" else self.num_frames
        return self.candidates(frame, points, limit=limit, exclude=exclude, frames=(frame, end),
                               like=query)
