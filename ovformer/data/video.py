"""Decode stage: stream RGB frames out of a video file or a folder of images.

`open_video` validates eagerly (the container opens, has a video stream and its first
frame decodes) so a bad upload fails at open time with one readable `VideoDecodeError`.
Iterating the returned `VideoSource` decodes frame by frame: a long video never sits in
memory, and every iteration re-opens the file.

Example:
    >>> src = open_video("bikes.mp4", fps=12.5, max_frames=100)
    >>> src.info.width, src.info.height, src.info.num_frames
    (640, 272, 100)
    >>> for clip in iter_clips(src, 5):
    ...     rgb = [f.rgb for f in clip]          # (H, W, 3) uint8 each
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageOps

__all__ = [
    "VIDEO_EXTENSIONS", "FRAME_EXTENSIONS", "VideoDecodeError", "VideoLimitError", "VideoInfo", "Frame",
    "VideoSource", "open_video", "iter_clips", "is_video_file", "list_frame_files",
]  # fmt: skip

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".webm", ".avi", ".mkv"})
FRAME_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png"})
# A folder of frames carries no timing; YouTube-VIS / LV-VIS folders hold already
# subsampled frames, so the nominal rate only matters when the caller asks for `fps`.
DEFAULT_FOLDER_FPS = 30.0

# (source index, presentation time, RGB loader): RGB is produced only for kept frames.
_RawFrame = tuple[int, Fraction, Callable[[], np.ndarray]]


class VideoDecodeError(Exception):
    """A video (or frame folder) could not be read. The message is one line: `<path>: <problem>`."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = Path(path)
        self.problem = " ".join(str(problem).split())  # keep the message on one line
        super().__init__(f"{self.path}: {self.problem}")

    def __reduce__(self):  # keep pickling (multiprocessing, app workers) working
        return (type(self), (self.path, self.problem))


class VideoLimitError(VideoDecodeError):
    """A video passed a limit given to `open_video` (`max_decoded`, `max_duration_s`), counted
    while decoding: whatever the container's metadata claims, the work stops there."""


@dataclass
class VideoInfo:
    """What `open_video` learned at open time.

    Attributes:
        path: the file or folder.
        width, height: size of the yielded frames, i.e. AFTER applying `rotation`.
        num_frames: expected number of yielded frames after `fps` subsampling and
            `max_frames` (best effort from container metadata; exact for folders and for
            constant-rate mp4/mov; 0 when the container does not say).
        fps: source frame rate (average rate for VFR; nominal rate for folders).
        rotation: clockwise degrees (0/90/180/270) the stored frames were turned to make
            them upright, the convention of the legacy `rotate` tag and ffmpeg's autorotate.
        duration_s: length of the source in seconds (container metadata; frame count over
            the nominal rate for folders), None when the container does not say. Callers
            that limit what they accept (the app's upload limit) check it before decoding.
    """

    path: Path
    width: int
    height: int
    num_frames: int
    fps: float
    rotation: int = 0
    duration_s: float | None = None


@dataclass(frozen=True, eq=False)
class Frame:
    """One output frame. `rgb` is an owned (H, W, 3) uint8 array, upright."""

    index: int  # output index 0.. after subsampling
    source_index: int  # index among all decoded frames of the source
    time_s: float  # presentation time, seconds since the first frame
    rgb: np.ndarray = field(repr=False)


