"""Edits survive SIGKILL: a real server process is killed mid-session and restarted (behind --auth)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent / "ui"))
from apptest import TINY, VOCAB, NamedClient, api_outputs, bikes, free_port, table_rows  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def serve(home: Path, port: int, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "app.main", "--data", str(home), "--port", str(port), *TINY,
                             *extra],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while time.time() < deadline:
        assert proc.poll() is None, "the app exited during start-up"
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=2)
            return proc
        except urllib.error.HTTPError:  # 401 behind --auth: the server is up
            return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise TimeoutError("app did not start")


def test_edits_survive_sigkill(tmp_path):
    from gradio_client import handle_file

    home, port = tmp_path / "home", free_port()
    api = api_outputs(tmp_path / "names")
    proc = serve(home, port)
    try:
        c = NamedClient(f"http://127.0.0.1:{port}/", api)
        out = c.predict("restart", VOCAB, api_name="/create_project")
        out = c.predict(handle_file(str(bikes())), None, 0.5, VOCAB, api_name="/add_video")
        pid = out["projects"]["value"]
        layer = np.zeros((272, 640, 4), np.uint8)
        layer[50:90, 60:120] = (255, 0, 0, 255)
        Image.fromarray(layer).save(tmp_path / "l.png")
        value = {"background": handle_file(str(tmp_path / "l.png")), "layers": [handle_file(str(tmp_path / "l.png"))],
                 "composite": None, "id": None}
        out = c.predict("person", value, api_name="/new_track")
        tid = int(table_rows(out["tracks"])[0][0])
        c.predict(tid, 3, api_name="/copy_forward")
        c.predict("cyclist", value, api_name="/new_track")
        out = c.predict(tid, "pedestrian", api_name="/relabel")
        assert {r[1] for r in table_rows(out["tracks"])} == {"pedestrian", "cyclist"}
    finally:
        proc.send_signal(signal.SIGKILL)  # no shutdown hook runs: only what was committed remains
        proc.wait(timeout=30)

    proc = serve(home, port, "--auth", "ann:s3cret")  # restart behind a login
    try:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=10)
            raise AssertionError("the app answered without a login")
        except urllib.error.HTTPError as e:
            assert e.code in (401, 403)
        c = NamedClient(f"http://127.0.0.1:{port}/", api, auth=("ann", "s3cret"))
        out = c.predict(pid, api_name="/open_project")
        rows = {r[1]: r for r in table_rows(out["tracks"])}
        assert set(rows) == {"pedestrian", "cyclist"}
        assert rows["pedestrian"][3] == 4  # the painted frame + 3 copies
        assert "person, bicycle, car" in out["vocab"]  # the vocabulary came back with the project
        out = c.predict(api_name="/undo")  # the undo history is on disk too
        assert {r[1] for r in table_rows(out["tracks"])} == {"person", "cyclist"}
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
