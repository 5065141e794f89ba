"""Bringing videos in: decode a video file or a zip of frames into JPEG frames on disk.

Limits (upload size, duration, frame count, pixels per frame, zip sizes) are checked before the
work they bound and reported with a message that says which limit and how to change it. Sizes
that a file declares are never trusted: a zip member is read at most up to its cap, a video's
duration and frame count are counted while decoding, an image's pixels are checked from its
header before it is decoded. Nothing is registered in the store until every frame is on disk,
so a bad file never leaves half a video behind.
"""
from __future__ import annotations

import errno
import io
import math
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from ovformer.data.video import VideoDecodeError, VideoLimitError, open_video

#: Most pixels of one frame or image (an 8K frame is 33 M); larger ones are refused unread.
MAX_PIXELS = 40_000_000
# PIL warns above MAX_IMAGE_PIXELS and raises above twice it: with half the limit, any image of more
# than MAX_PIXELS decoded anywhere in the process (an upload, the paint editor's layers) fails unread
Image.MAX_IMAGE_PIXELS = MAX_PIXELS // 2

IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_EXT = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".gif")


class MediaError(ValueError):
    """A file that cannot be imported; the message is shown in the page as is."""


@dataclass
class Limits:
    """Upload limits, set from the command line (``--max-upload-mb``, ``--max-duration``,
    ``--max-frames``); the rest are fixed bounds of one import."""

    max_upload_mb: float = 500.0
    max_duration_s: float = 600.0
    max_frames: int = 3000         # frames kept per video
    max_side: int = 1280           # frames are downscaled so the longer side is at most this
    max_pixels: int = MAX_PIXELS   # per decoded frame or image, checked before decoding it
    max_decoded: int = 0           # frames decoded per video, kept or not (0: 60 per second of max_duration_s)
    max_member_mb: float = 64.0    # one image inside a zip, uncompressed (read, never declared)
    max_zip_total_mb: float = 4096.0  # all images of a zip, uncompressed
    max_zip_entries: int = 100_000    # names in a zip's directory
    max_json_mb: float = 50.0      # a YouTube-VIS json imported as pre-labels

    @property
    def decoded_cap(self) -> int:
        return int(self.max_decoded or max(self.max_frames, math.ceil(60 * self.max_duration_s)))


def disk_full(e: BaseException) -> bool:
    """True for "no space left" / "quota exceeded" (a full disk is a message, not a crash)."""
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)


DISK_FULL = ("the server's disk is full: nothing was added (free some space, e.g. delete old exports, "
             "videos or runs, then try again)")


@dataclass
class Decoded:
    """Frames written as ``NNNNN.jpg`` into ``folder``."""

    folder: Path
    width: int
    height: int
    num_frames: int
    fps: float
    names: list[str]  # original frame file names (zip import) or synthesized ones
    note: str = ""    # what the page should know (stopped at a limit, a damaged tail)


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
    """Decode through :func:`ovformer.data.video.open_video` (rotation, variable frame rate,
    its frame-rate rule: the first frame at or after each tick of an ``fps`` clock; None = every
    frame), then store them as JPEG files, downscaled to ``limits.max_side``.

    Every decoded frame counts towards ``limits.decoded_cap`` and its timestamp towards the
    duration limit (the library counts them while decoding, whatever the container's metadata
    says); frames past ``max_frames`` are not decoded."""
    check_upload(path, limits)
    name = Path(path).name
    try:
        # the library's frame-rate rule; its limits refuse a pixel bomb before decoding and count
        # every decoded frame and timestamp
        src = open_video(path, fps=fps, max_frames=limits.max_frames, max_decoded=limits.decoded_cap,
                         max_duration_s=limits.max_duration_s, max_pixels=limits.max_pixels)
    except VideoLimitError as e:
        raise MediaError(f"{name} has {e.problem}; the limit is {limits.max_pixels / 1e6:.0f} megapixels "
                         "per frame") from None
    except VideoDecodeError as e:
        raise MediaError(f"{name} is not a readable video ({e.problem})") from None
    if src.info.width * src.info.height > limits.max_pixels:  # e.g. rotation metadata lied
        raise MediaError(f"{name} has {src.info.width}x{src.info.height} frames; the limit is "
                         f"{limits.max_pixels / 1e6:.0f} megapixels per frame")
    duration = src.info.duration_s
    if duration and duration > limits.max_duration_s:
        raise MediaError(f"{name} lasts {duration:.0f} s; the limit is {limits.max_duration_s:.0f} s "
                         "(trim it, or start the app with --max-duration)")
    n, size, note = 0, None, ""
    try:
        for frame in src:
            img = _fit(Image.fromarray(frame.rgb), limits.max_side)
            size = img.size
            img.save(out / f"{n:05d}.jpg", quality=92)
            n += 1
            if progress and duration and n % 5 == 0:
                progress(min(1.0, frame.time_s / duration))
        if n >= limits.max_frames:
            note = f"stopped at the --max-frames limit ({limits.max_frames} frames)"
    except VideoLimitError as e:
        if "frames to decode" in e.problem:
            raise MediaError(f"{name} has more than {limits.decoded_cap} frames to decode; the limit "
                             "follows --max-duration (trim the video)") from None
        raise MediaError(f"{name} lasts more than {limits.max_duration_s:.0f} s (counted while "
                         "decoding); the limit is --max-duration") from None
    except VideoDecodeError as e:
        if n == 0:
            raise MediaError(f"{name} could not be decoded ({e.problem})") from None
        # a truncated tail: keep what decoded, and say so
        note = f"the file is damaged after frame {n} ({e.problem}); the {n} frames before it were kept"
    except OSError as e:
        if disk_full(e):
            raise MediaError(DISK_FULL) from None
        raise
    if n == 0 or size is None:
        raise MediaError(f"{name} contains no decodable frames")
    rate = src.info.fps or 25.0
    keep_fps = min(rate, fps) if fps else rate
    return Decoded(out, size[0], size[1], n, float(keep_fps), [f"{i:05d}.jpg" for i in range(n)], note)


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limits: Limits, budget: list[int]) -> bytes:
    """A member's bytes, read at most up to its cap and the zip's remaining budget (the sizes
    the zip declares are not trusted)."""
    cap = min(int(limits.max_member_mb * 2**20), budget[0])
    with zf.open(info) as f:
        data = f.read(cap + 1)
    if len(data) > cap:
        if cap < int(limits.max_member_mb * 2**20):
            raise MediaError(f"the zip's images add up to more than {limits.max_zip_total_mb:.0f} MB "
                             "uncompressed; split it into several videos")
        raise MediaError(f"{info.filename} in the zip is larger than {limits.max_member_mb:.0f} MB "
                         "uncompressed; frames that large are not accepted")
    budget[0] -= len(data)
    return data


