"""A shared server at the service level (no Gradio server): two users who cannot reach each
other's things by typing ids or names, accounts, undo per user, the bounds of every input, a
kill -9 during a pre-label, and a full disk during import and export."""
from __future__ import annotations

import errno
import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.annotate.deletes import DeleteService
from app.annotate.edits import Editor
from app.annotate.media import Limits, MediaError, decode_any
from app.annotate.prelabel import PrelabelSettings
from app.annotate.service import Config
from app.annotate.session import Session
from app.annotate.store import Store
from app.auth import Users, UserError
from app.finetune.service import FineTuneError, StartRequest
from app.hub import ModelHub, ModelSpec, PredictorCache
from app.studio import Studio

from tests.test_app_prelabel import FakePredictor

H, W, N = 16, 20, 8


def frames_zip(path: Path, n: int = N, size: tuple[int, int] = (W, H)) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for i in range(n):
            buf = io.BytesIO()
            Image.fromarray(np.full((size[1], size[0], 3), 10 * i, np.uint8)).save(buf, "PNG")
            z.writestr(f"clip/{i:05d}.png", buf.getvalue())
    return path


def studio_at(home: Path, datasets: Path | None = None, users: bool = True) -> Studio:
    cfg = Config(home=home, datasets=datasets or home / "datasets", users=users)
    hub = ModelHub(ModelSpec("fake", untrained=True), PredictorCache(lambda spec: FakePredictor()))
    return Studio(cfg, hub)


def user_with_video(st: Studio, user: str, tmp_path: Path) -> Session:
    """``user``'s project with one pre-labelled 8-frame video (the FakePredictor's one track)."""
    s = st.annotate.create_project(Session(user=user), f"{user}-project", "person, bicycle, car").session
    out = st.annotate.add_video(s, str(frames_zip(tmp_path / f"{user}.zip")), None, 10, "")
    assert out.status.startswith("✔ added"), out.status
    return list(st.annotate.prelabel(out.session, "person, bicycle, car", PrelabelSettings(clip_length=2),
                                     poll_s=0.01))[-1].session


@pytest.fixture()
def two(tmp_path):
    st = studio_at(tmp_path / "home")
    return st, user_with_video(st, "alice", tmp_path), user_with_video(st, "bob", tmp_path)


def test_accounts_hashed_and_checked(tmp_path):
    users = Users(tmp_path)
    users.add("alice", "correct horse", admin=True)
    users.add("bob", "battery staple")
    raw = (tmp_path / "users.json").read_text()
    assert "correct horse" not in raw and json.loads(raw)["alice"]["kdf"] == "scrypt"
    assert oct((tmp_path / "users.json").stat().st_mode & 0o777) == "0o600"
    assert users.verify("alice", "correct horse") and not users.verify("alice", "battery staple")
    assert not users.verify("carol", "correct horse") and not users.verify("bob", "x" * 10_000)
    assert users.is_admin("alice") and not users.is_admin("bob")
    for bad in ("../x", "", "a b", "x" * 40):
        with pytest.raises(UserError):
            users.add(bad, "long enough")
    with pytest.raises(UserError, match="at least"):
        users.add("carol", "short")
    with pytest.raises(UserError, match="exists"):
        users.add("bob", "another one")
    # the command: the password from stdin (never an argument), prompted otherwise
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    r = subprocess.run([sys.executable, "-m", "app.cli", "users", "--data", str(tmp_path), "add", "carol",
                        "--password-stdin"], input="s3cret-enough\n", text=True, capture_output=True, env=env)
    assert r.returncode == 0 and "carol added" in r.stdout, r.stderr
    assert Users(tmp_path).verify("carol", "s3cret-enough")


