"""Unit tests of the dashboard's figures, mask overlay and launcher."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the fixture generator
from fixtures_dashboard import H, W, DashboardFixture, make_dashboard_fixture  # noqa: E402

from app.dashboard import datasets as dsl  # noqa: E402
from app.dashboard import figures as fg  # noqa: E402
from app.dashboard import loaders as ld  # noqa: E402
from app.dashboard import main as dm  # noqa: E402
from app.dashboard import overlay as ov  # noqa: E402
from ovformer.render import overlay_frame, track_color  # noqa: E402


@pytest.fixture(scope="module")
def fx(tmp_path_factory: pytest.TempPathFactory) -> DashboardFixture:
    return make_dashboard_fixture(tmp_path_factory.mktemp("dash"))


def _json(fig):
    return fig.to_plotly_json()


def test_training_figures_overlay_runs_with_stable_colours(fx):
    runs = [ld.load_run(str(fx.runs / n)) for n in ("run_a", "run_b")]
    fig = _json(fg.training_figure(runs, "loss", "loss", "Loss", log_y=True))
    assert fig["layout"]["meta"] == {"chart": "loss"} and fig["layout"]["yaxis"]["type"] == "log"
    assert [t["name"] for t in fig["data"]] == ["run_a", "run_b"]
    assert list(fig["data"][1]["y"]) == pytest.approx([r["loss"] for r in fx.train["run_b"]])
    terms = _json(fg.loss_terms_figure(runs, ld.loss_terms(runs)))
    assert len(terms["data"]) == 8 and {t["meta"] for t in terms["data"]} == set(ld.loss_terms(runs))
    colours = {t["name"]: t["line"]["color"] for t in terms["data"]}
    assert colours == {t["name"]: t["line"]["color"] for t in fig["data"]}  # same run, same colour
    fixed = {"run_a": "#123456", "run_b": "#abcdef"}  # the page's per-folder colours win
    assert [t["line"]["color"] for t in _json(fg.eval_figure(runs[::-1], ("AP",), fixed))["data"]] == [
        "#abcdef", "#123456"]
    ev = _json(fg.eval_figure(runs))
    ap = next(t for t in ev["data"] if t["name"] == "run_a AP")
    assert list(ap["x"]) == [e["iteration"] for e in fx.evals["run_a"]]
    assert list(ap["y"]) == pytest.approx([e["AP"] * 100 for e in fx.evals["run_a"]])


def test_eval_figure_skips_undefined_points():
    run = ld.RunData(name="r", path="", evals=[{"iteration": 1, "AP": -1.0}, {"iteration": 2, "AP": 0.5}])
    fig = _json(fg.eval_figure([run], ("AP",)))
    assert list(fig["data"][0]["x"]) == [2] and list(fig["data"][0]["y"]) == [50.0]


def test_long_runs_are_thinned_but_keep_the_last_point():
    rows = [{"iteration": i, "loss": float(i)} for i in range(10_001)]
    fig = _json(fg.training_figure([ld.RunData(name="r", path="", train=rows)], "loss", "loss", "Loss"))
    xs = list(fig["data"][0]["x"])
    assert len(xs) <= fg.MAX_POINTS + 1 and xs[0] == 0 and xs[-1] == 10_000


def test_report_figures(fx):
    rep = ld.load_report(str(fx.reports / "lvvis_val.json"), "val")
    summ = _json(fg.summary_figure([rep]))
    assert "APl" not in summ["data"][0]["x"]  # undefined everywhere: not a 0 bar
    assert dict(zip(summ["data"][0]["x"], summ["data"][0]["y"]))["AP_base"] == pytest.approx(48.33)
    per = _json(fg.per_category_figure(rep, top_n=3))
    assert per["layout"]["yaxis"]["categoryarray"] == ["zebra", "giraffe", "dog"]
    assert per["layout"]["yaxis"]["autorange"] == "reversed"
    by_name = {t["name"]: t for t in per["data"]}
    assert list(by_name["novel"]["y"]) == ["zebra", "giraffe"] and list(by_name["base"]["x"]) == [35.0]
    assert by_name["base"]["marker"]["color"] != by_name["novel"]["marker"]["color"]
    assert [t["name"] for t in _json(fg.per_category_figure(rep, 10, "base"))["data"]] == ["base"]


def test_dataset_figures(fx):
    ds = dsl.load_dataset(str(fx.datasets / "toy_ytvis" / "train.json"))
    hist = _json(fg.class_histogram_figure(ds, top_n=2))["data"][0]
    assert list(hist["x"]) == ["person", "dog"] and list(hist["y"]) == [2, 1]
    tl = _json(fg.track_length_figure(ds))["data"][0]
    assert dict(zip(tl["x"], tl["y"])) == {1.0: 2, 2.0: 1, 3.0: 1}
    area = _json(fg.mask_area_figure(ds))
    assert sum(area["data"][0]["y"]) == len(fx.mask_areas) and area["layout"]["xaxis"]["type"] == "linear"
    ds.mask_areas = [10.0, 5e5]  # areas over decades get log bins
    assert _json(fg.mask_area_figure(ds))["layout"]["xaxis"]["type"] == "log"


def test_overlay_and_timeline(fx):
    res = dsl.load_results(str(fx.runs / "run_a" / "eval" / "results.json"))
    entries = res.by_video[1]
    items = ov.frame_items(entries, 0, {1: "person"})
    assert [(i, label) for i, label, _ in items] == [(1, "person 0.90"), (3, "class 3 0.10")]
    assert items[0][2].sum() == 2500  # the 50x50 box of the fixture
    rgb = np.full((H, W, 3), 40, np.uint8)
    out = overlay_frame(rgb, items[:1])
    r0, r1, c0, c1 = fx.results_box
    assert np.abs(out[r1 - 2, (c0 + c1) // 2].astype(int) - 40).max() > 30
    assert (out[H - 2, W - 2] == 40).all()
    nulls = [{**e, "segmentations": [None] * len(e["segmentations"])} for e in entries]
    assert ov.frame_items(nulls, 0, {}) == []  # a null frame draws nothing
    tl = _json(fg.timeline_figure(entries, {1: "person", 2: "dog"}, 2, [1, 2]))
    assert [t["name"] for t in tl["data"]] == ["#1 person", "#2 dog"]
    assert list(tl["data"][1]["x"]) == [None, 1, 2] and tl["layout"]["shapes"][0]["x0"] == 2
    r, g, b = track_color(1)
    assert tl["data"][0]["line"]["color"] == f"rgb({r},{g},{b})"  # the mask's colour


def test_build_command_is_headless_loopback_and_private(tmp_path):
    cmd = dm.build_command(str(tmp_path / "r"), "d", "rep", 9999, python="py")
    assert cmd[:5] == ["py", "-m", "streamlit", "run", str(dm.PAGE_SCRIPT)]
    flags = dict(zip(cmd[5:cmd.index("--"):2], cmd[6:cmd.index("--"):2]))
    assert flags["--server.headless"] == "true" and flags["--browser.gatherUsageStats"] == "false"
    assert flags["--server.address"] == "127.0.0.1" and flags["--server.port"] == "9999"
    tail = cmd[cmd.index("--") + 1:]
    assert tail[0::2] == ["--runs", "--datasets", "--reports"]
    assert tail[1] == str((tmp_path / "r").resolve()) and all(Path(p).is_absolute() for p in tail[1::2])
    env = dm.server_env({"PYTHONPATH": "/x"})
    assert env["PYTHONPATH"].split(":")[-1] == "/x" and Path(env["PYTHONPATH"].split(":")[0], "app").is_dir()
    assert dm.PAGE_SCRIPT.is_file()


def test_main_runs_streamlit_and_returns_its_code(monkeypatch):
    calls = []
    monkeypatch.setattr(dm.subprocess, "call", lambda cmd, env: calls.append(cmd) or 3)
    assert dm.main(["--runs", "a", "--port", "8600"]) == 3
    assert "8600" in calls[0] and calls[0][-6:-4] == ["--runs", str(Path("a").resolve())]

    def interrupted(cmd, env):
        raise KeyboardInterrupt

    monkeypatch.setattr(dm.subprocess, "call", interrupted)
    assert dm.main([]) == 0


def test_page_arguments():
    f = ld.parse_folders(["--runs", "R", "--reports", "P", "--future-flag"])
    assert (f.runs, f.datasets, f.reports) == ("R", "datasets", "P")
