"""``ovformer predict`` end to end on real videos, bad inputs, resume, and flat memory."""
from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from app.cli import main as cli
from tests.parity_fixture import FIXTURE, build_checkpoint

TINY = ["--preset", "tiny", "--untrained", "--clip", "tiny-random"]


def _check_results(path: Path, expected: dict[int, tuple[int, int, int]]) -> list[dict]:
    """Every entry loads with pycocotools, has one segmentation per frame at the original size."""
    results = json.loads(path.read_text())
    assert {r["video_id"] for r in results} == set(expected)
    for r in results:
        n, h, w = expected[r["video_id"]]
        assert len(r["segmentations"]) == n
        assert 0.0 <= r["score"] <= 1.0
        for seg in r["segmentations"]:
            if seg is not None:
                assert seg["size"] == [h, w] and isinstance(seg["counts"], str)
                assert mask_utils.decode(seg).shape == (h, w)
    return results


def test_predict_real_videos_with_prelabels_and_render(tmp_path, sample_videos):
    bikes, carphone = sample_videos / "bikes.mp4", sample_videos / "carphone_pristine.mp4"
    out, gt = tmp_path / "res.json", tmp_path / "ds" / "annotations.json"
    rc = cli(["predict", str(bikes), str(carphone), *TINY, "--vocab", "person, bicycle, car",
              "--max-frames", "12", "--out", str(out), "--gt-out", str(gt),
              "--prelabel-threshold", "0", "--render", str(tmp_path / "ov.mp4")])
    assert rc == 0
    from ovformer.data.video import open_video
    info = open_video(carphone).info
    results = _check_results(out, {1: (12, 272, 640), 2: (12, info.height, info.width)})
    assert len(results) == 2 * 20  # top_k of the tiny preset per video
    # the ground-truth layout is a dataset folder that reads back, frames included
    from ovformer.ytvis.dataset import load_dataset_folder
    ds = load_dataset_folder(gt.parent)
    assert [v.length for v in ds.gt.videos] == [12, 12]
    assert {c.name for c in ds.gt.categories} == {"person", "bicycle", "car"}
    ann = ds.gt.annotations[0]
    for seg, area in zip(ann.segmentations, ann.areas):
        assert (seg is None) == (area is None)
        if seg is not None:
            assert int(mask_utils.area(seg)) == area
    [overlay] = tmp_path.glob("ov_bikes-*.mp4")  # named by the stem and a hash of the path
    with av.open(str(overlay)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert sum(1 for _ in c.decode(video=0)) == 12


@pytest.mark.skipif(not (FIXTURE / "weights_packed.npz").is_file(), reason="no parity fixture")
def test_predict_with_the_parity_checkpoint_and_random_clip(tmp_path, sample_videos):
    ckpt = build_checkpoint(tmp_path / "parity.pth")
    out = tmp_path / "res.json"
    rc = cli(["predict", str(sample_videos / "bikes.mp4"), "--weights", str(ckpt), "--config",
              str(FIXTURE / "official_config.yaml"), "--clip", "random", "--vocab",
              "person, bicycle", "--max-frames", "6", "--min-size", "128", "--out", str(out)])
    assert rc == 0
    _check_results(out, {1: (6, 272, 640)})


def _bad_inputs(tmp_path: Path, bikes: Path) -> list[Path]:
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, np.uint8).tobytes())
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(bikes.read_bytes()[: bikes.stat().st_size // 3])
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n")
    return [corrupt, truncated, empty, text]


def test_bad_inputs_give_one_line_each_and_the_batch_goes_on(tmp_path, sample_videos, capsys):
    bikes = sample_videos / "bikes.mp4"
    bad = _bad_inputs(tmp_path, bikes)
    out = tmp_path / "res.json"
    rc = cli(["predict", *map(str, bad), str(bikes), *TINY, "--vocab", "person",
              "--max-frames", "4", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 1
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    # the truncated file fails only if decoding stops inside the first 4 frames' reach; all
    # others must fail, each on exactly one line that names it
    for path in (bad[0], bad[2], bad[3]):
        assert sum(path.name in line for line in lines) == 1, err
    assert len(lines) <= len(bad)
    results = json.loads(out.read_text())
    assert results and all(len(r["segmentations"]) == 4 for r in results)


def test_rerun_skips_done_videos(tmp_path, sample_videos, capsys):
    args = ["predict", str(sample_videos / "bikes.mp4"), *TINY, "--vocab", "person",
            "--max-frames", "3", "--out", str(tmp_path / "res.json")]
    assert cli(args) == 0
    first = (tmp_path / "res.json").read_text()
    from ovformer.inference.runtime import fastest_dtype
    line = capsys.readouterr().err.splitlines()[0]  # the first line says the dtype it runs in
    assert line.startswith("ovformer predict:") and f"cpu, {fastest_dtype('cpu')} (" in line
    assert fastest_dtype("cuda") == "fp16" and fastest_dtype("cpu") in ("fp32", "bf16")
    assert cli(args) == 0
    assert f"skip {sample_videos / 'bikes.mp4'}: already done" in capsys.readouterr().err
    assert (tmp_path / "res.json").read_text() == first
    # another vocabulary is other work: not skipped
    assert cli(args[:-4] + ["--vocab", "dog", "--out", str(tmp_path / "res.json")]) == 0
    assert "already done" not in capsys.readouterr().err
    assert cli(args + ["--dtype", "fp32"]) == 0
    assert "cpu, fp32 (exact)" in capsys.readouterr().err.splitlines()[0]


def test_empty_vocabulary_and_no_vocabulary_are_clear_errors(tmp_path, sample_videos, capsys):
    base = ["predict", str(sample_videos / "bikes.mp4"), *TINY, "--out", str(tmp_path / "r.json")]
    assert cli(base + ["--vocab", " , "]) == 2
    assert cli(base) == 2
    err = capsys.readouterr().err
    assert "vocabulary" in err.lower() and err.count("error:") == 2


def _synthetic_video(path: Path, frames: int, size=(720, 1280)) -> Path:
    """A moving square on a gradient, H.264: enough structure to decode, cheap to make."""
    h, w = size
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(25))
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"preset": "ultrafast"}
        base = np.linspace(0, 255, w, dtype=np.uint8)[None, :, None].repeat(h, 0).repeat(3, 2)
        for i in range(frames):
            img = base.copy()
            x = (i * 11) % (w - 200)
            img[200:400, x:x + 200] = (255, 0, 0)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


PEAK_RSS = """
import resource, sys
from app.cli import main
rc = main(sys.argv[1:])
print("PEAK_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "RC", rc)
"""


def _peak_rss_kb(video: Path, out: Path) -> int:
    proc = subprocess.run([sys.executable, "-c", PEAK_RSS, "predict", str(video), *TINY,
                           "--vocab", "red square, background", "--min-size", "64",
                           "--out", str(out)], capture_output=True, text=True, timeout=600)
    line = [x for x in proc.stdout.splitlines() if x.startswith("PEAK_KB")]
    assert line and line[0].endswith("RC 0"), proc.stderr[-2000:]
    return int(line[0].split()[1])


def test_peak_memory_does_not_grow_with_video_length(tmp_path):
    # 720p output: holding every query's full-size float masks for the whole video (what the
    # official post-processing does) would add ~37 MB per frame here, ~3 GB for the long video.
    short = _peak_rss_kb(_synthetic_video(tmp_path / "short.mp4", 20), tmp_path / "s.json")
    long = _peak_rss_kb(_synthetic_video(tmp_path / "long.mp4", 100), tmp_path / "l.json")
    assert long <= 1.3 * short, f"peak RSS {short} kB for 20 frames, {long} kB for 100"


def test_progress_without_preview_skips_the_masks():
    from ovformer import OVFormerVideoPredictor
    from ovformer.inference.types import PredictOptions

    pred = OVFormerVideoPredictor.from_pretrained(None, preset="tiny", untrained=True,
                                                  clip="tiny-random")
    text = pred.embed_vocabulary(["a", "b"])
    frames = [np.full((40, 60, 3), 100, np.uint8)] * 7
    seen = []
    out = pred.predict(frames, text, PredictOptions(preview_k=0), on_clip=seen.append)
    assert [c.frames_done for c in seen] == [5, 7] and all(c.preview == [] for c in seen)
    assert out.num_frames == 7
    shown = []
    pred.predict(frames, text, PredictOptions(preview_k=3), on_clip=shown.append)
    assert [len(c.preview) for c in shown] == [3, 3]
    assert shown[0].preview[0][3].shape == (5, 40, 60) and shown[1].preview[0][3].shape == (2, 40, 60)


def _small_video(path: Path, frames: int, size: tuple[int, int], seed: int,
                 codec: str = "libx264") -> Path:
    """A short noisy video of its own size and content (each seed a different video)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = size
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=Fraction(25))
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(frames):
            img = rng.integers(0, 256, (h, w, 3), np.uint8)
            img[h // 4:h // 2, (3 * i) % (w // 2):(3 * i) % (w // 2) + w // 4] = (250, 20, 20)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def _by_video(path: Path) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for r in json.loads(path.read_text()):
        out.setdefault(r["video_id"], []).append({k: v for k, v in r.items() if k != "video_id"})
    return out


def test_inputs_with_one_stem_keep_their_own_results_also_when_resumed(tmp_path, capsys):
    videos = [_small_video(tmp_path / "a" / "clip.mp4", 4, (48, 64), 1),
              _small_video(tmp_path / "b" / "clip.mp4", 6, (64, 48), 2),
              _small_video(tmp_path / "clip.webm", 5, (40, 72), 3, codec="libvpx")]
    common = [*TINY, "--vocab", "red box, noise", "--min-size", "48"]
    alone = []
    for i, v in enumerate(videos):
        assert cli(["predict", str(v), *common, "--out", str(tmp_path / f"alone{i}.json")]) == 0
        alone.append(_by_video(tmp_path / f"alone{i}.json")[1])
    out = tmp_path / "res.json"
    batch = ["predict", *map(str, videos), *common, "--out", str(out)]
    assert cli(batch) == 0
    got = _by_video(out)
    assert [got[k] for k in (1, 2, 3)] == alone  # each video its own results, in input order
    assert [got[k][0]["segmentations"][0]["size"] for k in (1, 2, 3)] == [[48, 64], [64, 48],
                                                                         [40, 72]]
    parts = sorted((tmp_path / "res.json.parts").glob("*.json"))
    assert len(parts) == 3 and all(p.name.startswith("clip-") for p in parts)
    # an interrupted run: b/clip.mp4's part never written (a temporary file left behind), and a
    # stem-named part of the old layout holding another video's results
    b_part = next(p for p in parts if json.loads(p.read_text())["key"] == str(videos[1]))
    other = next(p for p in parts if p != b_part).read_text()
    b_part.rename(b_part.with_suffix(".json.tmp0"))
    (tmp_path / "res.json.parts" / "clip.json").write_text(other)
    capsys.readouterr()
    assert cli(batch) == 0
    err = capsys.readouterr().err
    assert err.count("already done") == 2 and f"done {videos[1]}:" in err
    assert _by_video(out) == got


def test_half_precision_spills(tmp_path):
    """`spill_half` writes the per-clip mask logits as float16 (half the disk of float32) and
    the tracks' masks stay the same but for pixels at the threshold."""
    from ovformer import OVFormerVideoPredictor
    from ovformer.inference.types import PredictOptions

    pred = OVFormerVideoPredictor.from_pretrained(None, preset="tiny", untrained=True,
                                                  clip="tiny-random")
    text = pred.embed_vocabulary(["a", "b"])
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(7)]
    out = {}
    for half in (False, True):
        spill = tmp_path / f"spill_{half}"
        out[half] = pred.predict(frames, text, PredictOptions(spill_dir=spill, spill_half=half))
        kinds = {np.load(f).dtype for f in spill.glob("clip_*.npy")}
        assert kinds == {np.dtype(np.float16 if half else np.float32)}
    full = sum(f.stat().st_size for f in (tmp_path / "spill_False").glob("*.npy"))
    half = sum(f.stat().st_size for f in (tmp_path / "spill_True").glob("*.npy"))
    assert half < 0.6 * full
    from ovformer.ytvis.rle import decode_rle
    same = total = 0
    for a, b in zip(out[False].tracks, out[True].tracks):
        for sa, sb in zip(a.segmentations, b.segmentations):
            ma = decode_rle(sa) if sa else np.zeros((48, 64), bool)
            mb = decode_rle(sb) if sb else np.zeros((48, 64), bool)
            same, total = same + int((ma == mb).sum()), total + ma.size
    assert [t.query for t in out[False].tracks] == [t.query for t in out[True].tracks]
    assert same / total >= 0.999
