"""Periodic evaluation: the model being trained, put behind a predictor, on a validation
dataset through the library's one "predict a dataset and score it" function
(:func:`ovformer.evaluation.evaluate_dataset`).

The validation set brings its own vocabulary (open vocabulary: it may name classes the
training data never had). Classes of the training vocabulary score with the embeddings the
model is being trained against (``classifier``), others are embedded as every other path
embeds new classes (:func:`ovformer.text_embeddings.embed_vocabulary`).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from ovformer.clip import ClipEncoder
from ovformer.text_embeddings import StoredClassifier
from ovformer.ytvis.dataset import load_dataset_folder
from training.data import YTVISFolder


@torch.no_grad()
def evaluate_on_folder(model: torch.nn.Module, clip_encoder: ClipEncoder, folder: YTVISFolder, *,
                       min_size: int, max_size: int, clip_length: int, top_k: int,
                       device: torch.device, templates: Sequence[str] | None = None,
                       classifier: StoredClassifier | None = None,
                       detpro_context: torch.Tensor | None = None,
                       max_videos: int | None = None,
                       on_video: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """YouTube-VIS mAP of ``model`` on a dataset.

    Args:
        model: the (unwrapped) OVFormer; put in eval mode for the call, then restored.
        clip_encoder: the frozen CLIP of the run.
        folder: the validation dataset.
        min_size, max_size, clip_length, top_k: predictor settings.
        templates: prompt templates of the run for classes new to ``classifier``.
        classifier: the training vocabulary with the text embeddings the run trains against.
        detpro_context: DetPro prompt contexts of the run, if any.
        max_videos: evaluate the first N videos only (the GT is cut to match).
        on_video: called with (videos done, total) after each video.

    Returns:
        The evaluator's dict: AP, AP50, ... as fractions in [0, 1] (-1 where undefined).
    """
    from ovformer.evaluation import dataset_vocabulary, evaluate_dataset
    from ovformer.inference.predictor import OVFormerVideoPredictor

    was_training = model.training
    model.eval()
    try:
        predictor = OVFormerVideoPredictor(model, clip_encoder, min_size=min_size, max_size=max_size,
                                           clip_length=clip_length, top_k=top_k, device=str(device),
                                           dtype="fp32", weights_label="training",
                                           classifier=classifier, detpro_context=detpro_context)
        dataset = load_dataset_folder(folder.annotation_file, check_frames=False)
        text = predictor.embed_vocabulary(dataset_vocabulary(dataset), templates)
        metrics, _ = evaluate_dataset(predictor, dataset, text=text, max_videos=max_videos,
                                      on_video=on_video)
    finally:
        model.train(was_training)
    return metrics
