"""Deletes that can be undone until the page is left: projects, videos, exports and runs.

A delete records a *trash entry* (the store's ``trash`` table) under the user and the page
(Gradio's session hash) that asked for it, and takes the thing out of sight:

* a project or a video: its row is marked ``deleted`` with the entry's id. The store's queries
  that list or look up projects and videos skip marked rows (and the videos of a marked
  project), so the id typed into the API is as unknown as a wrong one. Tracks, masks, the edit
  history and the frames stay where they are: undo is one UPDATE and gives back exactly that.
* an export file, a dataset folder or a run folder: moved into ``<home>/trash/<user>/<entry>/``,
  out of every listing (the data folder is never served, :func:`app.main.launch_kwargs`).

Undo restores the page's newest entry. An entry becomes permanent (rows deleted, files removed)
when its page is left (``demo.unload`` in :func:`app.ui.build`) or, for the pages of an app that
was stopped or killed, when the next app starts (:meth:`Trash.purge_leftovers`).
"""
from __future__ import annotations

import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .export import unique_path
from .prelabel import pid_alive
from .store import Store

ROWS = {"project": "projects", "video": "videos"}  # kinds hidden by a mark on their row
FILES = ("export", "dataset", "run")                 # kinds moved into the trash folder
NOTHING = ("nothing to undo: a delete becomes permanent when the page that made it is left or "
           "the app restarts")


class TrashError(ValueError):
    """A delete or undo that cannot be done; the message is shown as is and nothing changed."""


@dataclass(frozen=True)
class Entry:
    """One pending delete: ``target`` is the row id (projects, videos) or the original path."""

    id: int
    user: str
    page: str
    kind: str
    name: str
    target: str
    pid: int

    @property
    def label(self) -> str:
        """What the Undo button names: ``project street``."""
        return f"{self.kind} {self.name}"

    def restored(self, name: str) -> str:
        """The page's message once undone (``name``: what :meth:`Trash.restore` returned)."""
        again = f" as **{name}** (its name was taken meanwhile)" if name != self.name else ""
        return f"{self.kind} **{self.name}** restored{again}"


