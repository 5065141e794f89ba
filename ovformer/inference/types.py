"""What a video predictor takes and gives: per-call options, progress, predictions, the protocol.

Everything a call needs is an argument of that call (:class:`PredictOptions`, the text
embeddings); a predictor object holds only what is fixed for its life (model, CLIP, device,
default options), so concurrent users of one predictor cannot change each other's settings.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol, Sequence, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # only for annotations: keeps this module free of torch at import time
    from ..text_embeddings import TextEmbeddings
    from ..vocab import Vocabulary
    from .queries import Candidate, QueryBank


@dataclass(frozen=True)
class PredictOptions:
    """Settings of one :meth:`VideoPredictor.predict` call; None takes the predictor's default
    (its preset's test settings, :attr:`VideoPredictor.defaults`).

    Attributes:
        min_size, max_size: shorter-side resize for the model (360 R50, 480 Swin-B; max 1333).
        clip_length: frames per clip: 5 semi-online (released), 1 online, 0 offline (whole
            video). Image models run in windows of their own size and ignore it.
        top_k: (query, class) pairs kept per video (50 released for video models).
        preview_k: queries in each clip's provisional preview (0: progress only).
        spill_dir: where per-clip mask logits go (a private temporary folder by default).
        spill_half: spill them as float16 (half the disk; masks whose logit is within float16
            rounding of 0 may flip) instead of float32 (results identical to holding the video
            in memory). None: float32.
        keep_queries_dir: keep every query of the video in this folder (a
            :class:`~.queries.QueryBank`: int8 low-res mask logits per clip and the video-level
            class scores), so :meth:`VideoPrediction.candidates` can turn any query into a track
            later without the model. None (default): nothing is kept.
    """
    min_size: int | None = None
    max_size: int | None = None
    clip_length: int | None = None
    top_k: int | None = None
    preview_k: int | None = None
    spill_dir: str | Path | None = None
    spill_half: bool | None = None
    keep_queries_dir: str | Path | None = None

    def over(self, defaults: "PredictOptions") -> "PredictOptions":
        """These options with every None taken from ``defaults``."""
        return PredictOptions(**{f.name: getattr(defaults, f.name) if getattr(self, f.name) is None
                                 else getattr(self, f.name) for f in dataclasses.fields(self)})


@dataclass
class Track:
    """One query of the video: its best class, alternatives and masks.

    alternatives: top (label, score) pairs over the whole vocabulary, best first.
    segmentations: compressed RLE (str counts) per frame at the original size, None where empty.
    """
    query: int
    label: int
    score: float
    alternatives: list[tuple[int, float]]
    segmentations: list[dict | None]


@dataclass
class ClipProgress:
    """Reported after every clip. ``preview`` holds (query, label, score, masks (t, H, W) bool)
    of the clip's best queries, scored on that clip alone (provisional)."""
    frames_done: int
    total_frames: int | None
    elapsed_s: float
    eta_s: float | None
    clip_index: int
    frame_start: int
    preview: list[tuple[int, int, float, np.ndarray]] = field(default_factory=list)


@dataclass
class VideoPrediction:
    """Everything predicted for one video. ``pairs`` are (query, class) pairs, best first, as
    dicts ``{query, label, category_id, score}``; their masks are the query's track masks.
    ``text_summary`` says where each class's text embedding came from. ``queries_dir`` is the
    :class:`~.queries.QueryBank` of every query when the call kept one
    (:attr:`PredictOptions.keep_queries_dir`)."""
    vocabulary: list[str]
    category_ids: list[int]
    height: int
    width: int
    num_frames: int
    weights_label: str
    untrained: bool
    pairs: list[dict[str, Any]]
    tracks: list[Track]
    text_summary: str = ""
    queries_dir: str | None = None

    def query_bank(self) -> "QueryBank":
        """The bank of every query of this video (opened once, read lazily)."""
        if not self.queries_dir:
            raise RuntimeError("no query bank: predict with PredictOptions(keep_queries_dir=...)")
        bank = self.__dict__.get("_bank")
        if bank is None:
            from .queries import QueryBank
            bank = self.__dict__["_bank"] = QueryBank(self.queries_dir)
        return bank

    def candidates(self, frame: int, points: Iterable[tuple[float, float, bool]],
                   **kwargs: Any) -> "list[Candidate]":
        """Queries whose mask fits clicks on ``frame``, best first (the model does not run).

        ``points``: (x, y, positive) in original-frame pixels. Each :class:`~.queries.Candidate`
        has ``query``, ``score``, ``classes`` (top-5 (label, score) over the vocabulary) and
        ``segmentations()`` (its full-resolution track, RLE per frame, computed on demand).
        Keyword arguments go to :meth:`~.queries.QueryBank.candidates` (``limit``, ``exclude``,
        ``min_score``, ``class_weight``).
        """
        return self.query_bank().candidates(frame, points, **kwargs)

    def fix_candidates(self, query: int, frame: int,
                       points: Iterable[tuple[float, float, bool]], *, until: str = "clip",
                       **kwargs: Any) -> "list[Candidate]":
        """Masks from other queries that could replace track ``query`` on ``frame`` through
        the end of its clip (``until="clip"``) or of the video (``"video"``)."""
        return self.query_bank().fix_candidates(query, frame, points, until=until, **kwargs)

    def results(self, video_id: int) -> list[dict[str, Any]]:
        """YouTube-VIS results-layout entries for this video."""
        segs = {t.query: t.segmentations for t in self.tracks}
        return [{"video_id": video_id, "category_id": p["category_id"], "score": p["score"],
                 "segmentations": segs[p["query"]]} for p in self.pairs]


@runtime_checkable
class VideoPredictor(Protocol):
    """What the CLI, the app, training's evaluation and the closed loop need of a predictor;
    test fakes implement this."""
    weights_label: str
    untrained: bool

    @property
    def defaults(self) -> PredictOptions: ...

    @property
    def default_text(self) -> "TextEmbeddings | None": ...

    def embed_vocabulary(self, vocabulary: "Vocabulary | Sequence[str]",
                         templates: Sequence[str] | None = None) -> "TextEmbeddings": ...

    def predict(self, source: Iterable[Any], text: "TextEmbeddings | None" = None,
                options: PredictOptions | None = None, *, num_frames: int | None = None,
                on_clip: Callable[[ClipProgress], None] | None = None) -> VideoPrediction: ...
