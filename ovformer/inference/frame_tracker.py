"""Frame-by-frame tracking and scoring of image models run on a video.

The LVIS-trained checkpoints predict each frame on its own; the official video evaluation
(``OVFormerVideo.post_processing`` / ``instance_inference``) links the frames with a tracker and
scores the linked queries:

1. Frame 0's query embeddings start a memory. Each later frame is matched to the memory
   (Hungarian, cosine cost: :func:`~.association.associate`), permuted into the memory's order,
   and the memory moves towards it: ``memory = 0.7 * aligned + 0.3 * memory``.
2. Video logits are the mean of the aligned per-frame logits; the top-k (query, class) pairs are
   picked on :func:`~.postprocess.video_scores`.
3. A pair's mask is dropped on the frames where its per-frame score is under a tenth of its
   video score, and its final score is the video score times the mean foreground probability of
   its remaining low-resolution mask.

Memory stays flat in the video's length, as with :class:`~.tracker.VideoState` (whose spilling
and mask read-back this class reuses): each window's aligned low-resolution mask logits and
per-frame class logits go to files, and only the selected pairs' entries are read back.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch

from .association import associate
from .postprocess import (frame_gate, mask_probability_sums, rescore_by_mask, select_topk,
                          video_scores)
from .tracker import ClipResult, VideoState

if TYPE_CHECKING:
    from .queries import QueryBankWriter

MOMENTUM = 0.7  # weight of the newly matched frame in the tracker's memory (reference value)
GATE_RATIO = 0.1  # per-frame score below this fraction of the video score drops the frame


@dataclass
class FrameWindow:
    """Per-frame predictions of consecutive frames, one row per frame.

    logits: (W, Q, K+1), object_logits: (W, Q, 2), masks: (W, Q, Hp/4, Wp/4) logits,
    embds: (W, Q, C).
    """
    logits: torch.Tensor
    object_logits: torch.Tensor
    masks: torch.Tensor
    embds: torch.Tensor

    @classmethod
    def from_output(cls, out) -> "FrameWindow":
        """From an image model's :class:`~ovformer.modeling.ClipOutput`, as float32 on the CPU
        (where the reference runs its tracker)."""
        return cls(*(getattr(out, k).detach().float().cpu() for k in
                     ("pred_logits", "pred_object_logits", "pred_masks", "pred_embds")))

    def __len__(self) -> int:
        return self.logits.shape[0]

    def as_clip(self) -> ClipResult:
        """The window as one clip (logits averaged over its frames, masks (Q, W, h, w)): what the
        predictor's provisional preview reads."""
        return ClipResult(self.logits.mean(0), self.object_logits.mean(0),
                          self.masks.transpose(0, 1), self.embds[-1])


@dataclass
class FrameSelection:
    """The kept (query, class) pairs of a video, best final score first.

    scores: (k,) final scores; class_scores: (k,) video scores before mask rescoring;
    queries, labels: (k,) long; gate: (k, T) bool, True where the pair's mask is dropped.
    """
    scores: torch.Tensor
    class_scores: torch.Tensor
    queries: torch.Tensor
    labels: torch.Tensor
    gate: torch.Tensor


