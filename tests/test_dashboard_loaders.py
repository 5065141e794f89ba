"""Unit tests of the dashboard's pure loaders (no streamlit, no browser)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the fixture generator
from fixtures_dashboard import H, W, DashboardFixture, make_dashboard_fixture  # noqa: E402

from app.dashboard import datasets as dsl  # noqa: E402
from app.dashboard import loaders as ld  # noqa: E402


@pytest.fixture(scope="module")
def fx(tmp_path_factory: pytest.TempPathFactory) -> DashboardFixture:
    return make_dashboard_fixture(tmp_path_factory.mktemp("dash"))


def test_parse_metrics_lines_skips_bad_lines_with_their_number():
    lines = ['{"iteration": 10, "loss": 2.5, "lr": 0.001, "note": "x"}', "", "{broken",
             '{"loss": 1.0}', '{"iteration": 20, "eval": {"AP": 0.3, "AP50": -1}}', "[1, 2]"]
    train, evals, warns = ld.parse_metrics_lines(lines, "m.jsonl")
    assert train == [{"iteration": 10.0, "loss": 2.5, "lr": 0.001}]  # strings dropped
    assert evals == [{"iteration": 20.0, "AP": 0.3, "AP50": -1.0}]
    assert [w.split(":")[0] for w in warns] == ["m.jsonl line 3", "m.jsonl line 4", "m.jsonl line 6"]


def test_load_run_reads_everything_readable(fx):
    run = ld.load_run(str(fx.runs / "run_a"))
    assert run.train == fx.train["run_a"]  # JSON round-trips floats exactly
    assert run.evals == fx.evals["run_a"]
    assert run.config["model"] == "tiny" and run.has_final
    assert [Path(p).name for p in run.reports] == ["METRICS.json"]  # results.json is not a report
    assert run.warnings == []

    broken = ld.load_run(str(fx.runs / "run_c"))
    assert broken.config == {} and "config.json could not be read" in broken.warnings[0]
    assert "metrics.jsonl line 3: not valid JSON" in broken.warnings[1]  # cut mid-write
    assert "metrics.jsonl line 5: not valid JSON" in broken.warnings[2]
    assert broken.train == fx.train["run_c"]  # every other line still loads
    assert ld.loss_terms([run]) == ["loss_ce", "loss_dice", "loss_mask", "loss_object_ce"]


def test_list_runs(fx, tmp_path):
    assert sorted(Path(p).name for p in ld.list_runs(str(fx.runs))) == ["run_a", "run_b", "run_c"]
    assert ld.list_runs(str(tmp_path / "missing")) == []
    sig = ld.signature(ld.run_files(str(fx.runs / "run_a")))
    assert [Path(p).name for p, _, _ in sig] == [
        "config.json", "metrics.jsonl", "model_final.pth", "METRICS.json", "results.json"]


def test_discovery_classifies_by_peeking(fx):
    metrics = ld.discover_json([str(fx.reports), str(fx.runs)], {"metrics"})
    assert [ld.label_for(p, [str(fx.reports), str(fx.runs)]) for p in metrics] == [
        "lvvis_val.json", "truncated.json", "run_a/eval/METRICS.json"]
    gts = ld.discover_json([str(fx.datasets)], {"gt"})
    assert [ld.label_for(p, [str(fx.datasets)]) for p in gts] == [
        "toy_ytvis/train.json", "truncated_export/instances.json"]
    results = ld.discover_json([str(fx.runs), str(fx.datasets)], {"results"})
    assert [Path(p).name for p in results] == ["results.json"]
    assert ld.peek_kind(fx.runs / "run_a" / "config.json") == "other"


def test_discovery_skips_frame_folders(tmp_path):
    (tmp_path / "d" / "JPEGImages" / "v").mkdir(parents=True)
    (tmp_path / "d" / "JPEGImages" / "v" / "x.json").write_text('{"videos": []}')
    (tmp_path / "d" / "gt.json").write_text('{"videos": [], "categories": []}')
    (tmp_path / "d" / "empty.json").write_text("[]")
    assert [Path(p).name for p in ld.discover_json([str(tmp_path)], {"gt"})] == ["gt.json"]
    assert [Path(p).name for p in ld.discover_json([str(tmp_path)], {"results"})] == ["empty.json"]


def test_load_report_fractions_undefined_and_partitions(fx):
    rep = ld.load_report(str(fx.reports / "lvvis_val.json"))
    assert rep.summary["AP"] == 0.34 and rep.summary["APl"] is None and rep.summary["AP_novel"] == 0.125
    worst = ld.sorted_categories(rep)
    assert [c["name"] for c in worst] == ["zebra", "giraffe", "dog", "cat", "person"]  # kite: AP -1
    assert [c["name"] for c in ld.sorted_categories(rep, "novel")] == ["zebra", "giraffe"]
    assert ld.partition_of({"partition": "Novel"}) == "novel"
    assert ld.partition_of({"partition": 1}) == "base" and ld.partition_of({}) == "all"

    bad = ld.load_report(str(fx.reports / "truncated.json"))
    assert not bad.summary and "could not be read" in bad.warnings[0]


def test_dataset_summary(fx):
    ds = dsl.load_dataset(str(fx.datasets / "toy_ytvis" / "train.json"), "toy")
    assert ds.warnings == []
    assert (len(ds.videos), ds.num_frames, ds.num_tracks) == (fx.num_videos, fx.num_frames, len(fx.track_lengths))
    assert ds.class_counts == fx.class_counts and list(ds.class_counts)[0] == "person"
    assert ds.track_lengths == fx.track_lengths
    # Track 2 has uncompressed RLE and track 3 no "areas": both still give their pixel counts.
    assert sorted(ds.mask_areas) == sorted(fx.mask_areas)
    assert ds.frames_root == str(fx.datasets / "toy_ytvis" / "train" / "JPEGImages")
    assert [v["name"] for v in ds.videos] == ["vid_a", "vid_b"]

    bad = dsl.load_dataset(str(fx.datasets / "truncated_export" / "instances.json"), "t")
    assert bad.videos == [] and "t could not be read" in bad.warnings[0]


def test_dataset_without_annotations_and_export_layout(tmp_path):
    (tmp_path / "JPEGImages" / "clip").mkdir(parents=True)
    (tmp_path / "JPEGImages" / "clip" / "0.jpg").write_bytes(b"")
    gt = {"videos": [{"id": 1, "width": 4, "height": 3, "file_names": ["clip/0.jpg"]}],
          "categories": [{"id": 1, "name": "a"}]}
    (tmp_path / "annotations.json").write_text(json.dumps(gt))
    ds = dsl.load_dataset(str(tmp_path / "annotations.json"))
    assert (ds.num_frames, ds.num_tracks, ds.track_lengths) == (1, 0, [])
    assert ds.frames_root == str(tmp_path / "JPEGImages")  # the app's export layout


def test_format_check_uses_the_library_validator(fx, tmp_path):
    assert dsl.check_gt_file(str(fx.datasets / "toy_ytvis" / "train.json"), "toy") is None
    gt = json.loads((fx.datasets / "toy_ytvis" / "train.json").read_text())
    gt["annotations"][0]["id"] = 0  # the evaluator reads id 0 as "unmatched"
    (tmp_path / "bad.json").write_text(json.dumps(gt))
    assert "id 0" in dsl.check_gt_file(str(tmp_path / "bad.json"), "bad")
    # ... but the statistics are still shown for such a file.
    assert dsl.load_dataset(str(tmp_path / "bad.json")).num_tracks == 4


def test_load_results_groups_by_video(fx, tmp_path):
    res = dsl.load_results(str(fx.runs / "run_a" / "eval" / "results.json"))
    assert res.warnings == [] and res.num_entries == 4
    assert [e["index"] for e in res.by_video[1]] == [0, 1, 2] and [e["index"] for e in res.by_video[2]] == [3]
    assert dsl.results_frame_size(res.by_video[1]) == (H, W)

    (tmp_path / "r.json").write_text(json.dumps([{"video_id": 1, "category_id": 1, "score": 1.0,
                                                   "segmentations": [None]}, {"score": 0.5}]))
    res = dsl.load_results(str(tmp_path / "r.json"))
    assert res.num_entries == 1 and any("1 entries without" in w for w in res.warnings)
    assert dsl.results_frame_size(res.by_video[1]) is None


def test_load_frame_falls_back_to_a_canvas(fx):
    ds = dsl.load_dataset(str(fx.datasets / "toy_ytvis" / "train.json"))
    rgb, ok = dsl.load_frame(ds.frames_root, "vid_a/00000.jpg", (H, W))
    assert ok and rgb.shape == (H, W, 3) and abs(int(rgb.mean()) - 40) <= 2
    rgb, ok = dsl.load_frame(ds.frames_root, "vid_a/missing.jpg", (10, 20))
    assert not ok and rgb.shape == (10, 20, 3)


def test_histogram():
    lefts, rights, counts = dsl.histogram([1, 1, 3])
    assert (lefts, rights, counts) == ([0.5, 1.5, 2.5], [1.5, 2.5, 3.5], [2, 0, 1])
    lefts, rights, counts = dsl.histogram([10.0, 100.0, 1000.0, 5000.0], bins=4, log=True)
    assert sum(counts) == 4 and lefts[0] == pytest.approx(10.0) and rights[-1] == pytest.approx(5000.0)
    assert dsl.histogram([]) == ([], [], [])