class VideoSource:
    """A re-iterable stream of `Frame`s; build it with `open_video`."""

    def __init__(
        self,
        info: VideoInfo,
        *,
        fps: Fraction | None,
        max_frames: int | None,
        frame_files: list[Path] | None = None,
        rot90: int = 0,
        max_decoded: int | None = None,
        max_duration_s: float | None = None,
    ) -> None:
        self.info = info
        self._fps = fps
        self._max_frames = max_frames
        self._frame_files = frame_files
        self._rot90 = rot90
        self._max_decoded, self._max_duration_s = max_decoded, max_duration_s

    def __repr__(self) -> str:
        return f"VideoSource({self.info!r})"

    def __iter__(self) -> Iterator[Frame]:
        raw = self._read_folder() if self._frame_files is not None else self._decode_file()
        out = 0
        last_slot: int | None = None
        t0: Fraction | None = None
        for src_idx, t, load_rgb in raw:
            t0 = t if t0 is None else t0
            rel = t - t0
            # limits count every decoded frame, also those the fps rule then skips
            if self._max_decoded is not None and src_idx >= self._max_decoded:
                raise VideoLimitError(self.info.path, f"more than {self._max_decoded} frames to decode")
            if self._max_duration_s is not None and float(rel) > self._max_duration_s:
                raise VideoLimitError(self.info.path, f"longer than {self._max_duration_s:g} s "
                                                      "(counted while decoding)")
            if self._fps is not None:
                # Keep the first frame at or after each tick k / fps of the target clock.
                # Picking by timestamp (not every n-th frame) is what makes VFR work;
                # exact Fraction arithmetic keeps ties (25 -> 12.5 fps) deterministic.
                slot = math.floor(rel * self._fps)
                if last_slot is not None and slot <= last_slot:
                    continue  # skipped frames are never converted to RGB
                last_slot = slot
            yield Frame(index=out, source_index=src_idx, time_s=float(rel), rgb=load_rgb())
            out += 1
            if self._max_frames is not None and out >= self._max_frames:
                return  # stop before decoding another frame

    def _decode_file(self) -> Iterator[_RawFrame]:
        path = self.info.path
        container = _open_container(path)
        stream = container.streams.video[0]
        with container, closing(_decode_frames(container, stream, path)) as frames:
            rate = Fraction(self.info.fps).limit_denominator(100_000) if self.info.fps > 0 else Fraction(25)
            n = 0
            t: Fraction | None = None
            for frame in frames:
                if frame.pts is not None and frame.time_base is not None:
                    t = frame.pts * frame.time_base
                else:  # no timestamp: assume the average rate after the previous frame
                    t = Fraction(0) if t is None else t + 1 / rate
                yield n, t, lambda f=frame: _rotate(f.to_ndarray(format="rgb24"), self._rot90)
                n += 1
            if 0 < n < stream.frames:
                logger.warning("%s: decoded %d frames, the container lists %d", path, n, stream.frames)

    def _read_folder(self) -> Iterator[_RawFrame]:
        assert self._frame_files is not None
        rate = Fraction(self.info.fps).limit_denominator(100_000)
        for i, f in enumerate(self._frame_files):
            yield i, i / rate, functools.partial(_load_image, f, (self.info.height, self.info.width))


