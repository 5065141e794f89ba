"""The running server under hostile input and with two users, through gradio_client.

Hostile: a mask-size bomb json, a zip bomb, a pixel bomb, a span of 0..1e9, a 200k-name
vocabulary, 10 MB names and huge fine-tune settings each get one message, the server's RSS stays
under 3 GB, and a second client's edits made meanwhile all commit.

Two users (``--users``): neither lists, opens, edits, stops or downloads the other's things by
typing ids, names or paths.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import USERS
from tests.test_app_shared import H, N, W, bomb_json, frames_zip, pixel_bomb, zip_bomb

sys.path.insert(0, str(Path(__file__).parent / "ui"))
from apptest import NamedClient, table_rows  # noqa: E402

GB = 2**30


def gt_json(path: Path) -> Path:
    """Ground truth for :func:`frames_zip`'s clip: one ``person`` track on every frame."""
    from ovformer.ytvis.rle import encode_mask
    import numpy as np

    m = np.zeros((H, W), bool)
    m[2:8, 3:12] = True
    rle = encode_mask(m)
    path.write_text(json.dumps({
        "videos": [{"id": 1, "width": W, "height": H, "length": N,
                    "file_names": [f"clip/{i:05d}.png" for i in range(N)]}],
        "categories": [{"id": 1, "name": "person"}],
        "annotations": [{"id": 1, "video_id": 1, "category_id": 1, "segmentations": [rle] * N}]}))
    return path


def video_with_track(c: NamedClient, tmp_path: Path, name: str) -> tuple[dict, int]:
    """A new project ``name`` with the clip and its one imported track: (add_video's outputs, track id)."""
    from gradio_client import handle_file

    c.predict(name, "person", api_name="/create_project")
    out = c.predict(handle_file(str(frames_zip(tmp_path / f"{name}.zip"))), handle_file(str(gt_json(tmp_path / f"{name}.json"))),
                    0, "person", api_name="/add_video")
    assert "imported 1 tracks" in out["status"], out["status"]
    (row,) = table_rows(out["tracks"])
    return out, int(row[0])


