"""``ovformer predict`` under torchrun (gloo, CPU): sharding, the merge, resuming after a dead rank."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ovformer.tools.predict import shard_by_frames
from tests.test_predict import TINY, _small_video

BIN = Path(sys.executable).parent
ARGS = [*TINY, "--vocab", "red box, noise", "--min-size", "48"]
# torchrun gives each rank one thread; results depend on the thread count (the order of float
# sums), so the single-process reference runs with one thread too
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _videos(folder: Path, lengths: list[int]) -> list[Path]:
    return [_small_video(folder / f"v{i}.mp4", n, (48, 64), i) for i, n in enumerate(lengths)]


def _predict(videos: list[Path], out: Path, nproc: int | None, **popen) -> subprocess.Popen:
    cmd = [str(BIN / "ovformer"), "predict", *map(str, videos), *ARGS, "--out", str(out)]
    if nproc is not None:  # the console script under torchrun, as a user types it
        cmd = [str(BIN / "torchrun"), "--standalone", f"--nproc-per-node={nproc}"] + cmd
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **popen)


def _finish(proc: subprocess.Popen) -> str:
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return err


def _parts(out: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in Path(f"{out}.parts").glob("*.json")}


def test_shard_by_frames_balances_frames_not_files():
    plan = shard_by_frames([100, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10], 2)
    assert plan == [[0], list(range(1, 11))]  # one long video weighs as much as ten short ones
    assert shard_by_frames([3, 12, 5, 9, 2, 7], 2) == [[1, 2, 4], [0, 3, 5]]  # 19 frames each
    assert shard_by_frames([5, 5], 4) == [[0], [1], [], []]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Six videos of different lengths and a single-process run over them."""
    root = tmp_path_factory.mktemp("dist")
    videos = _videos(root, [3, 12, 5, 9, 2, 7])
    _finish(_predict(videos, root / "single.json", None))
    return videos, json.loads((root / "single.json").read_text())


def test_two_ranks_give_the_single_process_results(tmp_path, reference):
    videos, single = reference
    out = tmp_path / "res.json"
    err = _finish(_predict(videos, out, 2))
    assert json.loads(out.read_text()) == single  # same scores, same RLE, same order
    parts = _parts(out)
    assert sorted(p["key"] for p in parts.values()) == sorted(str(v.resolve()) for v in videos)
    by_rank = {r: sum(p["video"]["length"] for p in parts.values() if p["rank"] == r)
               for r in (0, 1)}
    assert by_rank == {0: 19, 1: 19}  # by frames: 12+5+2 and 9+7+3
    assert all(p["host"] for p in parts.values())
    for v in videos:  # each video done once
        assert err.count(f"done {v}:") == 1, err[-3000:]
    assert err.count("wrote ") == 1  # by rank 0 alone


def test_a_killed_rank_loses_only_its_video_in_flight(tmp_path):
    videos = _videos(tmp_path, [6, 24, 10, 18, 4, 14])  # longer: a wider window to kill in
    out = tmp_path / "res.json"
    proc = _predict(videos, out, 2, start_new_session=True)
    parts_dir = Path(f"{out}.parts")
    try:
        deadline = time.monotonic() + 300
        while not list(parts_dir.glob("*.json")) and proc.poll() is None:
            assert time.monotonic() < deadline, "no video finished in 300 s"
            time.sleep(0.02)
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert len(children) == 2, children  # torchrun's two ranks
        os.kill(int(children[1]), signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    before = {name: (parts_dir / name).stat().st_mtime_ns for name in _parts(out)}
    assert 1 <= len(before) < 6, err[-3000:]
    assert not out.exists()  # nothing merged from a broken run

    err = _finish(_predict(videos, out, 3))  # another world size finishes the rest
    assert err.count("already done") == len(before)
    assert sum(err.count(f"done {v}:") for v in videos) == 6 - len(before)
    assert {n: (parts_dir / n).stat().st_mtime_ns for n in before} == before  # not redone
    _finish(_predict(videos, tmp_path / "single.json", None))
    assert json.loads(out.read_text()) == json.loads((tmp_path / "single.json").read_text())
