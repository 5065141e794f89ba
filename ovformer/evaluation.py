"""Predict a dataset and score it: the functions ``ovformer predict --eval``, training's
periodic evaluation and the app's closed loop call.

:func:`score_dataset` is the one place that scores results against a dataset (the ground truth
cut to the videos predicted, then :func:`ovformer.ytvis.evaluate.evaluate`);
:func:`evaluate_dataset` is :func:`predict_dataset` followed by it, and ``ovformer predict
--eval`` calls it on the merged results of its (resumable, sharded) prediction loop.

The dataset brings its own vocabulary (its ``categories``, ids kept), embedded by the
predictor's :meth:`~ovformer.inference.types.VideoPredictor.embed_vocabulary` (the model's own
classifier first), unless the caller passes text embeddings.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

from .data.video import DEFAULT_FOLDER_FPS, VideoInfo, VideoSource
from .inference.types import PredictOptions, VideoPredictor
from .text_embeddings import TextEmbeddings
from .vocab import Vocabulary
from .ytvis.dataset import DatasetFolder
from .ytvis.evaluate import evaluate
from .ytvis.io import GroundTruth, Video
from .ytvis.results import ResultEntry

__all__ = ["dataset_video", "dataset_vocabulary", "evaluate_dataset", "predict_dataset",
           "score_dataset"]


def dataset_video(dataset: DatasetFolder, video: Video, max_frames: int | None = None) -> VideoSource:
    """A dataset video's listed frames as a stream (exactly those frames: the annotations index
    them, so no frame-rate sampling applies)."""
    files = dataset.frame_paths[video.id]
    n = len(files) if max_frames is None else min(max_frames, len(files))
    info = VideoInfo(files[0].parent if files else dataset.root, video.width, video.height, n,
                     float(DEFAULT_FOLDER_FPS))
    return VideoSource(info, fps=None, max_frames=max_frames, frame_files=files)


def dataset_vocabulary(dataset: DatasetFolder) -> Vocabulary:
    """The dataset's categories as a vocabulary (sorted by id, partitions kept)."""
    return Vocabulary.from_categories(dataset.gt.categories)


def _videos(dataset: DatasetFolder, max_videos: int | None) -> list[Video]:
    return dataset.gt.videos[:max_videos] if max_videos else list(dataset.gt.videos)


def predict_dataset(predictor: VideoPredictor, dataset: DatasetFolder, *,
                    text: TextEmbeddings | None = None, options: PredictOptions | None = None,
                    max_videos: int | None = None,
                    on_video: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
    """YouTube-VIS results of ``predictor`` on every video of ``dataset``.

    Args:
        text: the vocabulary; default: the dataset's categories through the predictor.
        options: per-call predictor settings (defaults: the predictor's).
        max_videos: the first N videos only.
        on_video: called with (videos done, total) after each video.
    Returns:
        Results-layout entries (``video_id``, ``category_id``, ``score``, ``segmentations``).
    """
    text = text if text is not None else predictor.embed_vocabulary(dataset_vocabulary(dataset))
    videos = _videos(dataset, max_videos)
    results: list[dict[str, Any]] = []
    for n, video in enumerate(videos):
        pred = predictor.predict(dataset_video(dataset, video), text, options,
                                 num_frames=video.length)
        results.extend(pred.results(video.id))
        if on_video is not None:
            on_video(n + 1, len(videos))
    return results


def score_dataset(dataset: DatasetFolder | GroundTruth,
                  results: Iterable[Mapping[str, Any] | ResultEntry],
                  video_ids: Iterable[int] | None = None) -> dict[str, Any]:
    """YouTube-VIS / LV-VIS mAP of ``results`` on ``dataset``, its ground truth cut to
    ``video_ids`` first (so a run over part of a dataset is not charged for videos it never
    predicted).

    Args:
        dataset: the dataset (or its ground truth); it is not modified.
        results: results-layout entries (``video_id``, ``category_id``, ``score``,
            ``segmentations``: one RLE or None per frame of the video); every ``video_id`` must
            be among the kept videos.
        video_ids: the videos predicted; None keeps every video of the dataset.
    Returns:
        :func:`ovformer.ytvis.evaluate.evaluate`'s dict: AP, AP50, AP75, ... as fractions
        (-1 where undefined), AP_base/AP_novel with LV-VIS partitions, per_category,
        num_videos, num_results.
    Raises:
        YTVISFormatError: the ground truth has no annotations and ``video_ids`` is None.
        ValueError: a result names a video that is not kept.
    """
    gt = (dataset.gt if isinstance(dataset, DatasetFolder) else dataset).to_dict()
    if video_ids is not None:
        ids = set(video_ids)
        gt["videos"] = [v for v in gt["videos"] if v["id"] in ids]
        # a split without annotations scores -1 here instead of raising: what
        # evaluate_dataset has always done
        gt["annotations"] = [a for a in gt.get("annotations") or [] if a["video_id"] in ids]
    return evaluate(gt, results)


def evaluate_dataset(predictor: VideoPredictor, dataset: DatasetFolder, *,
                     text: TextEmbeddings | None = None, options: PredictOptions | None = None,
                     max_videos: int | None = None,
                     on_video: Callable[[int, int], None] | None = None
                     ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """:func:`predict_dataset`, then :func:`score_dataset` on the same videos.

    Returns:
        (metrics: AP, AP50, ... as fractions, -1 where undefined; the results).
    """
    results = predict_dataset(predictor, dataset, text=text, options=options,
                              max_videos=max_videos, on_video=on_video)
    ids = [v.id for v in _videos(dataset, max_videos)]
    return score_dataset(dataset, results, ids), results
