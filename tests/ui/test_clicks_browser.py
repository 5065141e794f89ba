"""Click to add in a real browser: click on the frame, the candidate is drawn, n cycles, Enter
accepts, the export contains the new track (Debian chromium via Playwright).

The video and its query bank are planted through the store (the synthetic bank of
tests/test_query_candidates.py), so no model runs.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from apptest import open_local_page

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")]


def _plant(studio) -> tuple[int, int]:
    from app.annotate.prelabel import query_bank_dir
    from tests import test_query_candidates as syn

    store = studio.store
    H, W = syn.OUT
    pid = store.create_project("clicks", ["cat", "dog", "person", "car"])
    staged = store.reserve_video_dir()
    for i in range(syn.T):
        Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(staged / f"{i:05d}.jpg")
    vid = store.add_video(pid, "synthetic", staged, W, H, syn.T, 10.0)
    d = query_bank_dir(store, vid)
    syn._build_bank(d)
    (d / "links.json").write_text(json.dumps({"indices": list(range(syn.T)), "tracks": {}}))
    return pid, vid


def test_click_next_enter_adds_the_track(app_server):
    from playwright.sync_api import expect, sync_playwright

    from app.annotate.export import ground_truth
    from tests import test_query_candidates as syn

    url, studio, _home = app_server
    pid, vid = _plant(studio)
    H, W = syn.OUT
    with sync_playwright() as p:
        browser, page, external = open_local_page(p, CHROMIUM, ARGS)
        status = page.locator("#status")
        page.goto(url)
        # open the project and its video
        proj = page.locator("#project_dd input")
        expect(proj).to_have_value(re.compile("clicks"), timeout=30_000)
        vin = page.locator("#video_dd input")
        vin.click()
        page.locator(f"#{vin.get_attribute('aria-controls')} li", has_text="synthetic").first.click()
        expect(page.locator("#video_info")).to_contain_text("synthetic", timeout=20_000)
        page.keyboard.press("a")  # the Add tab
        expect(page.locator("#add_accept_btn")).to_be_visible(timeout=10_000)
        img = page.locator("#frame_img img").first
        img.scroll_into_view_if_needed()
        box = img.bounding_box()
        img.click(position={"x": (140 + 0.5) / W * box["width"], "y": (60 + 0.5) / H * box["height"]})
        expect(status).to_contain_text("candidate 1/", timeout=20_000)
        assert "person" in status.inner_text().split("classes:")[1].split(",")[0]  # the cover first
        page.keyboard.press("n")
        expect(status).to_contain_text("candidate 2/", timeout=20_000)
        assert "dog" in status.inner_text().split("classes:")[1].split(",")[0]
        page.locator("#frame_img").screenshot(path=str(Path(_home) / "candidate.png"))
        page.keyboard.press("Enter")
        expect(status).to_contain_text("new track #", timeout=20_000)
        expect(page.locator("#video_info")).to_contain_text("1 tracks", timeout=20_000)
        page.keyboard.press("Escape")
        expect(status).to_contain_text("cancelled", timeout=20_000)
        browser.close()
    assert external == []
    gt = ground_truth(studio.store, pid)
    cat = {c["name"]: c["id"] for c in gt["categories"]}
    [ann] = [a for a in gt["annotations"] if a["category_id"] == cat["dog"]]
    from ovformer.ytvis.rle import decode_rle
    for f, seg in enumerate(ann["segmentations"]):
        box = syn._box_b(f)
        assert (seg is None) == (box is None)
        if box is not None:
            assert syn._iou(decode_rle(seg).astype(bool), syn._box_mask(box)) >= 0.8
