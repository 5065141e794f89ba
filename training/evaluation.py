"""Periodic evaluation: run the streaming predictor on a validation dataset and score it
with the YouTube-VIS evaluator (`ovformer.ytvis.evaluate`).

The validation set brings its own vocabulary (open vocabulary: it may name classes the
training data never had); the predictor's 1-based vocabulary indices are mapped back to
the dataset's category ids by the predictor (`set_vocabulary(..., category_ids=...)`).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image

from ovformer.vocab import Vocabulary
from training.data import YTVISFolder


def _frames(folder: YTVISFolder, video: dict):
    for name in video["file_names"]:
        yield np.asarray(Image.open(folder.image_root / name).convert("RGB"))


@torch.no_grad()
def evaluate_on_folder(model: torch.nn.Module, clip_encoder: Any, folder: YTVISFolder, *,
                       min_size: int, max_size: int, clip_length: int, top_k: int,
                       device: torch.device, templates: Sequence[str] | None = None,
                       max_videos: int | None = None,
                       on_video: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """YouTube-VIS mAP of ``model`` on a dataset.

    Args:
        model: the (unwrapped) OVFormer; put in eval mode for the call, then restored.
        clip_encoder: a `ovformer.clip.ClipEncoder`.
        folder: the validation dataset.
        min_size, max_size, clip_length, top_k: predictor settings.
        max_videos: evaluate the first N videos only (the GT is cut to match).
        on_video: called with (videos done, total) after each video.

    Returns:
        The evaluator's dict: AP, AP50, ... as fractions in [0, 1] (-1 where undefined).
    """
    from ovformer.inference.predictor import OVFormerVideoPredictor
    from ovformer.ytvis.evaluate import evaluate

    was_training = model.training
    model.eval()
    try:
        predictor = OVFormerVideoPredictor(model, clip_encoder, min_size=min_size, max_size=max_size,
                                           clip_length=clip_length, top_k=top_k, device=str(device),
                                           dtype="fp32", weights_label="training")
        predictor.set_vocabulary(Vocabulary.from_categories(folder.categories), templates)
        videos = folder.videos[:max_videos] if max_videos else folder.videos
        results: list[dict] = []
        for n, video in enumerate(videos):
            pred = predictor.predict(_frames(folder, video), num_frames=len(video["file_names"]))
            results.extend(pred.results(video["id"]))
            if on_video is not None:
                on_video(n + 1, len(videos))
    finally:
        model.train(was_training)
    ids = {v["id"] for v in videos}
    gt = dict(folder.data)
    gt["videos"] = list(videos)
    gt["annotations"] = [a for a in folder.data.get("annotations", []) if a["video_id"] in ids]
    return evaluate(gt, results)