def open_video(
    path: str | os.PathLike,
    *,
    fps: float | None = None,
    max_frames: int | None = None,
    folder_fps: float = DEFAULT_FOLDER_FPS,
    max_decoded: int | None = None,
    max_duration_s: float | None = None,
    max_pixels: int | None = None,
) -> VideoSource:
    """Open a video file (mp4, mov, webm, avi, mkv, ...) or a folder of JPEG/PNG frames.

    Args:
        path: video file, or folder whose images are taken in natural order
            (`2.jpg` before `10.jpg`).
        fps: if given, subsample to at most this rate by timestamp (the first frame at or
            after each tick of a `fps` clock), which also works for variable frame rate.
        max_frames: stop after this many output frames.
        folder_fps: nominal rate of a frame folder, used for `time_s` and `fps`.
        max_decoded, max_duration_s: limits for untrusted input, counted while iterating over
            every decoded frame (also those `fps` skips) and its timestamp; passing one raises
            `VideoLimitError` (a server's guard against files whose metadata lies).
        max_pixels: refuse (`VideoLimitError`) a file whose declared frame size is larger,
            before any frame is decoded (a decompression bomb never reaches the decoder).

    Returns:
        A `VideoSource`; `.info` is filled now, frames are decoded when iterated.

    Raises:
        FileNotFoundError: `path` does not exist.
        VideoDecodeError: not a video, corrupt, empty, no video stream, unsupported codec,
            or the first frame does not decode.
        ValueError: `fps` or `max_frames` is not positive.
    """
    path = Path(path)
    if fps is not None and fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    if not path.exists():
        raise FileNotFoundError(f"no such video file or frame folder: {path}")
    target = Fraction(fps).limit_denominator(100_000) if fps is not None else None
    limits = {"max_decoded": max_decoded, "max_duration_s": max_duration_s}
    if path.is_dir():
        return _open_folder(path, target, max_frames, folder_fps, limits)
    if path.stat().st_size == 0:
        raise VideoDecodeError(path, "empty file (0 bytes), zero frames")

    container = _open_container(path)
    with container:
        stream = container.streams.video[0]
        cc = stream.codec_context
        if max_pixels is not None and (cc.width or 0) * (cc.height or 0) > max_pixels:
            raise VideoLimitError(path, f"{cc.width}x{cc.height} frames: more than {max_pixels} "
                                        "pixels per frame")
        frames = _decode_frames(container, stream, path)
        first = next(frames, None)
        frames.close()
        if first is None:
            raise VideoDecodeError(path, "the video stream has zero decodable frames")
        first.to_ndarray(format="rgb24")  # the pixel format converts, or fails now
        rot90 = _rot90_steps(first.rotation, stream.metadata.get("rotate"))
        h, w = (first.width, first.height) if rot90 % 2 else (first.height, first.width)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        src_fps = float(rate) if rate else 0.0
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        n_src = stream.frames
        if n_src <= 0 and src_fps > 0 and duration is not None:  # webm/mkv often carry no count
            n_src = round(duration * src_fps)
    n = _expected_count(n_src, src_fps, target, max_frames)
    info = VideoInfo(path=path, width=w, height=h, num_frames=n, fps=src_fps,
                     rotation=(rot90 * -90) % 360, duration_s=duration)
    return VideoSource(info, fps=target, max_frames=max_frames, rot90=rot90, **limits)


def iter_clips(source: Iterable[Frame], clip_length: int) -> Iterator[list[Frame]]:
    """Group consecutive frames into lists of `clip_length`; the last clip may be shorter."""
    if clip_length < 1:
        raise ValueError(f"clip_length must be >= 1, got {clip_length}")
    clip: list[Frame] = []
    for frame in source:
        clip.append(frame)
        if len(clip) == clip_length:
            yield clip
            clip = []
    if clip:
        yield clip