class Trash:
    """The pending deletes of one data folder (shared by all sessions)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.root = store.home / "trash"
        # moves are not transactions: one delete, undo or purge of files at a time
        self._lock = threading.RLock()

    def folder(self, user: str, entry_id: int) -> Path:
        """Where an entry's file or folder waits (each user's own, like their exports)."""
        return self.root / ("users/" + user if user else "local") / str(int(entry_id))

    # -- delete -------------------------------------------------------------------------------------
    def hide_row(self, user: str, page: str, kind: str, row_id: int, name: str) -> Entry:
        """Mark a project or video deleted (the caller checked that it is ``user``'s)."""
        with self.store.tx() as c:
            eid = self._insert(c, user, page, kind, name, str(int(row_id)))
            if c.execute(f"UPDATE {ROWS[kind]} SET deleted=? WHERE id=? AND deleted=0",
                         (eid, int(row_id))).rowcount != 1:
                raise TrashError(f"{kind} {name} is deleted already")  # rolls the entry back
        return self._entry(eid)

    def move_path(self, user: str, page: str, kind: str, path: Path) -> Entry:
        """Move a file or folder (the caller checked that it is ``user``'s) into the trash."""
        path = Path(path)
        with self._lock:
            with self.store.tx() as c:  # the entry first: a folder in the trash always has one
                eid = self._insert(c, user, page, kind, path.name, str(path))
            dest = self.folder(user, eid) / path.name
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(path), str(dest))  # a rename; a copy when --datasets is on another disk
            except OSError:
                if path.exists():  # nothing was deleted: forget the half-made copy
                    shutil.rmtree(dest.parent, ignore_errors=True)
                    self._forget(eid)
                raise
        return self._entry(eid)

    # -- what the page offers -------------------------------------------------------------------------
    def pending(self, user: str, page: str, kinds: tuple[str, ...]) -> list[Entry]:
        """The page's pending deletes of those kinds, newest first (another user's are never
        listed, whatever page they name)."""
        marks = ",".join("?" * len(kinds))
        rows = self.store.q(f"SELECT * FROM trash WHERE user=? AND page=? AND kind IN ({marks}) ORDER BY id DESC",
                            (user, page, *kinds))
        return [self._row(r) for r in rows]

    def latest(self, user: str, page: str, kinds: tuple[str, ...]) -> Entry | None:
        """What the page's Undo button would restore (None: nothing)."""
        found = self.pending(user, page, kinds)
        return found[0] if found else None

    def undo_label(self, user: str, page: str, kinds: tuple[str, ...]) -> str:
        """The text of the page's Undo button ("" when there is nothing to undo: it is hidden)."""
        e = self.latest(user, page, kinds)
        return f"↶ Undo delete: {e.label}" if e else ""

    # -- undo ----------------------------------------------------------------------------------------
    def restore(self, user: str, page: str, kinds: tuple[str, ...]) -> tuple[Entry, str]:
        """Undo the page's newest delete of those kinds; returns it and the name it has again
        (another one when its name was taken meanwhile)."""
        with self._lock:
            e = self.latest(user, page, kinds)
            if e is None:
                raise TrashError(NOTHING)
            return e, (self._unhide(e) if e.kind in ROWS else self._move_back(e))

    def _unhide(self, e: Entry) -> str:
        with self.store.tx() as c:
            c.execute("DELETE FROM trash WHERE id=?", (e.id,))
            row = c.execute(f"SELECT * FROM {ROWS[e.kind]} WHERE id=? AND deleted=?", (int(e.target), e.id)).fetchone()
            if row is None:
                name = None
            else:
                name = row["name"]
                if e.kind == "project":  # a project of that name was made meanwhile: both are kept
                    taken = {r["name"] for r in c.execute("SELECT name FROM projects WHERE owner=? AND deleted=0",
                                                          (row["owner"],))}
                    k = 1
                    while name in taken:
                        name, k = f"{row['name']} (restored{f' {k}' if k > 1 else ''})", k + 1
                c.execute(f"UPDATE {ROWS[e.kind]} SET deleted=0, name=? WHERE id=?", (name, row["id"]))
        if name is None:  # the entry is dropped all the same: it held nothing
            raise TrashError(f"{e.label} is gone for good: it cannot be brought back")
        return name

    def _move_back(self, e: Entry) -> str:
        src = self.folder(e.user, e.id) / Path(e.target).name
        if not src.exists():
            self._forget(e.id)
            raise TrashError(f"{e.label} is gone for good: it cannot be brought back")
        dest = Path(e.target)
        if dest.exists():  # e.g. the same dataset exported again meanwhile: both are kept
            dest = unique_path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(src), str(dest))
        self._forget(e.id)
        shutil.rmtree(src.parent, ignore_errors=True)
        return dest.name

    # -- purge ---------------------------------------------------------------------------------------
    def purge_page(self, user: str, page: str) -> int:
        """The page was left: its deletes become permanent; returns how many."""
        return self._purge(self.pending(user, page, (*ROWS, *FILES)))

    def purge_leftovers(self) -> int:
        """At start-up: make permanent what the pages of a stopped or killed app left pending
        (another running app's entries are kept), and remove trash folders without an entry."""
        entries = [self._row(r) for r in self.store.q("SELECT * FROM trash ORDER BY id")]
        n = self._purge([e for e in entries if e.pid == os.getpid() or not pid_alive(e.pid)])
        known = {str(r["id"]) for r in self.store.q("SELECT id FROM trash")}
        for d in [*self.root.glob("local/*"), *self.root.glob("users/*/*")]:
            if d.is_dir() and d.name not in known:
                shutil.rmtree(d, ignore_errors=True)
        return n

    def _purge(self, entries: list[Entry]) -> int:
        with self._lock:
            for e in entries:
                if e.kind in ROWS:
                    vids: list[int] = []
                    with self.store.tx() as c:  # only what this entry still hides
                        if c.execute(f"SELECT 1 FROM {ROWS[e.kind]} WHERE id=? AND deleted=?",
                                     (int(e.target), e.id)).fetchone():
                            if e.kind == "project":
                                vids = self.store.delete_project(int(e.target))
                            else:
                                self.store.delete_video(int(e.target))
                                vids = [int(e.target)]
                        c.execute("DELETE FROM trash WHERE id=?", (e.id,))
                    for v in vids:  # after the commit (a crash between: Store sweeps them at start)
                        self.store.remove_frames(v)
                else:
                    shutil.rmtree(self.folder(e.user, e.id), ignore_errors=True)
                    self._forget(e.id)
        return len(entries)

    # -- rows ----------------------------------------------------------------------------------------
    @staticmethod
    def _insert(c, user: str, page: str, kind: str, name: str, target: str) -> int:
        cur = c.execute("INSERT INTO trash(user, page, kind, name, target, pid, created) VALUES (?,?,?,?,?,?,?)",
                        (user, page or "", kind, name, target, os.getpid(), time.time()))
        return int(cur.lastrowid)

    def _forget(self, entry_id: int) -> None:
        with self.store.tx() as c:
            c.execute("DELETE FROM trash WHERE id=?", (entry_id,))

    def _entry(self, entry_id: int) -> Entry:
        return self._row(self.store.q("SELECT * FROM trash WHERE id=?", (entry_id,))[0])

    @staticmethod
    def _row(r) -> Entry:
        return Entry(r["id"], r["user"], r["page"], r["kind"], r["name"], r["target"], r["pid"])
