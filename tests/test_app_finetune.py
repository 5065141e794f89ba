"""The Fine-tune tab through gradio_client, end to end on the untrained tiny model.

A synthetic dataset sits in the datasets folder; a project gets two synthetic videos through
the app (frames zip + ground-truth json), one is marked reviewed and held out, and the project
is exported (so the held-out video is in a training dataset and must be left out). A 3-iteration
run starts in a background process; the test polls it like the page's timer, checks the curves
against metrics.jsonl, loads the new weights (the banner changes), and checks that the closed
loop's before/after metrics equal evaluate() on predictions the test makes itself.
"""
from __future__ import annotations

import json
import sys
import time
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "ui"))
from apptest import NamedClient  # noqa: E402

from tests.synthetic_ytvis import SyntheticSpec, write_synthetic_ytvis  # noqa: E402

VOCAB4 = "red square, green circle, blue triangle, yellow diamond"
SPEC = dict(num_frames=5, height=48, width=64)


@pytest.fixture(scope="module")
def server(app_server):
    return app_server


def plot_traces(value) -> dict[str, list]:
    """{trace name: y values} of a gr.Plot value as gradio_client returns it."""
    fig = value["plot"] if isinstance(value, dict) else value
    fig = json.loads(fig) if isinstance(fig, str) else fig
    return {t.get("name"): t.get("y") for t in fig["data"]}


def own_predictions(weights, clip: str, frames: list, gt: dict) -> list[dict]:
    """Results of a predictor built here, not through the app."""
    import numpy as np
    from PIL import Image

    from ovformer.inference.predictor import OVFormerVideoPredictor

    from ovformer.vocab import Vocabulary

    pred = (OVFormerVideoPredictor.from_pretrained(None, preset="tiny", untrained=True, clip=clip) if weights is None
            else OVFormerVideoPredictor.from_pretrained(str(weights), clip=clip))
    cats = sorted(gt["categories"], key=lambda c: c["id"])
    text = pred.embed_vocabulary(Vocabulary.from_names([c["name"] for c in cats], [c["id"] for c in cats]))
    video = gt["videos"][0]
    return pred.predict((np.asarray(Image.open(f).convert("RGB")) for f in frames), text,
                        num_frames=len(frames)).results(video["id"])


