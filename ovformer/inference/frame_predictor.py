"""Video prediction with image models (the LVIS-trained checkpoints), as the official code runs
them on videos: frame by frame in windows, linked by a tracker, scored per (query, class) pair.

``OVFormerVideoPredictor.from_pretrained`` returns an :class:`OVFormerFramePredictor` when the
loaded config's ``meta_arch`` is ``"image"``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..clip import ClipEncoder
from ..modeling import ClipOutput, OVFormerImage
from ..ytvis.rle import encode_mask
from .frame_tracker import FrameTracker, FrameWindow
from .postprocess import video_scores
from .queries import QueryBankWriter
from ..text_embeddings import TextEmbeddings
from .predictor import OVFormerVideoPredictor
from .tracker import ClipResult
from .types import PredictOptions, Track, VideoPrediction


@dataclass
class FrameVideoPrediction(VideoPrediction):
    """A :class:`VideoPrediction` with one track per pair: ``tracks[i]`` belongs to ``pairs[i]``.

    The reference drops a pair's mask on the frames where that pair's own per-frame score is low,
    so two pairs of one query (two classes) can have different masks; ``Track.query`` is the
    decoder query and can repeat.
    """

    def results(self, video_id: int) -> list[dict[str, Any]]:
        """YouTube-VIS results-layout entries for this video."""
        return [{"video_id": video_id, "category_id": p["category_id"], "score": p["score"],
                 "segmentations": t.segmentations} for p, t in zip(self.pairs, self.tracks)]


class OVFormerFramePredictor(OVFormerVideoPredictor):
    """Runs an image-architecture OVFormer on videos (official ``OVFormerVideo`` inference).

    Frames go through the model ``window_size`` at a time as independent images (the window
    only batches work and changes no value); :class:`~.frame_tracker.FrameTracker` links them
    frame by frame and spills each window's low-resolution masks, so memory stays flat in the
    video's length. Scores are the reference's: top-k pairs on the mean aligned logits, frames
    gated per pair, rescored by mean mask probability. :meth:`predict` is the video predictor's
    (``on_clip`` after every window) and returns a :class:`FrameVideoPrediction`.

    Args:
        model: an :class:`~ovformer.modeling.OVFormerImage`.
        clip: the CLIP encoder.
        window_size: frames per model call (default: the model config's, 10).
        clip_length: accepted for the base class's signature and ignored (``window_size`` is what
            groups frames here); ``defaults.clip_length`` reports the window size.
        **kwargs: as :class:`OVFormerVideoPredictor` (``dtype`` defaults to "fp32", as the
            reference runs, with no autocast; "auto" is bf16 on a CPU with bf16 units, as for
            the video models: on the LVIS parity fixture its masks agree with fp32 on 99.26% of
            pixels and the tracker matches every query the same, tests/test_parity_lvis.py).
    """

    def __init__(self, model: OVFormerImage, clip: ClipEncoder, *,
                 window_size: int | None = None, clip_length: int = 0, **kwargs: Any) -> None:
        if not isinstance(model, OVFormerImage):
            raise TypeError(f"{type(self).__name__} needs an image model (meta_arch: image), "
                            f"got {type(model).__name__}; use OVFormerVideoPredictor")
        config = getattr(model, "config", None)
        window_size = window_size or getattr(config, "window_size", 10)
        if window_size < 1:
            raise ValueError(f"window_size must be >= 1, got {window_size}")
        super().__init__(model, clip, clip_length=window_size, **kwargs)
        self.window_size = window_size

    @torch.inference_mode()
    def forward(self, x: torch.Tensor, clip_embeds: torch.Tensor,
                text_embeds: torch.Tensor) -> ClipOutput:
        """The model on a window: (N, 3, h, w) frames, (N, D) CLIP embeddings and (K, D) class
        embeddings -> per-frame outputs (see :meth:`OVFormerImage.forward`), in ``self.dtype``."""
        with self._autocast():
            return self.model(x, clip_embeds, text_embeds.to(self.device))

    @torch.inference_mode()
    def run_window(self, rgb: list[np.ndarray], text_embeds: torch.Tensor,
                   options: PredictOptions | None = None) -> tuple[FrameWindow, tuple[int, int]]:
        """Per-frame outputs of consecutive frames ((H, W, 3) uint8) and the model input size."""
        x, size = self.prepare(rgb, options)
        return FrameWindow.from_output(self.forward(x, self.encode_clip(rgb), text_embeds)), size

    def run_clip(self, *args, **kwargs):  # type: ignore[override]
        """Not for image models: their outputs are per frame (see :meth:`run_window`)."""
        raise TypeError("an image model has no clip-level output: use run_window")

    def _group_length(self, opts: PredictOptions) -> int:
        return self.window_size

    def _new_state(self, spill_dir: str | Path | None, dtype: type,
                   keep: QueryBankWriter | None) -> FrameTracker:
        return FrameTracker(spill_dir, dtype, keep=keep)

    def _add(self, state: FrameTracker, out: ClipOutput) -> ClipResult:  # type: ignore[override]
        """Align a window frame by frame; the preview reads it as one clip."""
        return state.add(FrameWindow.from_output(out)).as_clip()

    def _finish(self, tracker: FrameTracker, size: tuple[int, int],  # type: ignore[override]
                out_size: tuple[int, int], text: TextEmbeddings,
                top_k: int) -> FrameVideoPrediction:
        """What :meth:`predict` returns: the top pairs, gated and rescored as the reference,
        best final score first, one track each."""
        sel = tracker.select(top_k)
        ids = text.vocabulary.ids
        pairs = [{"query": int(q), "label": int(lab), "score": float(s),
                  "category_id": ids[int(lab)]}
                 for s, q, lab in zip(sel.scores.tolist(), sel.queries.tolist(),
                                      sel.labels.tolist())]
        segs: list[list[dict | None]] = [[] for _ in pairs]
        for _, masks in tracker.iter_pair_masks(sel, self._padded(size), size, out_size,
                                                device=self.device):
            for j, m in enumerate(masks):
                segs[j].append(encode_mask(m) if m.any() else None)
        # alternatives: the query's video class scores (before the pair's mask rescoring)
        scores = video_scores(*tracker.video_logits())
        k_alt = min(self.num_alternatives, scores.shape[1])
        alt_s, alt_l = scores[sel.queries].topk(k_alt, dim=1)
        tracks = [Track(p["query"], p["label"], p["score"],
                        [(int(lab), float(s)) for s, lab in zip(alt_s[j].tolist(),
                                                                alt_l[j].tolist())], segs[j])
                  for j, p in enumerate(pairs)]
        return FrameVideoPrediction(text.vocabulary.names, ids, out_size[0], out_size[1],
                                    tracker.num_frames, self.weights_label, self.untrained,
                                    pairs, tracks, text.summary())
