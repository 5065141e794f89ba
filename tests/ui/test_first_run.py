"""A first run in a real browser: an empty OVFORMER_HOME, the banner, Download, the model, a pre-label.

The app runs in this process with the released model's defaults (``r50-lvvis``, CLIP
``openai``), and a local stand-in for Google Drive and the Hugging Face Hub runs on 127.0.0.1
(tests/standin_hosts.py). What differs from production, and nothing else:

- the hosts: ``OVFORMER_DOWNLOAD_STANDIN`` points gdown's proxy (with a test CA) and the hub's
  endpoint at the stand-in; the download code, gdown's and the hub's requests and URLs are the
  production ones;
- the files are small (:class:`~standin_hosts.ModelFiles`): the checkpoint is the ``tiny``
  preset in the official layout with its architecture record, and the CLIP file is the tiny
  architecture, which open_clip builds under the ViT-B/32 name while the test runs
  (:func:`~standin_hosts.tiny_clip_as_openai`) so that ``load_clip("openai")`` reads it from the
  hub cache as it would read OpenAI's.

Every connection or name lookup of this process outside 127.0.0.1 is refused and listed, every
browser request outside 127.0.0.1 is aborted and listed, and the stand-in logs what it was
asked: all three are checked. ``OVFORMER_UPDATE_DOCS=1`` refreshes the README's
``docs/first_run.png`` (the banner of a fresh machine).
"""
from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from apptest import free_port, upload_and_prelabel

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.standin_hosts import (ModelFiles, StandinHosts, leftovers, make_model_files, only_loopback,  # noqa: E402
                                 serve_model_files, tiny_clip_as_openai)

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(os.environ.get("OVFORMER_UI_SHOTS", ROOT / ".tmp" / "ui-shots")) / "first_run"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed (make browser)")]


@pytest.fixture(scope="module")
def files() -> ModelFiles:
    return make_model_files()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    with StandinHosts(tmp_path_factory.mktemp("tls")) as s:
        yield s


@pytest.fixture
def first_run(server: StandinHosts, files: ModelFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """(url, studio, home, stand-in): the app on an empty OVFORMER_HOME, offline but for Download."""
    import huggingface_hub.constants as hub

    from app.main import create_app, launch_kwargs, parse_args

    home = tmp_path / "home"
    monkeypatch.setenv("OVFORMER_HOME", str(home))
    monkeypatch.setenv("OVFORMER_DOWNLOAD_STANDIN", server.env_value)  # the only production difference: hosts
    monkeypatch.delenv("OVFORMER_OFFLINE", raising=False)
    for var in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(home / "hf" / "hub"))  # HF_HOME inside OVFORMER_HOME, as in Docker
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)  # as app/main.py and the Makefile keep it
    serve_model_files(server, files)
    with tiny_clip_as_openai(), only_loopback() as refused:
        args = parse_args(["--data", str(home), "--port", str(free_port())])  # the defaults: r50-lvvis, CLIP openai
        demo, studio = create_app(args)
        kw = launch_kwargs(args, studio)
        kw.update(prevent_thread_lock=True)
        demo.queue(default_concurrency_limit=4).launch(**kw)
        try:
            yield f"http://127.0.0.1:{args.port}/", studio, home, server
        finally:
            studio.hub.wait_download(120)
            studio.finetune.shutdown()
            demo.close()
    assert refused == [], f"the app tried to reach beyond 127.0.0.1: {refused}"
    assert hub.HF_HUB_OFFLINE is True


def browse(p, external: list[str]):
    browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    ctx = browser.new_context(viewport={"width": 1440, "height": 1100})
    ctx.route("**/*", lambda r: r.continue_() if r.request.url.startswith(("http://127.0.0.1", "data:", "blob:"))
              else (external.append(r.request.url), r.abort()))
    return browser, ctx.new_page()


def click_download(page) -> None:
    """Press Download until the page shows the job (a click that lands before the page has
    wired its events is lost on a loaded machine; the hub joins a job already running, so a
    second press never starts a second download)."""
    from playwright.sync_api import expect
    shown = page.locator("#download_progress [data-state]")
    for _ in range(3):
        page.locator("#download_btn").click()
        try:
            expect(shown).to_have_count(1, timeout=15_000)
            return
        except AssertionError:
            continue
    expect(shown).to_have_count(1)


def check_requests(standin: StandinHosts, files: ModelFiles, complete: bool = True) -> None:
    """Only the files the model needs, at their production URLs, on the stand-in (all of them
    when ``complete``)."""
    repo, rev, name = files.clip_key
    allowed = {("CONNECT", "127.0.0.1", "drive.google.com:443"),
               ("HEAD", "127.0.0.1", f"/hub/{repo}/resolve/{rev}/{name}"),
               ("GET", "127.0.0.1", f"/hub/{repo}/resolve/{rev}/{name}"),
               ("GET", "drive.google.com", "/embeddedfolderview"), ("GET", "drive.google.com", "/uc")}
    seen = {(r.method, r.host, r.path.split("?")[0]) for r in standin.requests}
    assert seen <= allowed, seen - allowed
    asked = {r.path.split("id=")[1].split("&")[0] for r in standin.requests if r.path.startswith("/uc?")}
    assert asked == {files.checkpoint_id, *files.prompts} if complete else asked <= {files.checkpoint_id, *files.prompts}