@pytest.mark.slow
def test_finetune_tab_closed_loop(server, tmp_path):
    from gradio_client import handle_file

    from ovformer.ytvis.evaluate import evaluate
    from training import read_metrics

    url, studio, home = server
    ft = studio.finetune
    write_synthetic_ytvis(studio.cfg.datasets / "shapes", seed=0, spec=SyntheticSpec(num_videos=3, **SPEC))
    src = tmp_path / "src"
    write_synthetic_ytvis(src, seed=1, spec=SyntheticSpec(num_videos=2, **SPEC))
    src_gt = json.loads((src / "annotations.json").read_text())

    c = NamedClient(url, studio.api)
    c.predict("shapes-project", VOCAB4, api_name="/create_project")
    for v in src_gt["videos"]:
        name = Path(v["file_names"][0]).parent.name
        with zipfile.ZipFile(tmp_path / f"{name}.zip", "w") as z:
            for f in v["file_names"]:
                z.write(src / "JPEGImages" / f, f)
        out = c.predict(handle_file(str(tmp_path / f"{name}.zip")), handle_file(str(src / "annotations.json")),
                        0, VOCAB4, api_name="/add_video")
        assert "imported" in out["status"], out["status"]
    c.predict(True, api_name="/set_reviewed")  # the last video added is the open one
    pid = studio.store.projects()[-1][0]
    exported = f"p{pid}-shapes-project"  # an export's name carries its project's id
    held = studio.store.videos(pid)[-1]
    assert held.reviewed and held.name == name
    assert c.predict(api_name="/export_dataset")["status"].startswith("✔")

    # the lists: both datasets, the project, only its reviewed video
    lists = c.predict(None, api_name="/ft_refresh")
    assert {x[0] for x in lists["datasets"]["choices"]} >= {"shapes", exported}
    assert [x[1] for x in c.predict(pid, api_name="/ft_project")["heldout"]["choices"]] == [held.id]

    args = [["shapes", exported], pid, [held.id], "", 3, 2, 0, 64, 2, 0, True]
    assert c.predict([], *args[1:], "bad", api_name="/ft_start")["status"].startswith("✖")  # no dataset chosen
    t0 = time.time()
    out = c.predict(*args, "t1", api_name="/ft_start")
    assert "started" in out["status"] and out["run"]["value"] == "t1", out["status"]
    assert "still going" in c.predict(*args, "t2", api_name="/ft_start")["status"]  # one run at a time

    while True:  # what the page's timer does
        out = c.predict("t1", api_name="/ft_poll")
        if "finished" in out["status"] or "failed" in out["status"] or time.time() - t0 > 300:
            break
        time.sleep(0.5)
    assert "finished" in out["status"], out["status"] + (home / "runs" / "t1" / "train.log").read_text()[-3000:]
    run_dir = home / "runs" / "t1"
    record = json.loads((run_dir / "finetune.json").read_text())
    assert record["excluded"] == {exported: [held.name]}  # the held-out video never trained
    filtered = json.loads((run_dir / "data" / exported / "annotations.json").read_text())
    assert [Path(v["file_names"][0]).parent.name for v in filtered["videos"]] == [studio.store.videos(pid)[0].name]

    # the closed loop started by itself when training ended; this call joins it and returns the end
    out = c.predict("t1", api_name="/ft_closed_loop")
    assert "closed loop on 1 held-out videos" in out["status"], out["status"]
    loop = json.loads((run_dir / "closed_loop.json").read_text())
    assert loop["videos"] == [held.name] and "UNTRAINED" in loop["weights_before"]
    assert "model_final.pth" in loop["weights_after"]
    rows = {r[0]: r for r in out["loop_table"]["data"]}
    assert float(rows["AP"][1]) == pytest.approx(100 * loop["before"]["AP"], abs=0.051)
    assert float(rows["AP75"][2]) == pytest.approx(100 * loop["after"]["AP75"], abs=0.051)
    assert len(plot_traces(out["loop_plot"])) == 2

    # the curves hold the logged numbers
    out = c.predict("t1", api_name="/ft_view")
    metrics = read_metrics(run_dir)
    losses = plot_traces(out["loss_plot"])
    assert losses["loss"] == [r["loss"] for r in metrics if "loss" in r] and len(losses["loss"]) == 3
    assert losses["loss_dice"] == [r["loss_dice"] for r in metrics if "loss" in r]
    evals = [r for r in metrics if "eval" in r]
    assert [r["iteration"] for r in evals] == [2, 3]
    assert plot_traces(out["map_plot"])["AP"] == pytest.approx([100 * r["eval"]["AP"] for r in evals])
    # the run's own held-out evaluation of its final weights is the closed loop's "after" (same
    # settings; bit-equal only when both ran on the CPU)
    if json.loads((run_dir / "config.json").read_text())["resolved"]["device"] == "cpu":
        assert evals[-1]["eval"]["AP"] == pytest.approx(loop["after"]["AP"])

    # load the fine-tuned weights: the banner says so
    out = c.predict("t1", api_name="/ft_load")
    banner = out["banner"]
    assert out["status"].startswith("✔") and "model_final.pth" in banner and "UNTRAINED" not in banner, banner
    assert studio.hub.label().startswith(str(run_dir / "model_final.pth"))
    # a next run would start from these weights, with the preset the checkpoint records
    assert ft.model_setup() == ("tiny", str(run_dir / "model_final.pth"), "tiny-random")

    # the closed loop's numbers equal evaluate() on predictions made here, against the original labels
    frames = [studio.store.frame_path(held.id, i) for i in range(held.num_frames)]
    vid = next(v for v in src_gt["videos"] if Path(v["file_names"][0]).parent.name == held.name)
    gt = {"videos": [vid], "categories": src_gt["categories"],
          "annotations": [a for a in src_gt["annotations"] if a["video_id"] == vid["id"]]}
    for which, weights in (("before", None), ("after", run_dir / "model_final.pth")):
        own = own_predictions(weights, "tiny-random", frames, gt)
        app_results = json.loads((run_dir / "closed_loop" / f"{which}_results.json").read_text())
        assert len(app_results) == len(own) > 0
        assert [r["score"] for r in app_results] == pytest.approx([r["score"] for r in own], abs=1e-5)
        assert [r["category_id"] for r in app_results] == [r["category_id"] for r in own]
        expected = evaluate(gt, own)
        for k in ("AP", "AP50", "AP75", "AR10"):
            assert loop[which][k] == pytest.approx(expected[k], abs=1e-12), (which, k)
        saved = json.loads((run_dir / "eval" / f"closed_loop_{which}.json").read_text())
        assert saved["AP"] == loop[which]["AP"] and "per_category" in saved

    from app.dashboard.loaders import load_report, peek_kind  # the dashboard reads the eval files
    assert peek_kind(run_dir / "eval" / "closed_loop_after.json") == "metrics"
    assert load_report(str(run_dir / "eval" / "closed_loop_before.json")).summary["AP"] is not None