class FrameTracker(VideoState):
    """Links the frames of one video and keeps what scoring needs (see the module docstring).

    Args:
        spill_dir: where per-window masks and logits are written; private temporary folder when
            None.
        dtype: numpy dtype of the spilled mask logits (float32 keeps results identical).
        momentum: weight of the current frame in the embedding memory.
    """

    def __init__(self, spill_dir: str | Path | None = None, dtype: type = np.float32,
                 momentum: float = MOMENTUM, keep: "QueryBankWriter | None" = None) -> None:
        super().__init__(spill_dir, dtype, keep=keep)
        self.momentum = momentum
        self.memory: torch.Tensor | None = None  # (Q, C)
        self.object_logits: list[torch.Tensor] = []  # per window (W, Q, 2); small, kept

    def add(self, window: FrameWindow) -> FrameWindow:  # type: ignore[override]
        """Align each frame of ``window`` to the memory, accumulate and spill it.

        Returns the window aligned (every frame's queries in the memory's order).
        ``permutations`` gets one (Q,) permutation per frame after the video's first.
        """
        perms = []
        for i in range(len(window)):
            emb = window.embds[i]
            if self.memory is None:
                perm = torch.arange(emb.shape[0])
                self.memory = emb
            else:
                perm = associate(self.memory, emb)
                self.permutations.append(perm)
                self.memory = self.momentum * emb[perm] + (1 - self.momentum) * self.memory
            perms.append(perm)
        rows = torch.stack(perms)[..., None]  # (W, Q, 1)
        take = lambda x: x.gather(1, rows.expand(-1, -1, x.shape[-1]))  # noqa: E731
        masks = torch.stack([m[p] for m, p in zip(window.masks, perms)])
        aligned = FrameWindow(take(window.logits), take(window.object_logits), masks,
                              take(window.embds))
        for logits, obj in zip(aligned.logits, aligned.object_logits):
            # frame by frame, in order: the reference's mean is a running sum over the frames
            if self.sum_logits is None:
                self.sum_logits, self.sum_object = logits.clone(), obj.clone()
            else:
                self.sum_logits += logits
                self.sum_object += obj
        np.save(self._logits_path(self.num_clips), aligned.logits.numpy())
        masks = masks.transpose(0, 1).numpy()  # (Q, W, Hp/4, Wp/4): VideoState's layout
        np.save(self.spill_dir / f"clip_{self.num_clips:06d}.npy",
                masks.astype(self.dtype, copy=False))
        if self.keep is not None:  # every query, for click-to-add (see .queries)
            self.keep.add_clip(masks)
        self.object_logits.append(aligned.object_logits)
        self.num_clips += 1
        self.clip_lengths.append(len(window))
        return aligned

    def _logits_path(self, window: int) -> Path:
        return self.spill_dir / f"logits_{window:06d}.npy"

    def video_logits(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean over frames of the aligned class logits (Q, K+1) and object logits (Q, 2)."""
        if self.sum_logits is None:
            raise RuntimeError("no frame was added: the video has no frames")
        return self.sum_logits / self.num_frames, self.sum_object / self.num_frames

    def frame_scores(self, queries: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(k, T) per-frame :func:`video_scores` of the given (query, class) pairs."""
        q, lab = queries.cpu().numpy(), labels.cpu()
        out = []
        for i, obj in enumerate(self.object_logits):
            logits = torch.from_numpy(np.load(self._logits_path(i), mmap_mode="r")[:, q])
            w, k, c = logits.shape  # (W, k, K+1)
            s = video_scores(logits.reshape(w * k, c), obj[:, queries].reshape(w * k, 2))
            out.append(s.view(w, k, -1).gather(2, lab.view(1, k, 1).expand(w, -1, -1))[..., 0])
        return torch.cat(out).t()

    def iter_pair_logits(self, queries: torch.Tensor,
                         gate: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(first_frame, logits (k, W, Hp/4, Wp/4))`` per window: the pairs' low-resolution
        mask logits with dropped frames set to -1, as the model returns them."""
        q, start = queries.cpu().numpy(), 0
        for i, length in enumerate(self.clip_lengths):
            logits = np.load(self.spill_dir / f"clip_{i:06d}.npy", mmap_mode="r")
            part = torch.from_numpy(np.ascontiguousarray(logits[q], dtype=np.float32))
            part[gate[:, start:start + length]] = -1.0
            yield start, part
            start += length

    def select(self, k: int, gate_ratio: float = GATE_RATIO) -> FrameSelection:
        """Top-``k`` pairs, gated and rescored by mask probability, best final score first."""
        class_scores, queries, labels = select_topk(video_scores(*self.video_logits()), k)
        gate = frame_gate(self.frame_scores(queries, labels), class_scores, gate_ratio)
        prob_sum = count = 0
        for _, logits in self.iter_pair_logits(queries, gate):
            s, c = mask_probability_sums(logits)
            prob_sum, count = prob_sum + s, count + c
        scores = rescore_by_mask(class_scores, prob_sum, count)
        # stable: equal final scores keep the class-score order
        order = torch.sort(scores, descending=True, stable=True).indices
        return FrameSelection(scores[order], class_scores[order], queries[order], labels[order],
                              gate[order])

    def iter_pair_masks(self, selection: FrameSelection, padded_size: tuple[int, int],
                        image_size: tuple[int, int], output_size: tuple[int, int],
                        chunk: int = 16, device: torch.device | str = "cpu"
                        ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(frame_index, masks (k, H, W) bool)`` of the selected pairs at the output size
        (the evaluator's conversion), frame by frame, resized on ``device``."""
        for t, masks in self.iter_frame_masks(selection.queries, padded_size, image_size,
                                              output_size, chunk, device):
            # a dropped frame's logits are all -1, which every bilinear resize keeps below 0
            masks[selection.gate[:, t].numpy()] = False
            yield t, masks
