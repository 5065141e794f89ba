"""``ovformer predict --eval``: one scoring (``ovformer.evaluation.score_dataset``) for the CLI,
``ovformer eval`` and ``evaluate_dataset``; clear errors before any prediction; torchrun."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from app.cli import main as cli
from ovformer.evaluation import evaluate_dataset, score_dataset
from ovformer.tools.eval import main as eval_main
from ovformer.tools.predict import build_parser
from ovformer.tools.common import build_predictor
from ovformer.ytvis.dataset import load_dataset_folder
from ovformer.ytvis.evaluate import evaluate
from tests.synthetic_ytvis import SyntheticSpec, write_synthetic_ytvis
from tests.test_predict import TINY
from tests.test_predict_distributed import BIN, ENV

SPEC = SyntheticSpec(num_videos=2, num_frames=4, height=48, width=64, max_objects=2)
ARGS = [*TINY, "--min-size", "48"]


def _lvvis(folder: Path, seed: int = 0, num_videos: int = 2) -> Path:
    """A synthetic dataset whose categories carry LV-VIS partitions (1, 2 base; 3, 4 novel)."""
    ann = write_synthetic_ytvis(folder, seed, SyntheticSpec(**{**SPEC.__dict__,
                                                                "num_videos": num_videos}))
    data = json.loads(ann.read_text())
    for c in data["categories"]:
        c["partition"] = 0 if c["id"] <= 2 else 2
    ann.write_text(json.dumps(data))
    return ann


def _table(out: str) -> str:
    """The printed table: the lines before ``wrote``."""
    return out.split("wrote")[0]


def test_predict_eval_equals_ovformer_eval_and_evaluate_dataset(tmp_path, capsys):
    ann = _lvvis(tmp_path / "ds")
    out = tmp_path / "res.json"
    assert cli(["predict", str(ann.parent), *ARGS, "--out", str(out), "--eval"]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((tmp_path / "res.metrics.json").read_text())  # the default path
    assert {"AP", "AP50", "AP75", "AP_base", "AP_novel"} <= set(metrics)
    assert "AP_base" in printed and "AP_novel" in printed
    assert metrics["num_videos"] == 2 and metrics["num_results"] == 2 * 20

    # the same numbers and table as `ovformer eval` on the files
    assert eval_main(["--gt", str(ann), "--results", str(out),
                      "--out", str(tmp_path / "eval.json")]) == 0
    assert json.loads((tmp_path / "eval.json").read_text()) == metrics
    assert _table(capsys.readouterr().out) == _table(printed)

    # ... and as evaluate_dataset on the predictor the CLI builds, with its results
    args = build_parser().parse_args([str(ann.parent), "--out", str(out), *TINY])
    dataset = load_dataset_folder(ann.parent)
    direct, results = evaluate_dataset(build_predictor(args, min_size=48), dataset)
    assert results == json.loads(out.read_text())
    assert direct == metrics

    # a rerun with every video done still scores (to another path here)
    again = tmp_path / "m" / "again.json"
    assert cli(["predict", str(ann.parent), *ARGS, "--out", str(out), "--eval", str(again)]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("already done") == 2
    assert not any(line.startswith("done ") for line in captured.err.splitlines())
    assert json.loads(again.read_text()) == metrics
    assert _table(captured.out) == _table(printed)


def test_score_dataset_cuts_the_ground_truth_to_the_videos_predicted(tmp_path):
    dataset = load_dataset_folder(_lvvis(tmp_path / "ds", seed=3, num_videos=3).parent)
    gt = dataset.gt.to_dict()
    perfect = [{k: a[k] for k in ("video_id", "category_id", "segmentations")} | {"score": 0.9}
               for a in gt["annotations"]]
    assert score_dataset(dataset, perfect) == evaluate(gt, perfect)
    assert score_dataset(dataset, perfect)["AP"] == pytest.approx(1.0)
    some = [r for r in perfect if r["video_id"] == 2]
    cut = score_dataset(dataset, some, [2])
    assert cut["AP"] == pytest.approx(1.0) and cut["num_videos"] == 1
    assert score_dataset(dataset, some)["AP"] < 1.0  # the other videos' tracks are misses
    with pytest.raises(ValueError):  # a result outside the videos kept
        score_dataset(dataset, perfect, [2])


def test_eval_errors_come_before_any_prediction(tmp_path, sample_videos, capsys):
    ann = _lvvis(tmp_path / "a")
    other = _lvvis(tmp_path / "b", seed=1)
    test_split = tmp_path / "t" / "annotations.json"
    test_split.parent.mkdir()
    test_split.write_text(json.dumps({k: v for k, v in json.loads(ann.read_text()).items()
                                      if k != "annotations"}))
    out = tmp_path / "res.json"
    cases = {
        "not a dataset": [str(sample_videos / "bikes.mp4"), "--vocab", "person"],
        "one dataset at a time": [str(ann), str(other)],
        "no annotations": [str(test_split)],
        "drop --max-frames": [str(ann), "--max-frames", "2"],
    }
    for message, inputs in cases.items():
        assert cli(["predict", *inputs, *ARGS, "--out", str(out), "--eval"]) == 2, message
        err = capsys.readouterr().err
        assert [line for line in err.splitlines() if line.startswith("error:")] == [
            err.strip()], err  # one line, nothing before it: no predictor was built
        assert message in err
    # argparse gives --eval the next word: an annotation file is never overwritten
    assert cli(["predict", str(other), *ARGS, "--out", str(out), "--eval", str(ann)]) == 2
    assert "not a metrics path" in capsys.readouterr().err
    assert not Path(f"{out}.parts").exists() and not out.exists()


def test_under_torchrun_rank_0_alone_scores(tmp_path):
    ann = _lvvis(tmp_path / "ds", num_videos=3)
    out, metrics = tmp_path / "res.json", tmp_path / "metrics.json"
    cmd = [str(BIN / "torchrun"), "--standalone", "--nproc-per-node=2", str(BIN / "ovformer"),
           "predict", str(ann.parent), *ARGS, "--out", str(out), "--eval", str(metrics)]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("AP_novel") == 1 and proc.stdout.count(f"wrote {metrics}") == 1
    dataset = load_dataset_folder(ann.parent)
    assert json.loads(metrics.read_text()) == score_dataset(dataset, json.loads(out.read_text()))
