"""Deletes that can be undone until the page is left (app.annotate.trash, app.annotate.deletes).

Service level (no Gradio server) except the last test: delete then undo gives back the same
rows and byte-identical files; a page left makes its deletes permanent and only its own; an app
start purges what a killed app left; another user can neither see nor undo; bad input is a
message that loses nothing. The last test closes a real page's heartbeat: ``demo.unload``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from app.annotate.deletes import DeleteService
from app.annotate.session import Session
from app.annotate.store import Store
from app.annotate.trash import TrashError
from app.finetune.service import FineTuneError

from tests.test_app_shared import frames_zip, studio_at, user_with_video

PAGE, OTHER = "page-a", "page-b"


def tree(path: Path) -> dict[str, str]:
    """sha256 of every file under ``path`` (or of ``path`` itself), by relative name."""
    if path.is_file():
        return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()}
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def snapshot(st, pid: int) -> dict:
    """Everything of a project: rows (tracks, masks, edit history) and frame files."""
    store = st.store
    vids = store.videos(pid)
    return {"name": store.project_name(pid), "vocab": store.vocabulary(pid),
            "videos": [dataclasses.asdict(v) for v in vids],
            "tracks": {v.id: [dataclasses.asdict(t) for t in store.tracks(v.id)] for v in vids},
            "masks": {v.id: store.video_masks(v.id) for v in vids},
            "ops": {v.id: [tuple(r) for r in store.q("SELECT * FROM ops WHERE video_id=? ORDER BY id", (v.id,))]
                    for v in vids},
            "frames": {v.id: tree(store.frames_dir(v.id)) for v in vids}}


def rows_of(store: Store, pid: int, vid: int) -> dict[str, int]:
    q = lambda sql, a: store.q(sql, a)[0][0]  # noqa: E731
    return {"projects": q("SELECT COUNT(*) FROM projects WHERE id=?", (pid,)),
            "videos": q("SELECT COUNT(*) FROM videos WHERE id=?", (vid,)),
            "tracks": q("SELECT COUNT(*) FROM tracks WHERE video_id=?", (vid,)),
            "masks": q("SELECT COUNT(*) FROM masks WHERE video_id=?", (vid,)),
            "ops": q("SELECT COUNT(*) FROM ops WHERE video_id=?", (vid,))}


@pytest.fixture()
def alice(tmp_path):
    """A --users studio where alice has a pre-labelled video with one edit in its history."""
    st = studio_at(tmp_path / "home")
    s = user_with_video(st, "alice", tmp_path)
    tid = st.store.tracks(s.video)[0].id
    assert st.review.edit("relabel", s, tid, "cyclist").status.startswith("✔")
    return st, s


def test_project_delete_then_undo_restores_everything(alice):
    st, s = alice
    svc, deletes, store = st.annotate, DeleteService(st.annotate), st.store
    pid, vid, tid = s.project, s.video, store.tracks(s.video)[0].id
    before = snapshot(st, pid)
    assert before["ops"][vid] and before["frames"][vid]
    # the confirmation first: nothing happens without it
    out = deletes.delete_project(s, False, PAGE)
    assert out.status.startswith("✖ tick **I am sure**") and store.projects("alice") == [(pid, "alice-project")]
    out = deletes.delete_project(s, True, PAGE)
    assert out.status.startswith("✔ project **alice-project** deleted") and "Undo delete" in out.status
    assert out.undo_delete == "↶ Undo delete: project alice-project"
    assert out.session == Session(user="alice") and out.projects.choices == []
    # out of sight and out of reach: lists, ids typed in, a session that still holds them
    assert store.projects("alice") == [] and store.video(vid) is None and store.videos(pid) == []
    assert not store.owns_project("alice", pid) and not store.owns_video("alice", vid)
    assert svc.open_project(Session(user="alice"), pid).status.startswith("✖ there is no project")
    assert svc.enter(s, "alice") == Session(user="alice")
    assert svc.open_video(Session(user="alice", project=pid), vid).status.startswith("✖")
    assert svc.export_results(svc.enter(s, "alice")).status.startswith("✖")
    assert st.finetune.reviewed_videos(pid, "alice") == []
    assert st.review.edit("relabel", svc.enter(s, "alice"), tid, "x").status.startswith("✖")
    # another page of alice, and bob naming alice's page, have nothing to undo
    for who, page in (("alice", OTHER), ("bob", PAGE)):
        out = deletes.undo(Session(user=who), page)
        assert out.status.startswith("✖ nothing to undo") and out.undo_delete == ""
    assert store.projects("alice") == []
    # undo: the same rows, the same history, byte-identical frames; the project is open again
    out = deletes.undo(Session(user="alice"), PAGE)
    assert out.status == "✔ project **alice-project** restored", out.status
    assert out.session.project == pid and out.session.video == vid and out.undo_delete == ""
    assert snapshot(st, pid) == before
    assert st.review.edit("undo", out.session).status.startswith("✔")  # the relabel is still undoable
    assert store.tracks(vid)[0].label != "cyclist"
    assert store.q("SELECT COUNT(*) FROM trash")[0][0] == 0


def test_video_delete_then_undo_and_the_undo_stack(alice, tmp_path):
    st, s = alice
    deletes, store = DeleteService(st.annotate), st.store
    vid = s.video
    out = st.annotate.add_video(s, str(frames_zip(tmp_path / "second.zip", n=3)), None, 10, "")
    s2 = out.session
    before = snapshot(st, s.project)
    out = deletes.delete_video(s2, True, PAGE)  # the second video
    assert out.status.startswith("✔ video **second** deleted") and out.undo_delete == "↶ Undo delete: video second"
    assert [c[1] for c in out.videos.choices] == [vid] and store.video(s2.video) is None
    out = deletes.delete_video(out.session.with_video(vid), True, PAGE)  # then the first
    assert out.undo_delete.endswith(f"video {store.q('SELECT name FROM videos WHERE id=?', (vid,))[0][0]}")
    assert out.videos.choices == []
    # newest first: the first video comes back, then the second; each opens
    out = deletes.undo(out.session, PAGE)
    assert out.session.video == vid and out.undo_delete == "↶ Undo delete: video second"
    out = deletes.undo(out.session, PAGE)
    assert out.session.video == s2.video and out.undo_delete == ""
    assert snapshot(st, s.project) == before


def test_leaving_the_page_makes_its_deletes_permanent(alice, tmp_path):
    st, s = alice
    deletes, store, home = DeleteService(st.annotate), st.store, st.cfg.home
    pid, vid = s.project, s.video
    b = user_with_video(st, "bob", tmp_path)
    export = Path(st.annotate.export_results(s).export_file)
    st.annotate.export_dataset(s)
    dataset = st.cfg.datasets_of("alice") / st.annotate.datasets_of(s)[0]
    run = st.finetune.runs_root_of("alice") / "r1"
    run.mkdir(parents=True)
    (run / "finetune.json").write_text(json.dumps({"name": "r1", "heldout": {"kind": None}}))
    assert deletes.delete_export(s, export.name, True, PAGE).status.startswith("✔")
    assert deletes.delete_export(s, dataset.name, True, PAGE).status.startswith("✔")
    assert "deleted" in st.finetune.delete_run("r1", "alice", PAGE)
    assert deletes.delete_project(s, True, PAGE).status.startswith("✔")
    assert deletes.delete_project(b, True, PAGE).status.startswith("✔")  # bob's page has the same name
    for gone in (export, dataset, run):
        assert not gone.exists()
    assert export.name not in st.annotate.exports_of(s) and st.annotate.datasets_of(s) == []
    assert st.finetune.runs("alice") == []
    assert rows_of(store, pid, vid)["masks"] > 0 and store.frames_dir(vid).is_dir()
    assert st.trash.purge_page("alice", PAGE) == 4
    # alice's: rows, frames and files gone for good, undo says so
    assert rows_of(store, pid, vid) == dict.fromkeys(("projects", "videos", "tracks", "masks", "ops"), 0)
    assert not store.frames_dir(vid).exists() and not any((home / "trash").rglob("*.json"))
    assert deletes.undo(Session(user="alice"), PAGE).status.startswith("✖ nothing to undo")
    with pytest.raises(TrashError, match="nothing to undo"):
        st.trash.restore("alice", PAGE, ("run",))
    # bob's pending delete is untouched by alice's page closing, and still his to undo
    assert store.frames_dir(b.video).is_dir()
    assert deletes.undo(Session(user="bob"), PAGE).session.project == b.project


def test_export_dataset_and_run_come_back_byte_identical(alice):
    st, s = alice
    deletes, ft, svc = DeleteService(st.annotate), st.finetune, st.annotate
    export = Path(svc.export_results(s).export_file)
    svc.export_dataset(s)
    name = svc.datasets_of(s)[0]
    dataset = st.cfg.datasets_of("alice") / name
    run = ft.runs_root_of("alice") / "r1"
    (run / "sub").mkdir(parents=True)
    (run / "finetune.json").write_text(json.dumps({"name": "r1", "heldout": {"kind": None}}))
    (run / "sub" / "metrics.jsonl").write_bytes(os.urandom(1000))
    files = {p: tree(p) for p in (export, dataset, run)}
    out = deletes.delete_export(s, export.name, True, PAGE)
    assert out.undo_delete == f"↶ Undo delete: export {export.name}" and export.name not in svc.exports_of(s)
    out = deletes.undo(s, PAGE)
    assert out.status == f"✔ export **{export.name}** restored" and out.exports.value == export.name
    # a dataset exported again while the old one waits: both are kept, the old one renamed
    deletes.delete_export(s, name, True, PAGE)
    svc.export_dataset(s)
    out = deletes.undo(s, PAGE)
    assert "restored as" in out.status and "taken meanwhile" in out.status
    assert len(svc.datasets_of(s)) == 2 and tree(dataset.with_name(f"{name}-2")) == files[dataset]
    # a run: the Fine-tune tab's own undo (runs only)
    ft.delete_run("r1", "alice", PAGE)
    assert ft.trash.undo_label("alice", PAGE, ("run",)) == "↶ Undo delete: run r1"
    assert deletes.undo_label(s, PAGE) == ""  # the Annotate page's Undo never restores a run
    e, restored = ft.trash.restore("alice", PAGE, ("run",))
    assert (e.kind, restored) == ("run", "r1") and ft.runs("alice") == ["r1"]
    for p in (export, run):
        assert tree(p) == files[p], p
    assert not any(p.is_file() for p in (st.cfg.home / "trash").rglob("*"))


def test_start_up_purges_what_a_killed_app_left(alice, tmp_path):
    st, s = alice
    deletes, home = DeleteService(st.annotate), st.cfg.home
    pid, vid = s.project, s.video
    export = Path(st.annotate.export_results(s).export_file)
    deletes.delete_export(s, export.name, True, PAGE)
    deletes.delete_project(s, True, PAGE)
    b = user_with_video(st, "bob", tmp_path)
    deletes.delete_project(b, True, OTHER)
    # bob's delete belongs to another app that still runs (a live process): kept
    live = subprocess.Popen(["sleep", "60"])
    try:
        st.store.q("SELECT 1")  # (the connection of this thread)
        with st.store.tx() as c:
            c.execute("UPDATE trash SET pid=? WHERE user='bob'", (live.pid,))
        stray = home / "trash" / "users" / "alice" / "999999"
        stray.mkdir(parents=True)
        (stray / "x").write_text("a folder no entry knows")
        again = studio_at(home)  # the same process and data folder: the app restarted
        assert rows_of(again.store, pid, vid) == dict.fromkeys(("projects", "videos", "tracks", "masks", "ops"), 0)
        assert not again.store.frames_dir(vid).exists() and not stray.exists()
        assert not any(p.is_file() for p in (home / "trash" / "users" / "alice").rglob("*"))
        assert DeleteService(again.annotate).undo(Session(user="alice"), PAGE).status.startswith("✖ nothing to undo")
        assert again.store.frames_dir(b.video).is_dir()
        assert again.trash.latest("bob", OTHER, ("project",)) is not None
    finally:
        live.kill()
        live.wait()
    # once that process is gone, the next start purges bob's too
    studio_at(home)
    assert not st.store.frames_dir(b.video).exists()


def test_bad_input_is_a_message_and_loses_nothing(alice):
    st, s = alice
    deletes, store = DeleteService(st.annotate), st.store
    assert deletes.delete_video(s.with_video(None), True, PAGE).status.startswith("✖ open the video")
    assert deletes.delete_project(Session(user="alice"), True, PAGE).status.startswith("✖ open the project")
    for name in ("../../studio.sqlite", "nope.json", None, 42):
        assert deletes.delete_export(s, name, True, PAGE).status == "✖ pick one of your exports"
    with pytest.raises(FineTuneError, match="choose one of your runs"):
        st.finetune.delete_run("../alice", "alice", PAGE)
    assert deletes.undo(s, PAGE).status.startswith("✖ nothing to undo")
    # a project deleted twice (two tabs): the second is refused, the first stays undoable
    deletes.delete_project(s, True, PAGE)
    with pytest.raises(TrashError, match="deleted already"):
        st.trash.hide_row("alice", OTHER, "project", s.project, "alice-project")
    # its name is free meanwhile: a new project of that name; undo keeps both
    new = st.annotate.create_project(Session(user="alice"), "alice-project", "").session.project
    assert new != s.project
    out = deletes.undo(Session(user="alice"), PAGE)
    assert "restored as **alice-project (restored)**" in out.status
    assert sorted(n for _, n in store.projects("alice")) == ["alice-project", "alice-project (restored)"]
    assert len(store.tracks(s.video)) == 1
    # a folder that vanished from the trash: said so, and the entry is dropped
    export = Path(st.annotate.export_results(s).export_file)
    e = st.trash.move_path("alice", PAGE, "export", export)
    for p in sorted(st.trash.folder("alice", e.id).rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    assert deletes.undo(s, PAGE).status.startswith(f"✖ export {export.name} is gone for good")


def test_an_older_data_folder_is_migrated(tmp_path):
    """A folder of the previous version: names unique per owner as a table constraint."""
    c = sqlite3.connect(tmp_path / "studio.sqlite")
    c.executescript("""CREATE TABLE projects (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL,
        vocabulary TEXT NOT NULL DEFAULT '[]', created REAL NOT NULL, owner TEXT NOT NULL DEFAULT '',
        UNIQUE(owner, name));
      CREATE TABLE videos (id INTEGER PRIMARY KEY AUTOINCREMENT, project_id INTEGER NOT NULL REFERENCES projects(id),
        name TEXT NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL, num_frames INTEGER NOT NULL,
        fps REAL NOT NULL, reviewed INTEGER NOT NULL DEFAULT 0, weights_label TEXT NOT NULL DEFAULT '',
        created REAL NOT NULL, UNIQUE(project_id, name));
      INSERT INTO projects(name, created, owner) VALUES ('a', 0, 'u'), ('gone', 0, 'u'), ('b', 0, 'v');
      DELETE FROM projects WHERE name='gone';""")
    c.commit()
    c.close()
    store = Store(tmp_path)
    assert store.projects("u") == [(1, "a")] and store.projects("v") == [(3, "b")]
    assert store.create_project("new", owner="u") == 4  # ids are never handed out twice
    store.q("SELECT deleted FROM videos")
    with store.tx() as c:
        c.execute("UPDATE projects SET deleted=1 WHERE id=1")
    assert store.create_project("a", owner="u") == 5  # the name of a deleted project is free


def test_closing_the_page_purges_through_the_server(users_server, tmp_path):
    """``demo.unload``: a page's heartbeat ends, its deletes (and only its own) become permanent."""
    import httpx
    from gradio_client import handle_file

    from tests.conftest import USERS
    from tests.ui.apptest import NamedClient

    url, studio, home = users_server
    pages = {u: NamedClient(url, studio.api, auth=(u, USERS[u])) for u in ("alice", "bob")}
    for u, page in pages.items():
        page.predict(f"{u}-gone", "cat", api_name="/create_project")
        out = page.predict(handle_file(str(frames_zip(tmp_path / f"{u}.zip", n=2))), None, 10, "cat",
                           api_name="/add_video")
        assert out["status"].startswith("✔ added"), out["status"]
        out = page.predict(True, api_name="/delete_project")
        assert out["status"].startswith("✔ project"), out["status"]
    vids = {u: studio.store.q("SELECT v.id FROM videos v JOIN projects p ON p.id=v.project_id WHERE p.name=?",
                              (f"{u}-gone",))[0][0] for u in pages}
    a = pages["alice"].client
    with httpx.Client(base_url=url, cookies=a.cookies, timeout=10) as http:
        with http.stream("GET", f"gradio_api/heartbeat/{a.session_hash}") as r:
            assert r.status_code == 200
            next(r.iter_lines())  # the page is open ... and now closed
    deadline = time.time() + 20
    while studio.store.frames_dir(vids["alice"]).exists() and time.time() < deadline:
        time.sleep(0.2)
    assert not studio.store.frames_dir(vids["alice"]).exists()
    assert studio.trash.latest("alice", a.session_hash, ("project",)) is None
    # bob's page is still open: his delete is pending and his Undo brings it back
    out = pages["bob"].predict(api_name="/undo_delete")
    assert out["status"] == "✔ project **bob-gone** restored", out["status"]
    assert studio.store.frames_dir(vids["bob"]).is_dir()