def test_two_users_cannot_reach_each_other(two, tmp_path):
    st, a, b = two
    svc, review = st.annotate, st.review
    a_track = st.store.tracks(a.video)[0].id
    b_track = st.store.tracks(b.video)[0].id
    # list: each sees only their own projects
    assert [x[1] for x in svc.project_choices(b).choices] == [b.project]
    assert svc.on_load(Session(user="bob")).session.project == b.project  # never the latest of anyone's
    # open by id: refused like an id that does not exist
    out = svc.open_project(b, a.project)
    assert out.status.startswith("✖") and out.session is None or out.session.project != a.project
    # a session that somehow holds another user's project starts afresh
    assert svc.enter(a.replace(user="bob"), "bob") == Session(user="bob")
    assert svc.enter(b.replace(project=a.project, video=a.video), "bob") == Session(user="bob")
    # open a video of the other's project
    assert svc.open_video(b, a.video).status.startswith("✖")
    # read / edit a track by typing its id: every track box and button
    before = st.store.tracks(a.video)[0]
    for name, args in (("relabel", (a_track, "stolen")), ("delete_track", (a_track,)),
                       ("delete_span", (a_track, 0, 5)), ("merge", (b_track, a_track)), ("split", (a_track,)),
                       ("copy_forward", (a_track, 3)), ("save_mask", (a_track, None))):
        out = review.edit(name, b, *args)
        assert out.status.startswith("✖") and "not a track of this video" in out.status, (name, out.status)
    assert review.select_track(b, a_track).status.startswith("✖")
    assert review.toggle_hidden(b, a_track).status.startswith("✖")
    assert review.load_editor(b, a_track).status.startswith("✖")
    after = st.store.tracks(a.video)[0]
    assert (after.label, after.frames) == (before.label, before.frames)
    # undo and redo are per user: bob's undo never reverts alice's pre-label
    assert review.edit("undo", b.replace(video=a.video), ).status  # (bob's own history of that video is empty)
    assert st.store.tracks(a.video)[0].frames == before.frames
    # exports: each user's own folder; a name typed from another's list is refused
    path = Path(svc.export_results(a).export_file)
    assert path.is_file() and path.name in svc.exports_of(a) and path.name not in svc.exports_of(b)
    deletes = DeleteService(svc)
    assert deletes.delete_export(b, path.name, True, "bob-page").status.startswith("✖") and path.is_file()
    svc.export_dataset(a)
    assert svc.datasets_of(a) and not svc.datasets_of(b)
    # jobs: cancelling acts on one's own video only
    assert svc.cancel(b).status == "Nothing is running."
    # fine-tune: datasets, projects, runs of the other are unknown
    ft = st.finetune
    assert ft.datasets("bob") == [] and ft.reviewed_videos(a.project, "bob") == []
    st.store.set_reviewed(a.video, True)
    with pytest.raises(FineTuneError):
        ft.start(StartRequest(svc.datasets_of(a), project=a.project, heldout_videos=[a.video]), "bob")
    run = ft.runs_root_of("alice") / "r1"
    run.mkdir(parents=True)
    (run / "finetune.json").write_text(json.dumps({"name": "r1", "heldout": {"kind": None}}))
    assert ft.runs("alice") == ["r1"] and ft.runs("bob") == []
    for call in (ft.view, ft.stop, ft.closed_loop, ft.load_final, ft.delete_run):
        with pytest.raises(FineTuneError):
            call("r1", "bob")
    with pytest.raises(FineTuneError):
        ft.view("../users/alice/r1", "bob")
    # deleting: another's project is out of reach (the session is reset first); one's own goes
    assert deletes.delete_project(svc.enter(b.replace(project=a.project), "bob"), True).status.startswith("✖")
    out = deletes.delete_project(b, True, "bob-page")
    assert out.status.startswith("✔") and not st.store.projects("bob") and st.store.projects("alice")
    st.trash.purge_page("bob", "bob-page")  # bob's page is left: the delete is permanent
    assert not st.store.frames_dir(b.video).exists()


def test_only_admins_change_the_shared_model(tmp_path):
    st = studio_at(tmp_path / "home")
    st.users.add("root", "long enough", admin=True)
    st.users.add("ann", "long enough")
    assert st.may_change_model("root") and not st.may_change_model("ann")
    run = st.finetune.runs_root_of("ann") / "r"
    run.mkdir(parents=True)
    (run / "finetune.json").write_text(json.dumps({"name": "r", "heldout": {"kind": None}}))
    with pytest.raises(FineTuneError, match="only an admin"):
        st.finetune.load_final("r", "ann")
    assert studio_at(tmp_path / "local", users=False).may_change_model("")


def test_undo_is_per_user(tmp_path):
    store = Store(tmp_path)
    pid = store.create_project("p")
    staged = store.reserve_video_dir()
    Image.new("RGB", (W, H)).save(staged / "00000.jpg")
    vid = store.add_video(pid, "v", staged, W, H, 1, 1.0)
    m = np.zeros((H, W), bool)
    m[2:5, 2:5] = True
    tid = Editor(store, "a").add_track(vid, "cat", 0, m)
    Editor(store, "b").relabel(tid, "dog")
    Editor(store, "a").relabel(tid, "cow")
    assert Editor(store, "b").undo(vid) == "relabel"  # b's step, restoring b's "before"
    assert Editor(store, "b").history(vid) == (0, 1) and Editor(store, "a").history(vid) == (2, 0)
    assert Editor(store, "a").undo(vid) == "relabel" and store.track(tid).label == "dog"
    assert Editor(store, "b").redo(vid) == "relabel"