def test_start_refuses_bad_choices(server, tmp_path):
    """Wrong choices are refused with a message before anything is written or started."""
    from app.finetune.service import FineTuneError, StartRequest

    url, studio, home = server
    ft = studio.finetune
    write_synthetic_ytvis(studio.cfg.datasets / "a", seed=3, spec=SyntheticSpec(num_videos=1, **SPEC))
    write_synthetic_ytvis(studio.cfg.datasets / "b", seed=4, spec=SyntheticSpec(num_videos=1, **SPEC))
    before = set(ft.runs())
    bad = [(StartRequest([]), "at least one"),
           (StartRequest(["nope"]), "no dataset named nope"),
           (StartRequest(["a"], heldout_dataset="a"), "also a training dataset"),
           (StartRequest(["a"], project=None, heldout_videos=[10_000]), "belong to the chosen project")]
    for req, msg in bad:
        with pytest.raises(FineTuneError, match=msg):
            ft.start(req)
    from PIL import Image  # a one-frame video, not marked reviewed

    pid = studio.store.create_project("unreviewed")
    staged = studio.store.reserve_video_dir()
    Image.new("RGB", (64, 48)).save(staged / "00000.jpg")
    vid = studio.store.add_video(pid, "still", staged, 64, 48, 1, 1.0)
    with pytest.raises(FineTuneError, match="must be reviewed"):
        ft.start(StartRequest(["a"], project=pid, heldout_videos=[vid]))
    studio.store.set_reviewed(vid, True)
    with pytest.raises(FineTuneError, match="no tracks"):
        ft.start(StartRequest(["a"], project=pid, heldout_videos=[vid]))
    with pytest.raises(FineTuneError, match="not both"):
        ft.start(StartRequest(["a"], project=pid, heldout_videos=[vid], heldout_dataset="b"))
    assert set(ft.runs()) == before


def test_closed_loop_on_a_heldout_dataset(server, tmp_path):
    """The closed loop on a held-out dataset folder; the same weights before and after give the
    same numbers, and the files the dashboard reads are written."""
    import dataclasses

    from app.finetune.closed_loop import loop_settings, run_closed_loop

    url, studio, home = server
    val = tmp_path / "val"
    write_synthetic_ytvis(val, seed=5, spec=SyntheticSpec(num_videos=2, num_frames=3, height=48, width=64))
    spec = dataclasses.asdict(studio.hub.spec)
    record = {"heldout": {"kind": "dataset", "dir": str(val)}, "loop": loop_settings("tiny"),
              "before": {"spec": spec}, "after": {"spec": spec}}
    out = run_closed_loop(studio.hub, tmp_path / "run", record)
    assert out["videos"] == ["vid005_0000", "vid005_0001"]
    assert out["before"]["num_results"] > 0 and out["before"]["AP"] == out["after"]["AP"]
    assert json.loads((tmp_path / "run" / "closed_loop.json").read_text())["after"]["AP"] == out["after"]["AP"]
    assert (tmp_path / "run" / "eval" / "closed_loop_before.json").is_file()


@pytest.mark.slow
def test_stop_a_run(server):
    """Stop checkpoints and stops the run; there is then nothing to load. After the first test
    the app holds fine-tuned weights, so this run also starts from a checkpoint."""
    url, studio, home = server
    if not (studio.cfg.datasets / "shapes").is_dir():
        write_synthetic_ytvis(studio.cfg.datasets / "shapes", seed=0, spec=SyntheticSpec(num_videos=3, **SPEC))
    c = NamedClient(url, studio.api)
    c.predict(None, api_name="/ft_refresh")  # a dropdown accepts only what this session was offered
    status = c.predict(["shapes"], None, [], "", 500, 1, 0, 64, 0, 0, True, "long", api_name="/ft_start")["status"]
    assert "started" in status, status
    t0 = time.time()
    while "training, iteration" not in (out := c.predict("long", api_name="/ft_poll"))["status"]:
        assert time.time() - t0 < 300 and "failed" not in out["status"], out["status"]
        time.sleep(0.3)
    assert "stop requested" in c.predict("long", api_name="/ft_stop")["status"]
    while "stopped at iteration" not in (out := c.predict("long", api_name="/ft_poll"))["status"]:
        assert time.time() - t0 < 300 and "failed" not in out["status"], out["status"]
        time.sleep(0.3)
    record = json.loads((home / "runs" / "long" / "finetune.json").read_text())
    assert record["preset"] == "tiny" and record["heldout"]["kind"] is None
    assert list((home / "runs" / "long").glob("model_0*.pth")), "a checkpoint to resume from"
    assert c.predict("long", api_name="/ft_load")["status"].startswith("✖")  # no model_final.pth
