"""Render stage: overlay drawing and the H.264 overlay video."""

from __future__ import annotations

import itertools
from fractions import Fraction

import av
import numpy as np
import pytest

from ovformer.render import overlay_frame, render_overlay_video, track_color

GRAY = 100
ALPHA = 0.45


def _box(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_track_color_deterministic_and_distinct():
    colors = [track_color(i) for i in range(16)]
    assert colors == [track_color(i) for i in range(16)]
    assert all(isinstance(c, int) and 0 <= c <= 255 for rgb in colors for c in rgb)
    dist = min(np.abs(np.subtract(a, b)).sum() for a, b in itertools.combinations(colors, 2))
    assert dist > 30  # golden-ratio hue steps keep any two of the first 16 apart
    assert np.abs(np.subtract(track_color(0), track_color(1))).sum() > 150  # neighbours far apart


def test_overlay_frame_fill_contour_and_tag():
    rgb = np.full((120, 160, 3), GRAY, np.uint8)
    before = rgb.copy()
    mask = _box(120, 160, 50, 100, 40, 120)
    out = overlay_frame(rgb, [(5, "dog", mask)], alpha=ALPHA)
    color = np.array(track_color(5))
    assert out.shape == rgb.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(rgb, before)  # input untouched
    np.testing.assert_array_equal(out[75, 80], np.round(GRAY * (1 - ALPHA) + color * ALPHA))
    np.testing.assert_array_equal(out[50, 80], color)  # contour: solid colour on the edge
    np.testing.assert_array_equal(out[10, 10], [GRAY] * 3)  # far from the mask: unchanged
    np.testing.assert_array_equal(out[110, 150], [GRAY] * 3)
    # The "#5 dog" tag sits just above the box's top-left corner ...
    ys, xs = np.nonzero((out[:50] != GRAY).any(-1))
    assert ys.max() == 49 and ys.min() > 25 and xs.min() == 40 and 20 < xs.max() - 40 < 80
    tag = out[ys.min() : 50, 40 : xs.max() + 1].reshape(-1, 3).astype(int)
    assert (np.abs(tag - color).sum(1) == 0).mean() > 0.5  # ... on the track colour
    assert (np.abs(tag - color).sum(1) > 100).sum() > 10  # ... with text ink on it
    # Nothing to draw: empty masks and empty item lists leave the frame as is.
    np.testing.assert_array_equal(overlay_frame(rgb, [(1, "x", np.zeros((120, 160), bool))]), rgb)
    np.testing.assert_array_equal(overlay_frame(rgb, []), rgb)


def test_overlay_frame_tag_stays_on_screen():
    rgb = np.zeros((40, 50, 3), np.uint8)
    out = overlay_frame(rgb, [(2, "a very long label that does not fit", _box(40, 50, 0, 40, 0, 50))])
    assert out.shape == (40, 50, 3)  # mask touching the top edge: tag drawn inside


def test_overlay_frame_rejects_mismatched_mask():
    with pytest.raises(ValueError, match="mask of track 3"):
        overlay_frame(np.zeros((10, 10, 3), np.uint8), [(3, "cat", np.ones((5, 5), bool))])
    with pytest.raises(ValueError):
        overlay_frame(np.zeros((10, 10), np.uint8), [])


def test_render_overlay_video_roundtrip(tmp_path):
    h, w, n = 47, 63, 12  # odd on purpose: H.264 yuv420p needs even sizes
    calls: list[int] = []

    def tracks(i: int):
        calls.append(i)
        return [(3, "person", _box(h, w, 12, 40, 10 + i, 40 + i))]

    frames = (np.full((h, w, 3), GRAY, np.uint8) for _ in range(n))  # a generator: streamed
    out = render_overlay_video(frames, tracks, tmp_path / "overlay.mp4", fps=12.5, alpha=ALPHA)
    assert out == tmp_path / "overlay.mp4" and calls == list(range(n))
    assert [p.name for p in tmp_path.iterdir()] == ["overlay.mp4"]  # no temp file left
    data = out.read_bytes()
    assert 0 < data.find(b"moov") < data.find(b"mdat")  # +faststart: index before media

    with av.open(str(out)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264" and s.codec_context.pix_fmt == "yuv420p"
        assert (s.width, s.height) == (64, 48) and s.average_rate == 12.5
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
    assert len(decoded) == n
    expected = GRAY * (1 - ALPHA) + np.array(track_color(3)) * ALPHA
    for i in (0, n - 1):
        inside = decoded[i][25:35, 20 + i : 32 + i].reshape(-1, 3).mean(0)
        assert np.abs(inside - expected).max() < 16, (inside, expected)  # lossy yuv420p
        assert np.abs(decoded[i][44, 5].astype(int) - GRAY).max() < 8


def test_render_accepts_frame_objects_and_mov(tmp_path):
    class F:  # anything with an `.rgb` array, like ovformer.data.video.Frame
        def __init__(self, rgb):
            self.rgb = rgb

    frames = [F(np.full((32, 32, 3), 50, np.uint8)) for _ in range(3)]
    out = render_overlay_video(frames, lambda i: [], tmp_path / "plain.mov", fps=30000 / 1001)
    with av.open(str(out)) as c:
        assert c.streams.video[0].average_rate == Fraction(30000, 1001)
        assert sum(1 for _ in c.decode(video=0)) == 3


def test_render_errors_leave_no_file(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        render_overlay_video([], lambda i: [], tmp_path / "a.mp4", fps=10)
    mixed = [np.zeros((16, 16, 3), np.uint8), np.zeros((16, 18, 3), np.uint8)]
    with pytest.raises(ValueError, match="frame 1"):
        render_overlay_video(mixed, lambda i: [], tmp_path / "b.mp4", fps=10)
    with pytest.raises(ValueError):
        render_overlay_video(mixed, lambda i: [], tmp_path / "c.mp4", fps=0)
    assert list(tmp_path.iterdir()) == []