def test_bounds_refuse_before_the_work(tmp_path):
    st = studio_at(tmp_path / "home", users=False)
    svc, review = st.annotate, st.review
    s = user_with_video(st, "", tmp_path)
    tid = st.store.tracks(s.video)[0].id
    # a span is clamped to the video: no billion-frame range is built
    t0 = time.time()
    out = review.edit("delete_span", s, tid, 0, 1e9)
    assert out.status == f"✔ frames 0-{N - 1} removed from track #{tid}" and time.time() - t0 < 2
    assert review.edit("delete_span", s, tid, 1e9, 2e9).status.startswith("✖ frames")
    assert review.edit("delete_span", s, tid, float("nan"), 3).status.startswith("✖")
    # vocabularies: count, name length, text length, all before parsing or encoding
    for text, what in ((", ".join(f"c{i}" for i in range(200_000)), "characters"),
                       (", ".join(f"c{i}" for i in range(2500)), "2,500 classes"),
                       ("a" * 10_000_000, "characters"), ("x" * 101, "at most 100 characters")):
        assert what in svc.save_vocab(s, text).status, what
        assert next(svc.prelabel(s, text, PrelabelSettings())).status.startswith("✖")
    assert "at most 100" in review.edit("relabel", s, tid, "y" * 10_000).status
    # pre-label settings from the page or the API
    for bad in ((10_000, 5, 0, 0.1, 20), (360, 1e9, 0, 0.1, 20), (360, 5, float("inf"), 0.1, 20),
                (360, 5, 0, 0.1, -1)):
        with pytest.raises(ValueError, match="must be"):
            PrelabelSettings.from_page(*bad)
    # fine-tune settings within the machine's means
    for req in (StartRequest(["a"], iters=10**12), StartRequest(["a"], batch=10**6),
                StartRequest(["a"], min_size=10**6), StartRequest(["a"], name="n" * 10_000)):
        with pytest.raises(FineTuneError, match="on this machine|at most"):
            st.finetune.start(req)


def bomb_json(path: Path, side: int = 60000) -> Path:
    """A 300-byte results file whose mask claims a 60000x60000 frame."""
    path.write_text(json.dumps([{"video_id": 1, "category_id": 1, "score": 0.9,
                                 "segmentations": [{"size": [side, side], "counts": "0" + "1" * 8}] * N}]))
    return path


def zip_bomb(path: Path, mb: int = 200) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("clip/00000.png", "w") as f:
            chunk = b"\0" * 2**20
            for _ in range(mb):
                f.write(chunk)
    return path


def pixel_bomb(path: Path, side: int = 30000) -> Path:
    """A zip holding a 30000x30000 1-bit PNG (900 Mpx) of a few hundred kB, written row by row so
    that making it allocates nothing of that size."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    comp, row, idat = zlib.compressobj(9), b"\0" * (1 + (side + 7) // 8), []
    for _ in range(side):
        idat.append(comp.compress(row))
    idat.append(comp.flush())
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
           + chunk(b"IDAT", b"".join(idat)) + chunk(b"IEND", b""))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("clip/00000.png", png)
    return path


def test_media_bombs_are_refused_unread(tmp_path):
    import resource

    store = Store(tmp_path / "h")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(MediaError, match="larger than 64 MB uncompressed"):
        decode_any(zip_bomb(tmp_path / "bomb.zip"), store.reserve_video_dir(), None, Limits())
    with pytest.raises(MediaError, match="megapixels"):
        decode_any(pixel_bomb(tmp_path / "px.zip"), store.reserve_video_dir(), None, Limits())
    with pytest.raises(MediaError, match="add up to more than"):  # the total, counted as read
        decode_any(zip_bomb(tmp_path / "b2.zip", 3), store.reserve_video_dir(), None,
                   Limits(max_member_mb=64, max_zip_total_mb=2))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 400 * 1024  # kB: nothing decoded
    assert not list((tmp_path / "h" / "staging").iterdir())
    st = studio_at(tmp_path / "home", users=False)
    s = st.annotate.create_project(Session(), "p", "person").session
    out = st.annotate.add_video(s, str(frames_zip(tmp_path / "v.zip")), str(bomb_json(tmp_path / "b.json")), 10, "")
    assert out.status.startswith("✖") and "60000x60000" in out.status, out.status
    assert st.store.videos(s.project) == []


def test_kill_during_prelabel_leaves_no_spill(tmp_path):
    """A pre-label in another process is killed with SIGKILL while its spill folder holds files;
    the next app start removes them."""
    home = tmp_path / "home"
    script = f"""