def test_first_run_download_load_prelabel(first_run, files: ModelFiles) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, studio, home, standin = first_run
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    standin.rates[files.checkpoint_id] = 3_000_000  # ~18 s for the 53 MB checkpoint: time to see it and reload
    external: list[str] = []
    with sync_playwright() as p:
        browser, page = browse(p, external)
        banner, bar, button = page.locator("#banner"), page.locator("#download_progress"), page.locator("#download_btn")
        page.goto(url)
        # 1. the banner lists the three missing files, each with its size and place
        expect(banner).to_contain_text("No model weights", timeout=30_000)
        expect(banner.locator("tbody tr")).to_have_count(3)
        for what in ("OVFormer checkpoint r50-lvvis", "DetPro prompts", "OpenAI CLIP ViT-B/32"):
            expect(banner.locator("tbody tr", has_text=what)).to_contain_text("missing")
        expect(banner).to_contain_text(str(home / "weights" / "ovformer_r50_lvvis.pth"))
        expect(banner).to_contain_text(str(home / "hf" / "hub" / "models--timm--vit_base_patch32_clip_224.openai"))
        expect(page.locator("#model_picker input")).to_have_value(re.compile(r"r50-lvvis .*missing: checkpoint"))
        expect(button).to_be_visible()
        page.screenshot(path=str(SHOTS / "01_banner.png"), clip={"x": 0, "y": 0, "width": 1440, "height": 720})
        if os.environ.get("OVFORMER_UPDATE_DOCS") == "1":
            shutil.copy(SHOTS / "01_banner.png", ROOT / "docs" / "first_run.png")
        assert standin.requests == []  # nothing leaves before Download

        # 2. Download: a progress bar with bytes, rate and ETA, which a reload finds again
        click_download(page)
        expect(bar).to_contain_text(re.compile(r"Downloading file 1 of 7: OVFormer weights r50-lvvis — "
                                               r"[\d.]+ MB of [\d.]+ MB · [\d.]+ MB/s · about \d+ s left"), timeout=30_000)
        expect(bar.locator("progress")).to_be_visible()
        page.screenshot(path=str(SHOTS / "02_downloading.png"), clip={"x": 0, "y": 0, "width": 1440, "height": 720})
        page.reload()
        expect(bar).to_contain_text(re.compile(r"Downloading file \d of 7"), timeout=30_000)
        expect(button).to_be_hidden()

        # 3. the files arrive, the model loads, the banner says which
        expect(banner).to_contain_text("Model weights: r50-lvvis + OpenAI ViT-B/32 (loaded)", timeout=120_000)
        expect(bar).to_contain_text("✔ Downloaded")
        expect(page.locator("#model_picker input")).to_have_value("r50-lvvis (R50, LV-VIS) — present")
        page.screenshot(path=str(SHOTS / "03_loaded.png"), clip={"x": 0, "y": 0, "width": 1440, "height": 720})

        # 4. a pre-label runs with the downloaded model (small and fast settings)
        upload_and_prelabel(page, max_tracks=4, timeout_ms=180_000)
        page.screenshot(path=str(SHOTS / "04_prelabelled.png"), full_page=True)
        browser.close()

    assert external == []
    check_requests(standin, files)
    weights = home / "weights"
    assert leftovers(weights) == sorted(["ovformer_r50_lvvis.pth", *(f"detpro-lvis/{n}" for n, _ in files.prompts.values())])
    assert (weights / "ovformer_r50_lvvis.pth").read_bytes() == files.checkpoint
    predictor = studio.hub.get()
    assert predictor.detpro_context is not None  # the downloaded prompts are in use
    assert studio.hub.label().startswith("r50-lvvis")  # what the pre-label recorded as its weights


@pytest.mark.parametrize("mode, words", [
    ("quota", "Google Drive sent a web page instead of the file (download quota exceeded"),
    ("drop", "no network: the download host could not be reached, or the connection was cut"),
])
def test_failed_download_says_why(first_run, files: ModelFiles, mode: str, words: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, studio, home, standin = first_run
    standin.modes[files.checkpoint_id] = mode  # an HTML quota page / the connection cut mid-file, every time
    external: list[str] = []
    with sync_playwright() as p:
        browser, page = browse(p, external)
        page.goto(url)
        expect(page.locator("#banner")).to_contain_text("No model weights", timeout=30_000)
        click_download(page)
        failed = page.locator("#download_progress .failed")
        expect(failed).to_contain_text(words, timeout=180_000)
        expect(failed).to_contain_text("Nothing that looks complete was kept")
        expect(page.locator("#download_btn")).to_be_visible()  # try again later
        expect(page.locator("#banner")).to_contain_text("No model weights")
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"failed_{mode}.png"), clip={"x": 0, "y": 0, "width": 1440, "height": 640})
        browser.close()
    assert external == []
    check_requests(standin, files, complete=False)
    assert not (home / "weights" / "ovformer_r50_lvvis.pth").exists()
    assert all(p.endswith(".part") for p in leftovers(home / "weights")), leftovers(home / "weights")
    assert not studio.hub.loaded
