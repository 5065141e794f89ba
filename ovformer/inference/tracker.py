"""Per-video state of semi-online inference: aligned clips, video-level logits, spilled masks.

Memory stays flat in the video's length: each clip's low-resolution mask logits go to a file as
soon as the clip is aligned, and only the masks of the queries that survive top-k are read back
and resized, one frame at a time.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch

from .association import associate
from .postprocess import resize_mask_logits

if TYPE_CHECKING:
    from .queries import QueryBankWriter


@dataclass
class ClipResult:
    """One clip's predictions without the batch axis.

    logits: (Q, K+1), object_logits: (Q, 2), masks: (Q, t, Hp/4, Wp/4) logits, embds: (Q, C).
    """
    logits: torch.Tensor
    object_logits: torch.Tensor
    masks: torch.Tensor
    embds: torch.Tensor

    @classmethod
    def from_output(cls, out, index: int = 0) -> "ClipResult":
        """Take batch element ``index`` of a model :class:`ClipOutput`, as float32."""
        return cls(out.pred_logits[index].float(), out.pred_object_logits[index].float(),
                   out.pred_masks[index].float(), out.pred_embds[index].float())

    def permuted(self, perm: torch.Tensor) -> "ClipResult":
        return ClipResult(self.logits[perm], self.object_logits[perm], self.masks[perm],
                          self.embds[perm])


class VideoState:
    """Accumulates aligned clips of one video.

    Args:
        spill_dir: where clip masks are written; a private temporary folder when None.
        dtype: numpy dtype of the spilled logits (float32 keeps results identical to holding the
            whole video in memory; float16 halves the disk use).
        keep: a :class:`~.queries.QueryBankWriter` that also keeps every aligned clip's masks
            compactly (see :attr:`PredictOptions.keep_queries_dir`), or None.
    """

    def __init__(self, spill_dir: str | Path | None = None, dtype: type = np.float32,
                 keep: "QueryBankWriter | None" = None) -> None:
        self.keep = keep
        self._tmp = None if spill_dir else tempfile.TemporaryDirectory(prefix="ovformer-clips-")
        self.spill_dir = Path(spill_dir or self._tmp.name)
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        self.dtype = dtype
        self.sum_logits: torch.Tensor | None = None
        self.sum_object: torch.Tensor | None = None
        self.last_embds: torch.Tensor | None = None
        self.num_clips = 0
        self.clip_lengths: list[int] = []
        self.permutations: list[torch.Tensor] = []

    def add(self, clip: ClipResult) -> ClipResult:
        """Align ``clip`` to the previous one, accumulate it, spill its masks; returns it aligned."""
        if self.last_embds is not None:
            perm = associate(self.last_embds, clip.embds)
            clip = clip.permuted(perm.to(clip.embds.device))
            self.permutations.append(perm)
        if self.sum_logits is None:
            self.sum_logits, self.sum_object = clip.logits.clone(), clip.object_logits.clone()
        else:
            self.sum_logits += clip.logits
            self.sum_object += clip.object_logits
        self.last_embds = clip.embds
        masks = clip.masks.cpu().numpy()  # the clip's one copy to the host
        np.save(self.spill_dir / f"clip_{self.num_clips:06d}.npy",
                masks.astype(self.dtype, copy=False))
        if self.keep is not None:
            self.keep.add_clip(masks)
        self.num_clips += 1
        self.clip_lengths.append(clip.masks.shape[1])
        return clip

    @property
    def num_frames(self) -> int:
        return sum(self.clip_lengths)

    def video_logits(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean over clips: class logits (Q, K+1) and object logits (Q, 2)."""
        if self.sum_logits is None:
            raise RuntimeError("no clip was added: the video has no frames")
        return self.sum_logits / self.num_clips, self.sum_object / self.num_clips

    def iter_frame_masks(self, queries: torch.Tensor, padded_size: tuple[int, int],
                         image_size: tuple[int, int], output_size: tuple[int, int],
                         chunk: int = 16, device: torch.device | str = "cpu"
                         ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(frame_index, masks (N, H, W) bool)`` for the given queries, frame by frame,
        resized on ``device`` (on a GPU the two full-size interpolations cost little; on the
        CPU they are about 5 ms per 720p mask, more than the RLE)."""
        q = queries.cpu().numpy()
        frame = 0
        for i in range(self.num_clips):
            logits = np.load(self.spill_dir / f"clip_{i:06d}.npy", mmap_mode="r")
            for t in range(logits.shape[1]):
                out = np.empty((len(q), *output_size), dtype=bool)
                for s in range(0, len(q), chunk):
                    part = torch.from_numpy(np.ascontiguousarray(logits[q[s:s + chunk], t]))
                    out[s:s + chunk] = resize_mask_logits(part[:, None].to(device), padded_size,
                                                          image_size, output_size)[:, 0].cpu().numpy()
                yield frame, out
                frame += 1

    def close(self) -> None:
        """Delete the spilled masks (when the folder is private)."""
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "VideoState":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