import sys, time, threading
sys.path.insert(0, {str(Path(__file__).parents[1])!r})
from pathlib import Path
from tests.test_app_prelabel import FakePredictor, make_video
from app.annotate.prelabel import JobRunner, PrelabelSettings
from app.hub import ModelHub, ModelSpec, PredictorCache

class Spilling(FakePredictor):
    def predict(self, source, text=None, options=None, **kw):
        d = Path(options.spill_dir); d.mkdir(parents=True, exist_ok=True)
        (d / "clip_000000.npy").write_bytes(b"x" * 100_000)
        print("SPILLED", flush=True)
        time.sleep(600)

store, vid = make_video(Path({str(home)!r}))
hub = ModelHub(ModelSpec("fake", untrained=True), PredictorCache(lambda spec: Spilling()))
JobRunner(store, hub).start(vid, ["a"], PrelabelSettings())
time.sleep(600)
"""
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "SPILLED"
        spills = list((home / "spill").rglob("*.npy"))
        assert spills and spills[0].parent.name.startswith(f"{p.pid}-")
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert list((home / "spill").rglob("*.npy"))  # the killed process left them
    from app.main import create_app, parse_args  # the next start

    demo, _ = create_app(parse_args(["--data", str(home), "--preset", "tiny", "--untrained", "--clip",
                                     "tiny-random"]))
    demo.close()
    assert not list((home / "spill").iterdir())


class TinyDisk:
    """A small tmpfs mounted at ``path`` (root in a container that allows it); else None."""

    def __init__(self, path: Path, mb: int) -> None:
        path.mkdir(parents=True)
        self.path = path
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mb}m", "tmpfs", str(path)], capture_output=True)
        self.mounted = r.returncode == 0

    def fill(self) -> Path:
        filler = self.path / "filler"
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError as e:
                assert e.errno == errno.ENOSPC
        return filler

    def close(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


def test_full_disk_during_import_and_export(tmp_path, monkeypatch):
    """The data folder on a 4 MB tmpfs that is then filled (where mounting is not allowed, writes
    of frames and exports raise ENOSPC through a patched writer): import and export each say the
    disk is full, and every stored edit is still there afterwards."""
    disk = TinyDisk(tmp_path / "disk", 4)
    try:
        st = studio_at(disk.path / "home", users=False)
        s = user_with_video(st, "", tmp_path)
        tid = st.store.tracks(s.video)[0].id
        assert st.review.edit("relabel", s, tid, "unicycle").status.startswith("✔")
        saved = [(t.id, t.label, t.frames) for t in st.store.tracks(s.video)]
        if disk.mounted:
            filler = disk.fill()
        else:  # say which: the simulation, not a real full disk
            def full(*a, **k):
                raise OSError(errno.ENOSPC, "No space left on device")
            monkeypatch.setattr(Image.Image, "save", full)
            monkeypatch.setattr("app.annotate.export.write_gt", full)
            monkeypatch.setattr("app.annotate.export.write_ytvis_results", full)
        out = st.annotate.add_video(s, str(frames_zip(tmp_path / "big.zip", 20, (320, 240))), None, 10, "")
        assert "disk is full" in out.status, out.status
        assert len(st.store.videos(s.project)) == 1
        for export in (st.annotate.export_dataset, st.annotate.export_results):
            out = export(s)
            assert "disk is full" in out.status and "unchanged" in out.status, out.status
        assert [(t.id, t.label, t.frames) for t in st.store.tracks(s.video)] == saved
        assert st.store.q("PRAGMA integrity_check")[0][0] == "ok"
        if disk.mounted:
            filler.unlink()
        else:
            monkeypatch.undo()
        assert st.review.edit("relabel", s, tid, "bicycle").status.startswith("✔")  # writes work again
        assert st.annotate.export_results(s).status.startswith("✔")
        assert not list((disk.path / "home" / "staging").iterdir())
    finally:
        disk.close()
