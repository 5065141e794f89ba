"""What the review panel shows: overlaid frames, the track table, the timeline, the review queue.

Pure drawing (numpy, pandas, plotly; no Gradio): the annotate service calls these, the UI only
places their results."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from ovformer.render import overlay_frame, track_color

from .media import load_frame
from .store import Store, TrackRow, VideoRow, counts_mask

TABLE_HEADERS = ["id", "class", "score", "frames", "span", "alternatives (top-3)", "shown"]


def hex_color(track_id: int) -> str:
    return "#%02x%02x%02x" % track_color(track_id)


def overlay(store: Store, video: VideoRow, frame: int, tracks: dict[int, TrackRow],
            masks: dict[int, str], selected: int | None = None) -> np.ndarray:
    """The stored frame with the given tracks' masks drawn (the selected one tagged "(selected)")."""
    rgb = load_frame(store.frame_path(video.id, frame))
    items = []
    for tid, counts in sorted(masks.items()):
        if tid in tracks:
            mark = " (selected)" if tid == selected else ""
            items.append((tid, f"{tracks[tid].label}{mark}", counts_mask(counts, video.height, video.width)))
    return overlay_frame(rgb, items)


def frame_image(store: Store, video: VideoRow, frame: int, hidden: set[int], selected: int | None) -> np.ndarray:
    tracks = {t.id: t for t in store.tracks(video.id) if t.id not in hidden}
    return overlay(store, video, frame, tracks, store.frame_masks(video.id, frame), selected)


def review_priority(t: TrackRow, num_frames: int) -> float:
    """Lower = review first: low score and short tracks float to the top."""
    coverage = min(1.0, len(t.frames) / max(3.0, 0.5 * num_frames))
    return t.score * coverage


def queue_order(tracks: list[TrackRow], num_frames: int) -> list[TrackRow]:
    return sorted(tracks, key=lambda t: (review_priority(t, num_frames), t.id))


def spans(frames: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for f in sorted(frames):
        if out and f == out[-1][1] + 1:
            out[-1] = (out[-1][0], f)
        else:
            out.append((f, f))
    return out


def track_table(tracks: list[TrackRow], num_frames: int, hidden: set[int]) -> pd.DataFrame:
    """Rows in review-queue order (low score / short first)."""
    rows = []
    for t in queue_order(tracks, num_frames):
        sp = spans(t.frames)
        rows.append([t.id, t.label, round(t.score, 3), len(t.frames),
                     f"{sp[0][0]}-{sp[-1][1]}" if sp else "-",
                     ", ".join(f"{a} ({s:.2f})" for a, s in t.alternatives[:3]), t.id not in hidden])
    return pd.DataFrame(rows, columns=TABLE_HEADERS)


def timeline(tracks: list[TrackRow], num_frames: int, frame: int, hidden: set[int],
             selected: int | None = None) -> go.Figure:
    """One horizontal bar per track over the frames where it has a mask; the current frame marked."""
    fig = go.Figure()
    order = queue_order(tracks, num_frames)
    for t in order:
        xs: list[float | None] = []
        ys: list[str | None] = []
        for a, b in spans(t.frames):
            xs += [a - 0.4, b + 0.4, None]
            ys += [f"#{t.id} {t.label}"] * 2 + [None]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=f"#{t.id}",
                                 line={"color": hex_color(t.id), "width": 14 if t.id == selected else 9},
                                 opacity=0.35 if t.id in hidden else 1.0, hoverinfo="name+x", showlegend=False))
    fig.add_vline(x=frame, line_color="red", line_width=2, annotation_text=f"frame {frame}")
    fig.update_layout(height=max(180, 60 + 26 * len(order)), margin={"l": 10, "r": 10, "t": 40, "b": 30},
                      xaxis={"range": [-0.5, max(1, num_frames) - 0.5], "title": "frame"},
                      yaxis={"autorange": "reversed", "type": "category"}, template="plotly_white")
    return fig


def track_choices(tracks: list[TrackRow], num_frames: int) -> list[tuple[str, int]]:
    """Dropdown (label, value) pairs in review-queue order."""
    return [(f"#{t.id} {t.label} ({t.score:.2f}, {len(t.frames)} fr)", t.id) for t in queue_order(tracks, num_frames)]


def blank(width: int = 640, height: int = 272) -> np.ndarray:
    return np.full((height, width, 3), 235, np.uint8)
