"""Bringing videos in: decode a video file or a zip of frames into JPEG frames on disk.

Limits (upload size, duration, frame count) are checked before any work and reported with a
message that says which limit and how to change it. Nothing is registered in the store until
every frame is on disk, so a bad file never leaves half a video behind.
"""
from __future__ import annotations

import io
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from ovformer.data.video import VideoDecodeError, open_video

IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_EXT = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".gif")


class MediaError(ValueError):
    """A file that cannot be imported; the message is shown in the page as is."""


@dataclass
class Limits:
    """Upload limits, set from the command line (``--max-upload-mb``, ``--max-duration``)."""

    max_upload_mb: float = 500.0
    max_duration_s: float = 600.0
    max_frames: int = 3000
    max_side: int = 1280  # frames are downscaled so the longer side is at most this


@dataclass
class Decoded:
    """Frames written as ``NNNNN.jpg`` into ``folder``."""

    folder: Path
    width: int
    height: int
    num_frames: int
    fps: float
    names: list[str]  # original frame file names (zip import) or synthesized ones


def safe_name(path: str | Path) -> str:
    """A file-system- and YTVIS-friendly video name from an upload's file name."""
    stem = Path(str(path)).name
    for ext in VIDEO_EXT + (".zip",):
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._") or "video"


def check_upload(path: str | Path, limits: Limits) -> None:
    p = Path(path)
    if not p.exists():
        raise MediaError(f"upload {p.name} is missing on the server; please upload it again")
    mb = p.stat().st_size / 2**20
    if mb > limits.max_upload_mb:
        raise MediaError(f"{p.name} is {mb:.0f} MB; the upload limit is {limits.max_upload_mb:.0f} MB "
                         "(start the app with --max-upload-mb to change it)")


def _fit(img: Image.Image, max_side: int) -> Image.Image:
    w, h = img.size
    s = max_side / max(w, h)
    if s >= 1:
        return img
    # even sizes keep H.264 rendering of the overlay video happy
    return img.resize((max(2, int(w * s) // 2 * 2), max(2, int(h * s) // 2 * 2)), Image.BILINEAR)


Progress = Callable[[float], None]


def decode_video(path: str | Path, out: Path, fps: float | None, limits: Limits,
                 progress: Progress | None = None) -> Decoded:
    """Decode through :func:`ovformer.data.video.open_video` (rotation, variable frame rate and
    its one frame-rate rule: the first frame at or after each tick of an ``fps`` clock; None =
    every frame), then store the frames as JPEG files, downscaled to ``limits.max_side``."""
    check_upload(path, limits)
    name = Path(path).name
    try:
        src = open_video(path, fps=fps or None, max_frames=limits.max_frames)
    except VideoDecodeError as e:
        raise MediaError(f"{name} is not a readable video ({e.problem})") from None
    duration = src.info.duration_s
    if duration and duration > limits.max_duration_s:
        raise MediaError(f"{name} lasts {duration:.0f} s; the limit is {limits.max_duration_s:.0f} s "
                         "(trim it, or start the app with --max-duration)")
    n, size = 0, None
    try:
        for frame in src:
            img = _fit(Image.fromarray(frame.rgb), limits.max_side)
            size = img.size
            img.save(out / f"{n:05d}.jpg", quality=92)
            n += 1
            if progress and duration and n % 5 == 0:
                progress(min(1.0, frame.time_s / duration))
    except VideoDecodeError as e:
        if n == 0:
            raise MediaError(f"{name} could not be decoded ({e.problem})") from None
        # a truncated tail: keep what decoded, the page says how many frames came out
    if n == 0 or size is None:
        raise MediaError(f"{name} contains no decodable frames")
    rate = src.info.fps or 25.0
    keep_fps = min(rate, fps) if fps else rate
    return Decoded(out, size[0], size[1], n, float(keep_fps), [f"{i:05d}.jpg" for i in range(n)])


def decode_zip(path: str | Path, out: Path, limits: Limits, fps: float = 5.0,
               progress: Progress | None = None) -> Decoded:
    """A zip of image files, taken in natural file-name order (``2.jpg`` before ``10.jpg``)."""
    check_upload(path, limits)
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise MediaError(f"{Path(path).name} is not a valid zip file") from None
    with zf:
        names = [n for n in zf.namelist() if n.lower().endswith(IMAGE_EXT) and not Path(n).name.startswith(".")
                 and "__MACOSX" not in n]
        if not names:
            raise MediaError(f"{Path(path).name} contains no image files (.jpg/.png)")
        key = lambda s: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]  # noqa: E731
        names.sort(key=key)
        if len(names) > limits.max_frames:
            raise MediaError(f"{len(names)} frames; the limit is {limits.max_frames} (--max-frames)")
        size = None
        for i, n in enumerate(names):
            try:
                img = Image.open(io.BytesIO(zf.read(n))).convert("RGB")
            except Exception:
                raise MediaError(f"{n} in the zip is not a readable image") from None
            img = _fit(img, limits.max_side)
            if size is None:
                size = img.size
            elif img.size != size:
                img = img.resize(size, Image.BILINEAR)  # YTVIS needs one size per video
            img.save(out / f"{i:05d}.jpg", quality=92)
            if progress and i % 5 == 0:
                progress(i / len(names))
    return Decoded(out, size[0], size[1], len(names), fps, [Path(n).name for n in names])


def decode_any(path: str | Path, out: Path, fps: float | None, limits: Limits,
               progress: Progress | None = None) -> Decoded:
    """Dispatch on the file type; ``out`` is removed again if decoding fails."""
    try:
        if zipfile.is_zipfile(path):
            return decode_zip(path, out, limits, fps or 5.0, progress)
        return decode_video(path, out, fps, limits, progress)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise


def load_frame(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))
