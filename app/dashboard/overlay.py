"""The results browser's frame: a results file's masks on one frame, drawn by ovformer.render.

Masks are decoded by ovformer.ytvis.rle and drawn by ovformer.render (the one decoder and the
one drawing), so the dashboard shows exactly what the exported overlay videos show.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ovformer.render import TrackItem
from ovformer.ytvis.rle import decode_rle


def frame_items(entries: list[dict[str, Any]], frame: int, names: dict[int, str]) -> list[TrackItem]:
    """(track_id, label, mask) for one frame; track_id is the entry's 1-based position in the file.

    Using the file position (the evaluator's result id) keeps a track's colour the same on every
    frame and in the table below the image. Null and empty segmentations draw nothing.
    """
    items = []
    for e in entries:
        segs = e["segmentations"]
        seg = segs[frame] if frame < len(segs) else None
        mask = decode_rle(seg) if seg else None
        if mask is not None and np.any(mask):
            cid = e["category_id"]
            items.append((e["index"] + 1, f"{names.get(cid, f'class {cid}')} {e['score']:.2f}", mask))
    return items
