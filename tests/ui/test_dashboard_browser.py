"""Browser test of `ovformer dashboard`: Debian chromium drives every page on a fixture folder.

The charts' numbers are read back from the plotly figures in the page (each figure carries
layout.meta.chart) and compared with the fixture. Every request that is not loopback is
aborted and recorded; the test fails if the page tried to reach anything outside. Screenshots
go to $DASHBOARD_SCREENSHOTS (default: the test's tmp folder). Every wait is bounded.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ (fixture generator)
from fixtures_dashboard import FRAME_GREY, H, W, make_dashboard_fixture  # noqa: E402

from app.dashboard.main import build_command, server_env  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium not installed")]
WAIT_MS = 20_000  # per wait; a cold page on 2 busy cores takes 2-4 s
LOOPBACK = ("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:", "about:")

# plotly figures as drawn: {chart id: {"data": [{name, x, y, meta}], "layout": {...}}}
FIGS_JS = """() => Object.fromEntries(Array.from(document.querySelectorAll('.js-plotly-plot'))
  .filter(e => e.layout && e.layout.meta).map(e => [e.layout.meta.chart, {
    data: e.data.map(d => ({name: d.name, x: Array.from(d.x || []), y: Array.from(d.y || []),
                            meta: d.meta, color: d.marker && d.marker.color})),
    layout: {yaxis: e.layout.yaxis, yrange: e._fullLayout.yaxis.range, shapes: e.layout.shapes}}]))"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """The dashboard started exactly as `ovformer dashboard` starts it, on a free port."""
    tmp = tmp_path_factory.mktemp("dashboard")
    fx = make_dashboard_fixture(tmp)
    port = _free_port()
    log = open(tmp / "server.log", "wb")
    proc = subprocess.Popen(build_command(str(fx.runs), str(fx.datasets), str(fx.reports), port),
                            env=server_env(), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"dashboard did not start: {(tmp / 'server.log').read_text()[-2000:]}")
        time.sleep(0.2)
    yield url, fx, tmp
    proc.kill()  # nothing to save; streamlit's graceful shutdown takes seconds
    proc.wait(10)
    log.close()


@pytest.fixture(scope="module")
def browser_page(server):
    """One chromium page for all tests; non-loopback requests are aborted and recorded."""
    from playwright.sync_api import sync_playwright

    blocked: list[str] = []
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        # Tall enough for a whole page: streamlit scrolls inside its own container, so
        # full_page screenshots would stop at the viewport.
        ctx = browser.new_context(viewport={"width": 1400, "height": 1800})
        ctx.set_default_timeout(WAIT_MS)

        def route(r: Any) -> None:
            if r.request.url.startswith(LOOPBACK):
                r.continue_()
            else:
                blocked.append(r.request.url)
                r.abort()

        ctx.route("**/*", route)
        page = ctx.new_page()
        # Streamlit probes <page path>/_stcore/* first and gets a harmless 404 on sub-pages.
        page.on("console", lambda m: errors.append(m.text) if m.type == "error"
                and "Failed to load resource" not in m.text else None)
        yield page, blocked, errors
        ctx.close()
        browser.close()


def _shots(tmp: Path) -> Path:
    d = Path(os.environ.get("DASHBOARD_SCREENSHOTS") or tmp / "screenshots")
    d.mkdir(parents=True, exist_ok=True)
    return d


def _figures(page: Any, charts: list[str]) -> dict[str, Any]:
    """Wait (bounded) until the named charts are drawn; return every figure on the page."""
    page.wait_for_function(
        "ids => ids.every(id => Array.from(document.querySelectorAll('.js-plotly-plot'))"
        ".some(e => e.layout && e.layout.meta && e.layout.meta.chart === id && e.data))",
        arg=charts, timeout=WAIT_MS)
    return page.evaluate(FIGS_JS)


def _nav(page: Any, title: str, charts: list[str]) -> dict[str, Any]:
    """Switch page with the sidebar, as a user does (no reload: the session and its cache stay)."""
    page.locator("[data-testid=stSidebarNavLink]", has_text=title).click()
    page.get_by_role("heading", name=title).wait_for(timeout=WAIT_MS)
    return _figures(page, charts)


def _trace(fig: dict[str, Any], name: str, meta: str | None = None) -> dict[str, Any]:
    return next(t for t in fig["data"] if t["name"] == name and (meta is None or t["meta"] == meta))


def test_training_page(server, browser_page):
    url, fx, tmp = server
    page, _, _ = browser_page
    page.goto(url + "/", wait_until="domcontentloaded")
    figs = _figures(page, ["loss", "eval_map", "loss_terms", "lr", "throughput"])
    alerts = "\n".join(page.locator("[data-testid=stAlert]").all_inner_texts())
    assert "3 problems while reading" in alerts
    assert "run_c/metrics.jsonl line 3" in alerts and "run_c/metrics.jsonl line 5" in alerts
    assert "run_c/config.json could not be read" in alerts
    for run in ("run_a", "run_b", "run_c"):  # all three overlaid, the corrupt lines skipped
        rows = fx.train[run]
        loss = _trace(figs["loss"], run)
        assert loss["x"] == [r["iteration"] for r in rows]
        assert loss["y"] == pytest.approx([r["loss"] for r in rows])
        assert _trace(figs["lr"], run)["y"] == pytest.approx([r["lr"] for r in rows])
        assert _trace(figs["throughput"], run)["y"] == pytest.approx([r["samples_per_s"] for r in rows])
        assert _trace(figs["loss_terms"], run, "loss_dice")["y"] == pytest.approx([r["loss_dice"] for r in rows])
    for run in ("run_a", "run_b"):
        ap = _trace(figs["eval_map"], f"{run} AP")
        assert ap["x"] == [e["iteration"] for e in fx.evals[run]]
        assert ap["y"] == pytest.approx([e["AP"] * 100 for e in fx.evals[run]])
    assert not [t for t in figs["eval_map"]["data"] if t["name"].startswith("run_c")]
    page.screenshot(path=str(_shots(tmp) / "training.png"))

    readme = os.environ.get("DASHBOARD_README_SHOT")
    if readme:  # the README image: two clean runs, selected through the URL as a shared link would
        page.goto(url + "/?runs=run_a&runs=run_b", wait_until="domcontentloaded")
        figs = _figures(page, ["loss", "eval_map"])
        assert sorted(t["name"] for t in figs["loss"]["data"]) == ["run_a", "run_b"]
        page.wait_for_timeout(1000)  # let plotly finish its resize transition
        page.screenshot(path=readme)


def test_reports_page(server, browser_page):
    url, fx, tmp = server
    page, _, _ = browser_page
    figs = _nav(page, "Evaluation reports", ["summary", "per_category"])  # lvvis_val.json sorts first
    rep = fx.report
    summary = figs["summary"]["data"][0]
    defined = {k: v * 100 for k, v in rep.items() if isinstance(v, float) and v >= 0}
    assert dict(zip(summary["x"], summary["y"])) == pytest.approx(defined)
    assert "APl" not in summary["x"]  # -1 = undefined, not drawn as 0

    cats = sorted((c for c in rep["per_category"] if c["AP"] >= 0), key=lambda c: c["AP"])
    per_cat = figs["per_category"]
    assert per_cat["layout"]["yaxis"]["categoryarray"] == [c["name"] for c in cats]  # worst first
    lo, hi = per_cat["layout"]["yrange"]
    assert lo > hi  # reversed axis: the first (worst) category is drawn at the top
    for part, parts in (("base", (0, 1)), ("novel", (2, 3))):
        tr = _trace(per_cat, part)
        sel = [c for c in cats if c["partition"] in parts]
        assert tr["y"] == [c["name"] for c in sel]
        assert tr["x"] == pytest.approx([c["AP"] * 100 for c in sel])
    assert _trace(per_cat, "base")["color"] != _trace(per_cat, "novel")["color"]
    page.locator("[data-testid=stMetric]", has_text="AP_novel").wait_for(timeout=WAIT_MS)
    metrics = page.locator("[data-testid=stMetric]").all_inner_texts()
    assert any("AP_novel" in m and "12.5" in m for m in metrics), metrics
    assert page.get_by_text("kite").count() >= 1  # AP undefined: listed, not charted
    page.screenshot(path=str(_shots(tmp) / "reports.png"))


def test_datasets_page(server, browser_page):
    url, fx, tmp = server
    page, _, _ = browser_page
    figs = _nav(page, "Datasets", ["class_hist", "track_length", "mask_area"])  # toy_ytvis sorts first
    page.locator("[data-testid=stMetric]", has_text="categories").wait_for(timeout=WAIT_MS)
    metrics = {m.split("\n")[0]: m.split("\n")[-1] for m in page.locator("[data-testid=stMetric]").all_inner_texts()}
    assert metrics == {"videos": str(fx.num_videos), "frames": str(fx.num_frames),
                       "tracks": str(len(fx.track_lengths)), "categories": "3"}
    hist = figs["class_hist"]["data"][0]
    assert dict(zip(hist["x"], hist["y"])) == fx.class_counts
    lengths = figs["track_length"]["data"][0]
    assert dict(zip(lengths["x"], lengths["y"])) == {n: fx.track_lengths.count(n) for n in set(fx.track_lengths)}
    areas = figs["mask_area"]["data"][0]
    assert sum(areas["y"]) == len(fx.mask_areas)
    page.screenshot(path=str(_shots(tmp) / "datasets.png"))

    # An unreadable export is listed and reported when picked; the page keeps working.
    page.locator("[data-testid=stSelectbox]", has_text="Dataset").click()
    page.get_by_role("option", name="truncated_export/instances.json").click()
    page.get_by_text("truncated_export/instances.json could not be read").wait_for(timeout=WAIT_MS)


def _shown_frame(page: Any, url: str) -> np.ndarray:
    """The frame image as served (PNG, original size), read through the page's own origin."""
    from PIL import Image

    src = page.locator("[data-testid=stImage] img").first.get_attribute("src")
    body = page.request.get(src if src.startswith("http") else url + src).body()
    return np.asarray(Image.open(io.BytesIO(body)).convert("RGB")).astype(int)