class RssSampler(threading.Thread):
    """The server's (this process's) resident memory, sampled every 50 ms."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak, self.stop = 0, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    self.peak = max(self.peak, int(line.split()[1]) * 1024)
            time.sleep(0.05)


def test_hostile_inputs_each_get_a_message(app_server, tmp_path):
    import resource

    from gradio_client import handle_file

    url, studio, home = app_server
    rss = RssSampler()
    rss.start()
    # the second client: edits one track over and over while the hostile one works
    steady = NamedClient(url, studio.api)
    _, steady_track = video_with_track(steady, tmp_path, "steady")
    steady_video = studio.store.track(steady_track).video_id
    done, errors, stop = [], [], threading.Event()

    def editor() -> None:
        k = 0
        while not stop.is_set() and k < 200:
            out = steady.predict(steady_track, f"label{k}", api_name="/relabel")
            (done if out["status"].startswith("✔") else errors).append(out["status"])
            k += 1
    edits = threading.Thread(target=editor)
    edits.start()

    c = NamedClient(url, studio.api)
    _, track = video_with_track(c, tmp_path, "hostile")
    messages = {}
    clip = handle_file(str(frames_zip(tmp_path / "clip.zip")))
    messages["mask-size bomb"] = c.predict(clip, handle_file(str(bomb_json(tmp_path / "bomb.json"))), 0, "person",
                                           api_name="/add_video")["status"]
    messages["zip bomb"] = c.predict(handle_file(str(zip_bomb(tmp_path / "zipbomb.zip"))), None, 0, "person",
                                     api_name="/add_video")["status"]
    messages["pixel bomb"] = c.predict(handle_file(str(pixel_bomb(tmp_path / "pixels.zip"))), None, 0, "person",
                                       api_name="/add_video")["status"]
    messages["span"] = c.predict(track, 0, 1e9, api_name="/delete_span")["status"]
    many = ", ".join(f"class{i}" for i in range(200_000))
    messages["200k vocabulary"] = c.predict(many, api_name="/save_vocab")["status"]
    messages["200k pre-label"] = c.predict(many, 96, 5, 0, 0.1, 8, api_name="/prelabel")["status"]
    huge = "n" * 10_000_000
    messages["10 MB vocabulary"] = c.predict(huge, api_name="/save_vocab")["status"]
    messages["10 MB label"] = c.predict(track, huge, api_name="/relabel")["status"]
    messages["10 MB project"] = c.predict(huge, "person", api_name="/create_project")["status"]
    messages["fine-tune"] = c.predict([], None, [], None, 10**12, 10**6, 1e9, 10**6, 10**9, 10**6, True, "x",
                                      api_name="/ft_start")["status"]
    try:  # the page's sliders refuse first (Gradio's own message), the service's bounds otherwise
        messages["pre-label settings"] = c.predict("person", 10**6, 10**6, 1e9, 5, 10**6,
                                                   api_name="/prelabel")["status"]
    except Exception as e:
        messages["pre-label settings"] = str(e)
    stop.set()
    edits.join(120)
    rss.stop.set()

    expect = {"mask-size bomb": "60000x60000", "zip bomb": "larger than 64 MB", "pixel bomb": "megapixels",
              "span": f"frames 0-{N - 1} removed", "200k vocabulary": "characters", "200k pre-label": "characters",
              "10 MB vocabulary": "characters", "10 MB label": "at most 100 characters",
              "10 MB project": "at most 100 characters", "fine-tune": "on this machine",
              "pre-label settings": "maximum value"}
    for what, text in expect.items():
        assert text in messages[what], (what, messages[what])
        assert messages[what].count("\n") < 3, (what, messages[what])  # one message, not a traceback
    assert studio.store.projects().count((studio.store.projects()[-1][0], "hostile")) <= 1
    # every edit of the second client committed, in order, and nothing else touched its track
    assert not errors and len(done) >= 5, errors[:3]
    assert studio.store.track(steady_track).label == f"label{len(done) - 1}"
    n_ops = studio.store.q("SELECT COUNT(*) AS n FROM ops WHERE video_id=? AND kind='relabel'", (steady_video,))[0]["n"]
    assert n_ops == len(done)
    peak = max(rss.peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 if rss.peak == 0 else 0)
    assert peak < 3 * GB, f"peak RSS {peak / GB:.2f} GB"


def login(url: str, user: str, password: str):
    import httpx

    client = httpx.Client(base_url=url, follow_redirects=False, timeout=30)
    r = client.post("login", data={"username": user, "password": password})
    assert r.status_code in (200, 302, 303), r.text
    return client


def test_two_users_through_the_server(users_server, tmp_path):
    url, studio, home = users_server
    alice = NamedClient(url, studio.api, auth=("alice", USERS["alice"]))
    bob = NamedClient(url, studio.api, auth=("bob", USERS["bob"]))
    a_out, a_track = video_with_track(alice, tmp_path, "alice-work")
    b_out, b_track = video_with_track(bob, tmp_path, "bob-work")
    a_pid = studio.store.projects("alice")[0][0]
    assert [n for n, _ in b_out["projects"]["choices"]] == ["bob-work"]  # bob lists only his own
    # open, read, edit alice's things by typing their ids
    out = bob.predict(a_pid, api_name="/open_project")
    assert out["status"].startswith("✖") and "alice-work" not in json.dumps(out)
    for api, args in (("relabel", (a_track, "stolen")), ("delete_track", (a_track,)),
                      ("delete_span", (a_track, 0, 3)), ("select_track", (a_track,)), ("split", (a_track,)),
                      ("merge", (b_track, a_track))):
        out = bob.predict(*args, api_name=f"/{api}")
        assert out["status"].startswith("✖") and "not a track of this video" in out["status"], (api, out["status"])
    assert studio.store.track(a_track).label == "person" and len(studio.store.track(a_track).frames) == N
    # bob's undo never reverts alice's import
    bob.predict(api_name="/undo")
    assert studio.store.track(a_track) is not None
    # exports: alice's file goes to alice
    a_file = alice.predict(api_name="/export_results")["export_file"]
    assert Path(a_file).is_file()
    (exported,) = list((home / "users" / "alice" / "exports").iterdir())
    assert bob.predict(api_name="/list_exports")["exports"]["choices"] == []
    try:  # not among bob's choices: Gradio refuses the value before the service does
        assert bob.predict(exported.name, True, api_name="/delete_export")["status"].startswith("✖")
    except Exception as e:
        assert "not in the list of choices" in str(e), e
    assert exported.is_file()
    # fine-tune runs: alice's run is not bob's to see, stop, load or delete
    run = home / "runs" / "users" / "alice" / "r1"
    run.mkdir(parents=True)
    (run / "finetune.json").write_text(json.dumps({"name": "r1", "heldout": {"kind": None}}))
    for who in (alice, bob):  # what the page's load does: each session's lists
        who.predict(None, api_name="/ft_refresh")
    assert not alice.predict("r1", {}, api_name="/ft_view")["status"].startswith("✖")
    for api, args in (("ft_view", ("r1", {})), ("ft_stop", ("r1",)), ("ft_load", ("r1",)),
                      ("ft_closed_loop", ("r1", {})), ("ft_delete", ("r1", True))):
        try:
            out = bob.predict(*args, api_name=f"/{api}")
        except Exception as e:  # a dropdown value outside bob's choices is refused by Gradio itself
            assert "r1" in str(e) or "choices" in str(e).lower(), e
            continue
        assert out["status"].startswith("✖"), (api, out["status"])
    assert run.is_dir()
    # the shared model: bob (not an admin) can neither switch it nor start a download
    before = studio.hub.current_key()
    for api, args in (("weights_pick", ("swinb-lvvis",)), ("weights_download", ())):
        out = bob.predict(*args, api_name=f"/{api}")
        assert "only an admin" in out["download_progress"], (api, out)
    assert studio.hub.current_key() == before and studio.hub.download_view().state != "running"
    # files by path: neither the data folder nor another's export is served
    for user in ("bob", "alice"):
        http = login(url, user, USERS[user])
        for path in (exported, home / "studio.sqlite", home / "users.json"):
            r = http.get(f"gradio_api/file={path}")
            assert r.status_code in (403, 404), (user, path, r.status_code)
    import httpx
    r = httpx.get(f"{url}gradio_api/info", timeout=30)  # nobody without a login
    assert r.status_code in (401, 403)
    with pytest.raises(Exception):
        NamedClient(url, studio.api, auth=("bob", "wrong-password"))
