"""Streaming semi-online video prediction with a vocabulary chosen at run time."""
from __future__ import annotations

import contextlib
import math
import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from ..clip import ClipEncoder
from ..distributed import pick_device
from ..data.resize import frames_to_tensor, resize_frames, resized_shape
from ..text_embeddings import StoredClassifier, TextEmbeddings, embed_vocabulary
from ..vocab import Vocabulary
from ..modeling import ClipOutput, OVFormer
from ..ytvis.rle import encode_mask
from .postprocess import resize_mask_logits, select_topk, video_scores
from .runtime import keep_freed_memory, native_dtype, resolve_runtime
from .queries import QueryBankWriter
from .tracker import ClipResult, VideoState
from .types import ClipProgress, PredictOptions, Track, VideoPrediction, VideoPredictor

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

__all__ = ["DTYPES", "ClipProgress", "OVFormerVideoPredictor", "PredictOptions", "Track",
           "VideoPrediction", "VideoPredictor"]


def _chunks(frames: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive groups of ``size`` frames; ``size <= 0`` is the whole video (offline)."""
    buf: list[Any] = []
    for f in frames:
        buf.append(f)
        if 0 < size == len(buf):
            yield buf
            buf = []
    if buf:
        yield buf


def _check_sizes(frames: Iterable[list[Any]]) -> Iterator[list[np.ndarray]]:
    """The (H, W, 3) arrays of each group of frames; every frame must have the first's size."""
    out_size = None
    for group in frames:
        rgb = [getattr(f, "rgb", f) for f in group]
        out_size = out_size or rgb[0].shape[:2]
        if any(r.shape[:2] != out_size for r in rgb):
            raise ValueError(f"frame size changed within the video (expected {out_size})")
        yield rgb


def prefetch(items: Iterable[Any], depth: int = 1) -> Iterator[Any]:
    """``items`` produced by a background thread up to ``depth`` ahead of the consumer: decoding
    (PyAV releases the GIL) and resizing the next clip run while the current clip is in the
    model. An exception of the producer is raised here, at the item it failed on; leaving the
    loop early stops the producer at its next item."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((end, None))
        except BaseException as exc:  # handed to the consumer
            q.put((end, exc))

    worker = threading.Thread(target=produce, name="ovformer-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item, exc = q.get()
            if exc is not None:
                raise exc
            if item is end:
                return
            yield item
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            while True:  # unblock a producer waiting on a full queue
                q.get_nowait()
        worker.join(timeout=5)


class OVFormerVideoPredictor:
    """Runs OVFormer on videos clip by clip and returns tracks with RLE masks.

    The object holds what is fixed for its life; every :meth:`predict` call gets its vocabulary
    (:class:`~ovformer.text_embeddings.TextEmbeddings`) and :class:`PredictOptions` as arguments
    and keeps its per-video state to itself, so one predictor serves many callers.

    Args:
        model: an :class:`OVFormer` (eval mode is set here).
        clip: the CLIP encoder the model was trained with.
        min_size, max_size, clip_length, top_k: the default :class:`PredictOptions`.
        device, dtype: where and how the model runs (device "auto": the GPU when CUDA is
            available, else the CPU; dtype "fp32", "bf16" autocast, "fp16"; "auto":
            :func:`~.runtime.fastest_dtype`, fp16 on CUDA, bf16 on a CPU with bf16 units). CLIP
            follows a reduced dtype where the hardware has it (:meth:`encode_clip`). On CPU,
            glibc is told to keep freed memory (see :mod:`.runtime`).
        weights_label: what the app's banner and the outputs say about the weights.
        untrained: the weights are random; every output says so.
        num_alternatives: alternatives kept per track.
        classifier: the checkpoint's own classifier and training vocabulary; classes of a
            vocabulary that it knows use its stored embedding (see :mod:`ovformer.text_embeddings`).
        detpro_context: (P, n_ctx, width) DetPro prompt contexts for new classes, or None.
        text_note: why a better text source is missing (said in :meth:`TextEmbeddings.summary`).
    """

    #: clips decoded and resized ahead of the model in a background thread (0: none)
    prefetch_clips: int = 1

    def __init__(self, model: OVFormer, clip: ClipEncoder, *, min_size: int = 360,
                 max_size: int = 1333, clip_length: int = 5, top_k: int = 50,
                 device: str | torch.device = "cpu", dtype: str = "fp32",
                 weights_label: str = "", untrained: bool = False,
                 num_alternatives: int = 5, classifier: StoredClassifier | None = None,
                 detpro_context: torch.Tensor | None = None, text_note: str = "") -> None:
        self.device, dtype = resolve_runtime(str(device), dtype)
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be auto or one of {', '.join(DTYPES)}, got {dtype!r}")
        if self.device.type == "cpu":
            keep_freed_memory()
        self.model = model.eval().to(self.device)
        self.clip = clip
        self._defaults = PredictOptions(min_size, max_size, clip_length, top_k, 10, None)
        self.dtype = dtype
        self.weights_label = weights_label or ("UNTRAINED (random weights)" if untrained else "")
        self.untrained = untrained
        self.num_alternatives = num_alternatives
        self.classifier, self.detpro_context, self.text_note = classifier, detpro_context, text_note
        self._default_text = None if classifier is None else TextEmbeddings(
            classifier.vocabulary, classifier.weight.float(),
            ("classifier",) * len(classifier.vocabulary))

    @property
    def defaults(self) -> PredictOptions:
        """The options a call gets where it passes None (the preset's test settings)."""
        return self._defaults

    @property
    def default_text(self) -> TextEmbeddings | None:
        """The checkpoint's training vocabulary with its stored classifier, when known."""
        return self._default_text

    @classmethod
    def from_pretrained(cls, weights: str | Path | None = "r50-lvvis", *, preset: str | None = None,
                        config: str | Path | None = None, clip: str | ClipEncoder = "openai",
                        untrained: bool = False, download: bool = False,
                        classifier_vocabulary: Vocabulary | None = None,
                        **kwargs: Any) -> "OVFormerVideoPredictor":
        """Build from a released name (``r50-lvvis`` ...), a checkpoint path, or random weights.

        See :func:`ovformer.api.load_model` for how the architecture, the stored classifier and
        its training vocabulary are found; DetPro prompt contexts are used for new classes when
        they are downloaded and fit the CLIP (see :func:`ovformer.text_embeddings.find_detpro_context`).
        """
        from ..api import load_model  # late: api imports this module
        loaded = load_model(weights, preset=preset, config=config, untrained=untrained,
                            download=download, classifier_vocabulary=classifier_vocabulary)
        if kwargs.get("device") == "auto":  # CLIP and the model on the same device
            kwargs["device"] = pick_device("auto")
        encoder = clip if isinstance(clip, ClipEncoder) else None
        if encoder is None:
            from ..clip import load_clip
            encoder = load_clip(str(clip), kwargs.get("device", "cpu"))
        return cls.from_loaded(loaded, encoder, **kwargs)

    @classmethod
    def from_loaded(cls, loaded: Any, encoder: ClipEncoder, **kwargs: Any) -> "OVFormerVideoPredictor":
        """A predictor around a :class:`~ovformer.api.LoadedModel`: its preset's test settings
        (unless given), its classifier, DetPro contexts when present; the frame-by-frame
        predictor for image models."""
        from ..text_embeddings import find_detpro_context
        loaded.check_clip(encoder)
        cfg = loaded.config
        kwargs.setdefault("min_size", cfg.min_size_test)
        kwargs.setdefault("max_size", cfg.max_size_test)
        kwargs.setdefault("clip_length", cfg.clip_length)
        kwargs.setdefault("top_k", cfg.test_topk)
        if "detpro_context" not in kwargs:
            kwargs["detpro_context"], kwargs["text_note"] = find_detpro_context(encoder)
        if cfg.meta_arch == "image":  # LVIS-trained image models run frame by frame
            from .frame_predictor import OVFormerFramePredictor
            cls = cls if issubclass(cls, OVFormerFramePredictor) else OVFormerFramePredictor
        return cls(loaded.model, encoder, weights_label=loaded.label, untrained=loaded.untrained,
                   classifier=loaded.classifier, **kwargs)

    def embed_vocabulary(self, vocabulary: Vocabulary | Sequence[str],
                         templates: Sequence[str] | None = None,
                         category_ids: Sequence[int] | None = None) -> TextEmbeddings:
        """Text embeddings of a vocabulary for this model, each class from its best source:
        the checkpoint's own classifier, DetPro prompts, a prompt ensemble (or ``templates``).
        Changes nothing on the predictor; pass the result to :meth:`predict`. See
        :func:`ovformer.text_embeddings.embed_vocabulary`.

        Args:
            vocabulary: a :class:`Vocabulary`, or names (``category_ids`` default 1..K).
        """
        if not isinstance(vocabulary, Vocabulary):
            vocabulary = Vocabulary.from_names([n for n in vocabulary if n and n.strip()],
                                               category_ids)
        elif category_ids is not None:
            raise ValueError("category_ids go with names; a Vocabulary carries its own ids")
        return embed_vocabulary(vocabulary, self.clip, classifier=self.classifier,
                                detpro_context=self.detpro_context, templates=templates,
                                note=self.text_note)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=DTYPES[self.dtype])

    def prepare(self, rgb: Sequence[np.ndarray], options: PredictOptions | None = None
                ) -> tuple[torch.Tensor, tuple[int, int]]:
        """Frames ((H, W, 3) uint8) resized for the model: (T, 3, h, w) float and (h, w)."""
        opts = (options or self._defaults).over(self._defaults)
        h, w = rgb[0].shape[:2]
        size = resized_shape(h, w, opts.min_size, opts.max_size)
        x = resize_frames(frames_to_tensor(rgb), size)
        if self.device.type == "cuda":  # pinned: the copy overlaps the clip in flight
            return x.pin_memory().to(self.device, non_blocking=True), size
        return x, size

    @torch.inference_mode()
    def encode_clip(self, rgb: Sequence[np.ndarray]) -> torch.Tensor:
        """(T, D) float32 CLIP image embeddings of whole frames. With a reduced model dtype the
        tower runs reduced too, where the hardware has it: fp16 autocast on CUDA (as the official
        evaluation), bf16 autocast on a CPU with bf16 units (there float32 CLIP was 12% of a bf16
        frame's time); with "fp32", and where bf16 would be emulated, in float32. CLIP feeds
        the classifier only, so the masks do not depend on it."""
        if self.device.type == "cuda" and self.dtype != "fp32":
            ctx = torch.autocast("cuda", dtype=torch.float16)
        elif self.device.type == "cpu" and self.dtype == "bf16" and native_dtype("cpu", "bf16"):
            ctx = torch.autocast("cpu", dtype=torch.bfloat16)
        else:
            ctx = contextlib.nullcontext()
        with ctx:
            return self.clip.encode_frames(np.stack(rgb)).float().to(self.device)

    @torch.inference_mode()
    def forward(self, x: torch.Tensor, clip_embeds: torch.Tensor,
                text_embeds: torch.Tensor) -> ClipOutput:
        """The model on one clip ((T, 3, h, w) frames, (T, D) CLIP embeddings, (K, D) class
        embeddings) in ``self.dtype``; batch size 1."""
        with self._autocast():
            return self.model(x[None], clip_embeds[None], text_embeds.to(self.device))

    @torch.inference_mode()
    def run_clip(self, rgb: Sequence[np.ndarray], text_embeds: torch.Tensor,
                 options: PredictOptions | None = None) -> tuple[ClipResult, tuple[int, int]]:
        """Model outputs for consecutive frames ((H, W, 3) uint8) and the model input size."""
        x, size = self.prepare(rgb, options)
        out = self.forward(x, self.encode_clip(rgb), text_embeds)
        return ClipResult.from_output(out), size

    def _call(self, text: TextEmbeddings | None, options: PredictOptions | None
              ) -> tuple[TextEmbeddings, torch.Tensor, PredictOptions]:
        """A call's vocabulary (the default one if None), its embeddings on the device and its
        options with the defaults filled in."""
        text = text if text is not None else self._default_text
        if text is None:
            raise ValueError("no vocabulary: pass text=predictor.embed_vocabulary(names)")
        return text, text.embeds.to(self.device), (options or self._defaults).over(self._defaults)

    @torch.inference_mode()
    def predict(self, source: Iterable[Any], text: TextEmbeddings | None = None,
                options: PredictOptions | None = None, *, num_frames: int | None = None,
                on_clip: Callable[[ClipProgress], None] | None = None) -> VideoPrediction:
        """Predict one video.

        Args:
            source: a :class:`~ovformer.data.video.VideoSource` or any iterable of (H, W, 3)
                uint8 frames (or objects with an ``rgb`` attribute).
            text: the vocabulary (:meth:`embed_vocabulary`); default: :attr:`default_text`.
            options: this call's settings; None fields take :attr:`defaults`.
            num_frames: expected frame count, for progress; read from ``source.info`` if there.
            on_clip: called after each clip with a :class:`ClipProgress`.
        """
        text, embeds, opts = self._call(text, options)
        total = num_frames or getattr(getattr(source, "info", None), "num_frames", None) or None
        start = time.monotonic()
        size = out_size = None
        keep = QueryBankWriter(opts.keep_queries_dir) if opts.keep_queries_dir else None
        with self._new_state(opts.spill_dir, np.float16 if opts.spill_half else np.float32,
                             keep) as state:
            for index, (rgb, x, size) in enumerate(self._prepared(source,
                                                                  self._group_length(opts),
                                                                  opts)):
                out_size = rgb[0].shape[:2]
                aligned = self._add(state, self.forward(x, self.encode_clip(rgb), embeds))
                if on_clip is not None:
                    done = state.num_frames
                    elapsed = time.monotonic() - start
                    eta = elapsed / done * (total - done) if total and total >= done else None
                    preview = self._preview(aligned, size, out_size, opts.preview_k)
                    on_clip(ClipProgress(done, total, elapsed, eta, index,
                                         done - len(rgb), preview))
            if out_size is None:
                raise ValueError("the video has no frames")
            result = self._finish(state, size, out_size, text, opts.top_k)
            if keep is not None:  # every query, for click-to-add (see .queries)
                keep.finish(video_scores(*state.video_logits()), self._padded(size), size,
                            out_size, text.vocabulary.names, text.vocabulary.ids)
                result.queries_dir = str(keep.path)
            return result

    # The steps :meth:`predict` runs, which the frame-by-frame predictor of image models
    # replaces (frames per model call, the per-video state, how an output joins it).
    def _group_length(self, opts: PredictOptions) -> int:
        return opts.clip_length

    def _new_state(self, spill_dir: str | Path | None, dtype: type,
                   keep: QueryBankWriter | None) -> VideoState:
        return VideoState(spill_dir, dtype, keep=keep)

    def _add(self, state: VideoState, out: ClipOutput) -> ClipResult:
        """Join one clip's output to the video; returns it aligned (what the preview reads)."""
        return state.add(ClipResult.from_output(out))

    def _prepared(self, source: Iterable[Any], length: int, opts: PredictOptions
                  ) -> Iterator[tuple[list[np.ndarray], torch.Tensor, tuple[int, int]]]:
        """(frames, model input (T, 3, h, w), (h, w)) per clip of ``length`` frames, decoded
        and resized :attr:`prefetch_clips` ahead in a background thread (0: in this thread)."""
        def clips():
            for rgb in _check_sizes(_chunks(source, length)):
                yield (rgb, *self.prepare(rgb, opts))
        return prefetch(clips(), self.prefetch_clips) if self.prefetch_clips > 0 else clips()

    def _padded(self, size: tuple[int, int]) -> tuple[int, int]:
        d = self.model.size_divisibility
        return math.ceil(size[0] / d) * d, math.ceil(size[1] / d) * d

    def _preview(self, clip: ClipResult, size: tuple[int, int], out_size: tuple[int, int],
                 k: int) -> list[tuple[int, int, float, np.ndarray]]:
        if k <= 0:  # progress only (the CLI): resizing masks nobody shows is wasted work
            return []
        best, labels = video_scores(clip.logits, clip.object_logits).max(1)
        order = best.argsort(descending=True)[:k]
        masks = resize_mask_logits(clip.masks[order], self._padded(size), size, out_size)
        # one copy to the host for all of it (on CUDA, each int()/float() would be a sync)
        masks, labels, best, order = (t.cpu() for t in (masks, labels[order], best[order], order))
        return [(q, lab, score, m) for q, lab, score, m in
                zip(order.tolist(), labels.tolist(), best.tolist(), masks.numpy())]

    def _finish(self, state: VideoState, size: tuple[int, int], out_size: tuple[int, int],
                text: TextEmbeddings, top_k: int) -> VideoPrediction:
        scores = video_scores(*state.video_logits())  # (Q, K)
        top, queries, labels = select_topk(scores, top_k)
        ids = text.vocabulary.ids
        pairs = [{"query": int(q), "label": int(lab), "score": float(s),
                  "category_id": ids[int(lab)]}
                 for s, q, lab in zip(top.tolist(), queries.tolist(), labels.tolist())]
        unique = list(dict.fromkeys(p["query"] for p in pairs))  # best pair first
        segs: dict[int, list[dict | None]] = {q: [] for q in unique}
        for _, masks in state.iter_frame_masks(torch.tensor(unique, dtype=torch.long),
                                               self._padded(size), size, out_size,
                                               device=self.device):
            for q, m in zip(unique, masks):
                segs[q].append(encode_mask(m) if m.any() else None)
        k_alt = min(self.num_alternatives, scores.shape[1])
        alt_s, alt_l = scores[unique].topk(k_alt, dim=1) if unique else (None, None)
        tracks = []
        for i, q in enumerate(unique):
            best = next(p for p in pairs if p["query"] == q)
            alts = [(int(lab), float(s)) for s, lab in zip(alt_s[i].tolist(), alt_l[i].tolist())]
            tracks.append(Track(q, best["label"], best["score"], alts, segs[q]))
        return VideoPrediction(text.vocabulary.names, ids, out_size[0], out_size[1],
                               state.num_frames, self.weights_label, self.untrained, pairs, tracks,
                               text.summary())