def test_results_browser(server, browser_page):
    url, fx, tmp = server
    page, _, _ = browser_page
    figs = _nav(page, "Results browser", ["timeline"])  # the only results file; video 1 first
    page.get_by_text("frame 0 of 0-2: 1 masks").wait_for(timeout=WAIT_MS)
    # Score threshold 0.3 hides track #3 (score 0.1); #2 starts on frame 1.
    assert [t["name"] for t in figs["timeline"]["data"]] == ["#1 person", "#2 dog"]
    assert _trace(figs["timeline"], "#2 dog")["x"] == [None, 1, 2]
    img = _shown_frame(page, url)
    assert img.shape == (H, W, 3)
    r0, r1, c0, c1 = fx.results_box
    assert np.abs(img[r1 - 2, (c0 + c1) // 2] - FRAME_GREY).max() > 30  # inside track #1: tinted
    assert np.abs(img[H - 2, W - 2] - FRAME_GREY).max() <= 3  # background: the grey frame

    # Scrub to the last frame with the keyboard, as a user would.
    page.locator("[data-testid=stSlider] input[type=range]").first.focus()
    page.keyboard.press("End")
    page.get_by_text("frame 2 of 0-2: 2 masks").wait_for(timeout=WAIT_MS)
    page.wait_for_function("() => Array.from(document.querySelectorAll('.js-plotly-plot')).some("
                           "e => e.layout.meta.chart === 'timeline' && e.layout.shapes[0].x0 === 2)",
                           timeout=WAIT_MS)
    img = _shown_frame(page, url)
    assert np.abs(img[30, 125] - FRAME_GREY).max() > 30  # track #2 (dog box rows 12-38, cols 100-150)
    page.screenshot(path=str(_shots(tmp) / "results.png"))


def test_no_outside_requests(browser_page):
    _, blocked, errors = browser_page
    assert blocked == [], f"the page tried to reach: {blocked}"
    assert errors == [], f"console errors: {errors}"
