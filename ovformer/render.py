"""Render stage: draw tracked masks over frames and encode a browser-playable H.264 mp4.

Each track gets a deterministic colour (`track_color`), a translucent fill, a solid
contour and a "#id label" tag. `render_overlay_video` encodes frame by frame, so a long
video never sits in memory; the mp4 is H.264 (libx264) yuv420p with even dimensions and
`+faststart` (index first), the combination every browser plays while it downloads.

Example:
    >>> src = open_video("bikes.mp4")
    >>> render_overlay_video((f.rgb for f in src), lambda i: tracks[i], "out.mp4", src.info.fps)
"""

from __future__ import annotations

import colorsys
import functools
import os
import uuid
from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["TrackItem", "track_color", "overlay_frame", "render_overlay_video"]

TrackItem = tuple[int, str, np.ndarray]
"""(track_id, label, mask): mask is an (H, W) bool array (non-zero counts as inside)."""

_GOLDEN = 0.618033988749895


def track_color(track_id: int) -> tuple[int, int, int]:
    """Deterministic RGB colour of a track: hues step by the golden ratio, so consecutive
    ids land far apart on the colour wheel and no palette runs out."""
    hue = (0.13 + track_id * _GOLDEN) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
    return int(r * 255 + 0.5), int(g * 255 + 0.5), int(b * 255 + 0.5)


@functools.lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:  # Pillow >= 10.1 ships a scalable default font when FreeType is available
        return ImageFont.load_default(size=size)
    except (TypeError, ValueError, OSError):  # pragma: no cover - Pillow without FreeType
        return ImageFont.load_default()


def _erode(mask: np.ndarray, steps: int) -> np.ndarray:
    """4-neighbour binary erosion, `steps` times (pixels at the image border erode too)."""
    m = mask
    for _ in range(steps):
        p = np.pad(m, 1, constant_values=False)
        m = m & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return m


def overlay_frame(rgb: np.ndarray, items: Iterable[TrackItem], *, alpha: float = 0.45) -> np.ndarray:
    """Draw masks, contours and "#id label" tags over one frame.

    Args:
        rgb: (H, W, 3) uint8 frame; not modified.
        items: (track_id, label, mask) per visible track; masks are (H, W), non-zero inside.
            An empty label draws "#id" only; an empty mask draws nothing.
        alpha: opacity of the mask fill.

    Returns:
        A new (H, W, 3) uint8 array.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 frame, got {rgb.shape} {rgb.dtype}")
    h, w = rgb.shape[:2]
    out = rgb.copy()
    # Contour width grows with the frame so it stays visible on 1080p yet thin on 64 px tests.
    thick = max(1, round(min(h, w) / 240))
    tags: list[tuple[int, str, tuple[int, int, int], int, int]] = []
    for track_id, label, mask in items:
        m = np.asarray(mask)
        if m.shape != (h, w):
            raise ValueError(f"mask of track {track_id} is {m.shape}, the frame is {(h, w)}")
        m = m.astype(bool, copy=False)
        rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        if rows.size == 0:
            continue
        # Work inside the mask's bounding box: masks are usually small next to the frame.
        y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        sub, region = m[y0:y1, x0:x1], out[y0:y1, x0:x1]  # region is a view into `out`
        color = track_color(track_id)
        fill = np.float32(alpha) * np.array(color, np.float32)
        region[sub] = np.round(region[sub].astype(np.float32) * (1.0 - alpha) + fill).clip(0, 255).astype(np.uint8)
        # Eroding the tight crop equals eroding the frame: outside the box is False anyway.
        region[sub & ~_erode(sub, thick)] = color
        tags.append((track_id, label, color, x0, y0))
    if not tags:
        return out
    image = Image.fromarray(out)
    draw = ImageDraw.Draw(image)
    font = _font(max(10, round(min(h, w) / 28)))
    for track_id, label, color, x0, y0 in tags:
        text = f"#{track_id} {label}".strip()
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left + 4, bottom - top + 4
        # Put the tag just above the mask's top-left corner, else inside it; keep it on screen.
        x = min(max(0, x0), max(0, w - tw))
        y = y0 - th if y0 - th >= 0 else min(y0, max(0, h - th))
        draw.rectangle((x, y, x + tw - 1, y + th - 1), fill=color)
        ink = (0, 0, 0) if 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2] > 140 else (255, 255, 255)
        draw.text((x + 2 - left, y + 2 - top), text, fill=ink, font=font)
    return np.array(image)  # a writable copy


def render_overlay_video(
    frames: Iterable[np.ndarray | Any],
    tracks_per_frame: Callable[[int], Sequence[TrackItem]],
    out_path: str | os.PathLike,
    fps: float,
    *,
    alpha: float = 0.45,
    crf: int = 20,
    preset: str = "veryfast",
) -> Path:
    """Encode an overlay video frame by frame.

    Args:
        frames: (H, W, 3) uint8 frames (objects with an `.rgb` array, like
            `ovformer.data.video.Frame`, are accepted too); all the same size.
        tracks_per_frame: frame index (0..) -> the (track_id, label, mask) items to draw.
        out_path: destination `.mp4` (or `.mov`); written to a temporary name in the same
            folder and renamed at the end, so a reader never sees a half-written file.
        fps: output frame rate.
        alpha: mask fill opacity. crf, preset: libx264 quality/speed settings.

    Returns:
        `out_path` as a Path.

    Raises:
        ValueError: no frames, frames of different sizes, bad fps or masks.
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    out_path = Path(out_path)
    fmt = "mov" if out_path.suffix.lower() == ".mov" else "mp4"
    # A unique hidden name beside the target: concurrent renders never share a temp file
    # (not mkstemp: its 0600 mode would survive the rename and hide the file from servers).
    tmp = out_path.with_name(f".{out_path.stem}.{uuid.uuid4().hex[:12]}.partial.{fmt}")
    container = None
    size: tuple[int, int] = (0, 0)
    try:
        for i, f in enumerate(frames):
            rgb = np.asarray(getattr(f, "rgb", f))
            if container is None:
                size = rgb.shape[:2]
                container = av.open(str(tmp), mode="w", format=fmt, options={"movflags": "+faststart"})
                # 1001 keeps NTSC rates (30000/1001) exact while 12.5 -> 25/2.
                stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
                # yuv420p halves chroma in both axes, so H.264 needs even sizes: pad by one.
                stream.height, stream.width = size[0] + size[0] % 2, size[1] + size[1] % 2
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": str(crf), "preset": preset}
            elif rgb.shape[:2] != size:
                raise ValueError(f"frame {i} is {rgb.shape[:2]}, the first frame was {size}")
            drawn = overlay_frame(rgb, tracks_per_frame(i), alpha=alpha)
            if size[0] % 2 or size[1] % 2:
                drawn = np.pad(drawn, ((0, size[0] % 2), (0, size[1] % 2), (0, 0)), mode="edge")
            vf = av.VideoFrame.from_ndarray(drawn, format="rgb24")
            vf.pts = i  # time base is 1/fps
            container.mux(stream.encode(vf))
        if container is None:
            raise ValueError("render_overlay_video got no frames")
        container.mux(stream.encode(None))  # flush the encoder's delayed frames
        container.close()
        container = None
        os.replace(tmp, out_path)
    finally:
        if container is not None:
            try:
                container.close()
            except Exception:  # noqa: BLE001 - keep the original error, not the cleanup's
                pass
        tmp.unlink(missing_ok=True)
    return out_path