def decode_zip(path: str | Path, out: Path, limits: Limits, fps: float = 5.0,
               progress: Progress | None = None) -> Decoded:
    """A zip of image files, taken in natural file-name order (``2.jpg`` before ``10.jpg``)."""
    check_upload(path, limits)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise MediaError(f"{Path(path).name} is not a valid zip file") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_zip_entries:
            raise MediaError(f"{Path(path).name} lists {len(infos)} files; the limit is {limits.max_zip_entries}")
        members = [i for i in infos if i.filename.lower().endswith(IMAGE_EXT) and not i.is_dir()
                   and not Path(i.filename).name.startswith(".") and "__MACOSX" not in i.filename]
        if not members:
            raise MediaError(f"{Path(path).name} contains no image files (.jpg/.png)")
        key = lambda s: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]  # noqa: E731
        members.sort(key=lambda i: key(i.filename))
        if len(members) > limits.max_frames:
            raise MediaError(f"{len(members)} frames; the limit is {limits.max_frames} (--max-frames)")
        budget = [int(limits.max_zip_total_mb * 2**20)]
        size = None
        try:
            for i, info in enumerate(members):
                data = _read_member(zf, info, limits, budget)
                img = open_image(io.BytesIO(data), info.filename, limits)
                img = _fit(img, limits.max_side)
                if size is None:
                    size = img.size
                elif img.size != size:
                    img = img.resize(size, Image.BILINEAR)  # YTVIS needs one size per video
                img.save(out / f"{i:05d}.jpg", quality=92)
                if progress and i % 5 == 0:
                    progress(i / len(members))
        except zipfile.BadZipFile as e:
            raise MediaError(f"{Path(path).name} is damaged ({e})") from None
        except OSError as e:
            if disk_full(e):
                raise MediaError(DISK_FULL) from None
            raise
    return Decoded(out, size[0], size[1], len(members), fps, [Path(i.filename).name for i in members])


def open_image(data: io.BytesIO | Path, name: str, limits: Limits) -> Image.Image:
    """An RGB image, its pixel count checked from the header before the pixels are decoded."""
    try:
        img = Image.open(data)
        w, h = img.size
        if w * h > limits.max_pixels:
            raise MediaError(f"{name} is {w}x{h} pixels; the limit is {limits.max_pixels / 1e6:.0f} "
                             "megapixels per frame")
        img.draft("RGB", (limits.max_side, limits.max_side))  # JPEG: decode at a reduced scale
        return img.convert("RGB")
    except MediaError:
        raise
    except Image.DecompressionBombError:
        raise MediaError(f"{name} has too many pixels (the limit is {limits.max_pixels / 1e6:.0f} "
                         "megapixels)") from None
    except Exception:
        raise MediaError(f"{name} in the zip is not a readable image") from None


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