def is_video_file(path: str | os.PathLike) -> bool:
    """True when the name has a video extension (a name check; the content is not probed)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def list_frame_files(folder: str | os.PathLike) -> list[Path]:
    """JPEG/PNG files directly in `folder`, in natural order (`frame2` before `frame10`)."""
    files = [
        p
        for p in Path(folder).iterdir()
        if p.suffix.lower() in FRAME_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    ]
    return sorted(files, key=_natural_key)


# ----------------------------------------------------------------------------- helpers


def _natural_key(p: Path) -> list[int | str]:
    # re.split with a capture group alternates str, int, str, ... so keys always compare.
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def _why(e: BaseException) -> str:
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def _open_container(path: Path) -> av.container.InputContainer:
    try:
        container = av.open(str(path), mode="r")
    except EOFError as e:  # av.EOFError is both an FFmpegError and a builtin EOFError
        raise VideoDecodeError(path, f"the file ends too early, truncated or empty ({_why(e)})") from e
    except (av.FFmpegError, OSError) as e:
        problem = f"not a video or corrupt, the container does not open ({_why(e)})"
        raise VideoDecodeError(path, problem) from e
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(path, "the file has no video stream, zero frames")
    if container.streams.video[0].codec_context is None:
        container.close()
        raise VideoDecodeError(path, "unsupported video codec, no decoder available")
    return container


def _decode_frames(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, path: Path
) -> Iterator[av.VideoFrame]:
    """Decoded frames in presentation order; any failure becomes a `VideoDecodeError`."""
    stream.thread_type = "AUTO"
    n = 0
    try:
        for packet in container.demux(stream):
            # With frame threading the decoder swallows the error a cut-off packet causes,
            # so trust the demuxer's flag: a partial packet means the file was truncated.
            if packet.is_corrupt:
                raise VideoDecodeError(path, f"truncated or corrupt data after {n} decoded frames")
            for frame in stream.decode(packet):  # the final empty packet flushes the decoder
                yield frame
                n += 1
    except (av.FFmpegError, OSError) as e:
        what = "the first frame does not decode" if n == 0 else f"decoding failed after {n} frames"
        raise VideoDecodeError(path, f"{what}, truncated, corrupt or unsupported ({_why(e)})") from e


def _rot90_steps(frame_rotation: int, rotate_tag: str | None) -> int:
    """Counter-clockwise quarter turns (for np.rot90) that make a decoded frame upright.

    The display matrix (PyAV `VideoFrame.rotation`) is counter-clockwise degrees; the legacy
    `rotate` tag, still exported by some demuxers, is clockwise. Flips are not applied.
    """
    ccw = float(frame_rotation)
    if ccw == 0 and rotate_tag:
        try:
            ccw = -float(rotate_tag)
        except ValueError:
            ccw = 0.0
    return round(ccw / 90) % 4


def _rotate(rgb: np.ndarray, rot90: int) -> np.ndarray:
    # np.rot90 returns a view; copy so each frame owns a contiguous buffer.
    return np.ascontiguousarray(np.rot90(rgb, rot90)) if rot90 else rgb


def _expected_count(n_src: int, src_fps: float, target: Fraction | None, max_frames: int | None) -> int:
    n = max(int(n_src), 0)
    if n and target is not None and src_fps > 0:
        # Frames sit at i / src_fps; the sampler keeps one per tick of the target clock,
        # so a constant-rate source yields floor((n - 1) * fps / src_fps) + 1 frames.
        src = Fraction(src_fps).limit_denominator(100_000)
        n = min(n, math.floor((n - 1) * target / src) + 1)
    return min(n, max_frames) if max_frames is not None else n


def _load_image(path: Path, expect_hw: tuple[int, int] | None = None) -> np.ndarray:
    try:
        with Image.open(path) as im:
            # Honour EXIF orientation so phone JPEGs come out upright, like rotated videos.
            rgb = np.asarray(ImageOps.exif_transpose(im).convert("RGB")).copy()
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise VideoDecodeError(path, f"frame image does not decode, corrupt or truncated ({e})") from e
    if expect_hw is not None and rgb.shape[:2] != expect_hw:
        h, w = expect_hw
        problem = f"frame is {rgb.shape[1]}x{rgb.shape[0]}, the folder's first frame is {w}x{h}"
        raise VideoDecodeError(path, problem)
    return rgb


def _open_folder(
    folder: Path, target: Fraction | None, max_frames: int | None, folder_fps: float,
    limits: dict[str, float | int | None],
) -> VideoSource:
    if folder_fps <= 0:
        raise ValueError(f"folder_fps must be positive, got {folder_fps}")
    files = list_frame_files(folder)
    if not files:
        raise VideoDecodeError(folder, "the folder has no JPEG/PNG frames, zero frames")
    h, w = _load_image(files[0]).shape[:2]
    n = _expected_count(len(files), folder_fps, target, max_frames)
    info = VideoInfo(path=folder, width=w, height=h, num_frames=n, fps=float(folder_fps), rotation=0,
                     duration_s=len(files) / folder_fps)
    return VideoSource(info, fps=target, max_frames=max_frames, frame_files=files, **limits)
