"""The annotation flow in a real browser (Debian chromium driven by Playwright).

upload bikes.mp4 -> vocabulary -> pre-label -> scrub -> relabel -> delete -> merge -> paint ->
export, with a screenshot of each step in ``$OVFORMER_UI_SHOTS`` (default ``.tmp/ui-shots``;
``OVFORMER_UPDATE_DOCS=1`` also refreshes the README's ``docs/app.png``);
the exported YouTube-VIS json is checked with pycocotools against what the page showed. Every
request that would leave 127.0.0.1 is aborted and counted: there must be none.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from apptest import VOCAB, open_local_page, upload_and_prelabel

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(os.environ.get("OVFORMER_UI_SHOTS", ROOT / ".tmp" / "ui-shots"))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed (make browser)")]


@pytest.fixture(scope="module")
def server(app_server):
    url, studio, _home = app_server
    return url, studio


def test_browser_flow(server):
    from playwright.sync_api import expect, sync_playwright

    url, studio = server
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    n = [0]

    def shot(page, name: str, full: bool = True) -> None:
        n[0] += 1
        page.screenshot(path=str(SHOTS / f"{n[0]:02d}_{name}.png"), full_page=full)

    with sync_playwright() as p:
        browser, page, external = open_local_page(p, CHROMIUM, ARGS)
        status = page.locator("#status")
        page.goto(url)
        expect(page.locator("#banner")).to_contain_text("UNTRAINED", timeout=30_000)
        shot(page, "start")

        # 1. bring a video, 2. type a vocabulary, 3. pre-label (small and fast settings)
        upload_and_prelabel(page, max_tracks=6)
        shot(page, "prelabelled")

        # 4. scrub to frame 5 and pick the first track of the review queue
        page.locator("#frame_slider input[type=number]").fill("5")
        page.locator("#frame_slider input[type=number]").press("Enter")
        expect(page.locator("#timeline")).to_contain_text("frame 5", timeout=20_000)
        page.locator("#queue_btn").click()
        expect(status).to_contain_text("track #", timeout=20_000)
        shot(page, "scrubbed_selected")

        # 5. relabel with a new class typed in, delete one track, merge two
        page.get_by_role("tab", name="5 · Correct").click()
        label = page.locator("#label_dd input")
        label.fill("unicycle")
        label.press("Enter")
        page.locator("#relabel_btn").click()
        expect(status).to_contain_text("relabelled to unicycle", timeout=20_000)
        relabelled = int(re.search(r"track #(\d+)", status.inner_text()).group(1))
        shot(page, "relabelled")
        page.get_by_role("tab", name="4 · Review").click()
        last = page.locator("[data-testid='cell-5-0']").first  # the last row: the best-scored track
        deleted = int(last.inner_text().strip())
        last.click()
        expect(status).to_contain_text(f"track #{deleted} ", timeout=20_000)
        page.get_by_role("tab", name="5 · Correct").click()
        page.locator("#delete_btn").click()
        expect(status).to_contain_text(f"track #{deleted} deleted", timeout=20_000)
        expect(page.locator("#video_info")).to_contain_text("5 tracks")
        shot(page, "deleted")
        page.locator("#track_dd input").click()
        page.locator(f"#{page.locator('#track_dd input').get_attribute('aria-controls')} li",
                     has_text=f"#{relabelled} ").first.click()
        expect(status).to_contain_text(f"track #{relabelled}", timeout=20_000)
        merge_in = page.locator("#merge_dd input")
        merge_in.click()
        page.locator(f"#{merge_in.get_attribute('aria-controls')} li").first.click()
        page.locator("#merge_btn").click()
        expect(status).to_contain_text(f"merged into #{relabelled}", timeout=20_000)
        expect(page.locator("#video_info")).to_contain_text("4 tracks")
        shot(page, "merged")

        # 5. paint a correction on frame 5 of the relabelled track
        page.get_by_role("tab", name="Paint").click()
        page.locator("#paint_btn").click()
        expect(status).to_contain_text(f"painting track #{relabelled}", timeout=20_000)
        page.wait_for_timeout(800)  # the editor draws the loaded layer
        canvas = page.locator("#editor canvas").first
        box = canvas.bounding_box()
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(cx - 60, cy)
        page.mouse.down()
        for k in range(1, 6):  # ~6 events: each costs ~0.2 s in headless chromium
            page.mouse.move(cx - 60 + 24 * k, cy)
        page.mouse.up()
        page.wait_for_timeout(500)
        shot(page, "painted")
        page.locator("#save_mask_btn").click()
        expect(status).to_contain_text("saved", timeout=30_000)
        # erase: reload the saved mask, cut a vertical line through the stroke's centre, save
        page.locator("#paint_btn").click()
        expect(status).to_contain_text(f"painting track #{relabelled}", timeout=20_000)
        page.wait_for_timeout(800)
        page.locator("#editor button[aria-label='Erase']").click()
        page.mouse.move(cx, cy - 40)
        page.mouse.down()
        for k in range(1, 5):
            page.mouse.move(cx, cy - 40 + 20 * k)
        page.mouse.up()
        page.wait_for_timeout(500)
        shot(page, "erased")
        page.locator("#save_mask_btn").click()
        expect(status).to_contain_text("saved", timeout=30_000)
        page.get_by_role("tab", name="4 · Review").click()
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_timeout(300)
        # the README's picture: refreshed only on request so that CI never dirties the checkout
        readme_png = ROOT / "docs" / "app.png" if os.environ.get("OVFORMER_UPDATE_DOCS") else SHOTS / "app.png"
        page.screenshot(path=str(readme_png))
        shot(page, "after_paint")
        info = page.locator("#video_info").inner_text()

        # 4. play the video with masks drawn on
        page.get_by_role("tab", name="Play").click()
        page.locator("#play_btn").click()
        expect(status).to_contain_text("rendered", timeout=60_000)
        expect(page.locator("#player video")).to_have_count(1, timeout=20_000)
        page.wait_for_function("() => document.querySelector('#player video').duration > 0", timeout=20_000)
        shot(page, "playing")

        # 6. export
        page.locator("#export_ds_btn").click()
        expect(status).to_contain_text("dataset with 4 tracks", timeout=60_000)
        expect(page.locator("#export_file")).to_contain_text(".zip", timeout=20_000)
        shot(page, "exported")
        # a reloaded page (a new session) reopens the saved project as it was
        page.reload()
        expect(page.locator("#video_info")).to_contain_text("4 tracks", timeout=30_000)
        expect(page.locator("#vocab textarea")).to_have_value(VOCAB)
        shot(page, "reloaded")
        browser.close()

    assert external == [], f"requests tried to leave the machine: {external}"
    assert "4 tracks" in info
    root = next(Path(studio.cfg.datasets).iterdir())
    gt = json.loads((root / "annotations.json").read_text())
    cats = {c["id"]: c["name"] for c in gt["categories"]}
    anns = gt["annotations"]
    assert len(anns) == 4 and sorted(cats[a["category_id"]] for a in anns).count("unicycle") == 1
    uni = next(a for a in anns if cats[a["category_id"]] == "unicycle")
    m = mask_utils.decode(uni["segmentations"][5]).astype(bool)
    # the stroke crossed the frame's centre row and the eraser cut it again at the centre column
    assert m[136, 250:280].all() and m[136, 360:390].all(), "the painted stroke is in the exported mask"
    assert not m[125:150, 312:328].any(), "the erased line is not in the exported mask"
    assert uni["areas"][5] == int(m.sum())
    store_tracks = {t.label for v in studio.store.videos(1) for t in studio.store.tracks(v.id)}
    assert {cats[a["category_id"]] for a in anns} == store_tracks
    assert len(list((root / "JPEGImages" / "bikes").glob("*.jpg"))) == 10
    assert np.all([a["segmentations"][f] is None or a["segmentations"][f]["size"] == [272, 640]
                   for a in anns for f in range(10)])


def _finished_run(run_dir: Path) -> None:
    """The files a finished fine-tuning run with a closed loop leaves (no training here: the
    gradio_client test trains for real; this one only looks at the page)."""
    run_dir.mkdir(parents=True)
    lines = [{"iteration": i, "loss": 60 * 0.97 ** i, "loss_ce": 6 * 0.96 ** i, "loss_object_ce": 5.0,
              "loss_mask": 20 * 0.98 ** i, "loss_dice": 30 * 0.98 ** i, "lr": 1e-4} for i in range(1, 51)]
    lines += [{"iteration": i, "eval": {"AP": 0.05 + 0.004 * i, "AP50": 0.12 + 0.006 * i, "AP75": 0.02 + 0.003 * i}}
              for i in (12, 24, 36, 48, 50)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (run_dir / "progress.json").write_text(json.dumps({"state": "finished", "iteration": 50, "total": 50,
                                                       "elapsed_s": 312.0}))
    (run_dir / "model_final.pth").write_bytes(b"")
    heldout = {"kind": "videos", "project": 1, "videos": ["bikes"], "dir": str(run_dir / "heldout")}
    (run_dir / "finetune.json").write_text(json.dumps({"name": run_dir.name, "heldout": heldout, "auto_loop": True,
                                                       "excluded": {"bikes-project": ["bikes"]}}))
    metrics = {"before": {"AP": 0.051, "AP50": 0.118, "AP75": 0.02}, "after": {"AP": 0.25, "AP50": 0.42, "AP75": 0.17}}
    (run_dir / "closed_loop.json").write_text(json.dumps({**metrics, "videos": ["bikes"],
                                                          "weights_before": "r50-lvvis",
                                                          "weights_after": "runs/demo/model_final.pth"}))


def test_finetune_tab_shows_a_finished_run(server):
    """The Fine-tune tab of a page opened after a run: progress, both curves, before/after."""
    from playwright.sync_api import expect, sync_playwright

    url, studio = server
    _finished_run(studio.cfg.home / "runs" / "demo")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        ctx = browser.new_context(viewport={"width": 1440, "height": 1200})
        ctx.route("**/*", lambda r: r.continue_() if r.request.url.startswith(("http://127.0.0.1", "data:", "blob:"))
                  else r.abort())
        page = ctx.new_page()
        page.goto(url)
        page.get_by_role("tab", name="Fine-tune").click()
        expect(page.locator("#ft_status")).to_contain_text("finished", timeout=30_000)
        expect(page.locator("#ft_status")).to_contain_text("AP 5.1 → 25.0")
        for plot in ("#ft_loss", "#ft_map", "#ft_loop_plot"):
            expect(page.locator(f"{plot} .js-plotly-plot")).to_have_count(1, timeout=20_000)
        expect(page.locator("#ft_loop_table")).to_contain_text("+19.9")
        expect(page.locator("#ft_load")).to_be_enabled()
        page.wait_for_timeout(500)  # plotly draws after it is in the DOM
        page.screenshot(path=str(SHOTS / "finetune.png"), full_page=True)
        browser.close()
