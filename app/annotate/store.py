"""SQLite (WAL) project store: projects, videos, tracks, per-frame masks and the edit log.

Frames live on disk as JPEG files beside the database (``<home>/videos/<video_id>/NNNNN.jpg``).
Masks are small compressed RLE strings; they live *inside* the database so that an edit (mask
rows + undo record) commits in one transaction: a server killed with SIGKILL restarts with every
committed edit and never with half of one.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ovformer.ytvis.rle import RLE, decode_rle, encode_mask

# ``deleted`` is 0, or the id of the trash entry that hides the row until it is purged or
# restored (:mod:`app.annotate.trash`); a name is unique among an owner's projects not deleted.
PROJECTS = """CREATE TABLE IF NOT EXISTS {table} (
  id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL,
  vocabulary TEXT NOT NULL DEFAULT '[]', created REAL NOT NULL,
  owner TEXT NOT NULL DEFAULT '', deleted INTEGER NOT NULL DEFAULT 0);"""

SCHEMA = PROJECTS.format(table="projects") + """
CREATE TABLE IF NOT EXISTS videos (
  id INTEGER PRIMARY KEY AUTOINCREMENT, project_id INTEGER NOT NULL REFERENCES projects(id),
  name TEXT NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,
  num_frames INTEGER NOT NULL, fps REAL NOT NULL, reviewed INTEGER NOT NULL DEFAULT 0,
  weights_label TEXT NOT NULL DEFAULT '', created REAL NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
  UNIQUE(project_id, name));
CREATE TABLE IF NOT EXISTS tracks (
  id INTEGER PRIMARY KEY AUTOINCREMENT, video_id INTEGER NOT NULL REFERENCES videos(id),
  label TEXT NOT NULL, score REAL NOT NULL DEFAULT 1.0,
  alternatives TEXT NOT NULL DEFAULT '[]', source TEXT NOT NULL DEFAULT 'manual');
CREATE TABLE IF NOT EXISTS masks (
  video_id INTEGER NOT NULL, track_id INTEGER NOT NULL, frame INTEGER NOT NULL,
  rle TEXT NOT NULL, area INTEGER NOT NULL, PRIMARY KEY (track_id, frame));
CREATE INDEX IF NOT EXISTS masks_by_frame ON masks(video_id, frame);
CREATE TABLE IF NOT EXISTS ops (
  id INTEGER PRIMARY KEY AUTOINCREMENT, video_id INTEGER NOT NULL, kind TEXT NOT NULL,
  before TEXT NOT NULL, after TEXT NOT NULL, undone INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL,
  user TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS ops_by_video ON ops(video_id, id);
CREATE TABLE IF NOT EXISTS trash (
  id INTEGER PRIMARY KEY AUTOINCREMENT, user TEXT NOT NULL, page TEXT NOT NULL, kind TEXT NOT NULL,
  name TEXT NOT NULL, target TEXT NOT NULL, pid INTEGER NOT NULL, created REAL NOT NULL);
"""
#: made after :meth:`Store._migrate` (an older folder's tables lack ``deleted`` until then)
INDEXES = "CREATE UNIQUE INDEX IF NOT EXISTS projects_live_name ON projects(owner, name) WHERE deleted=0;"

#: videos shown: neither they nor their project are deleted
LIVE_VIDEOS = "FROM videos v JOIN projects p ON p.id=v.project_id WHERE v.deleted=0 AND p.deleted=0"

TRACK_COLUMNS = ("id", "video_id", "label", "score", "alternatives", "source")


# The store keeps a mask as the ``counts`` string of its compressed RLE (the size is the
# video's); these adapt that to ovformer.ytvis.rle, the one encoder/decoder.
def mask_counts(mask: np.ndarray) -> str | None:
    """Boolean (H, W) mask -> stored RLE counts, or None when the mask is empty."""
    m = np.asarray(mask, bool)
    return encode_mask(m)["counts"] if m.any() else None


def counts_rle(counts: str, height: int, width: int) -> RLE:
    """Stored counts -> the YouTube-VIS segmentation dict."""
    return {"size": [int(height), int(width)], "counts": counts}


def counts_mask(counts: str, height: int, width: int) -> np.ndarray:
    """Stored counts -> boolean (H, W) mask."""
    return decode_rle(counts_rle(counts, height, width))


@dataclass
class VideoRow:
    """One video of a project (frames on disk, ``num_frames`` of them)."""

    id: int
    project_id: int
    name: str
    width: int
    height: int
    num_frames: int
    fps: float
    reviewed: bool
    weights_label: str


@dataclass
class TrackRow:
    """One object track; ``alternatives`` is ``[(label, score), ...]`` best first."""

    id: int
    video_id: int
    label: str
    score: float
    alternatives: list[tuple[str, float]] = field(default_factory=list)
    source: str = "manual"
    frames: list[int] = field(default_factory=list)


def default_home() -> Path:
    """``$OVFORMER_HOME`` or ``~/.ovformer``."""
    return Path(os.environ.get("OVFORMER_HOME") or Path.home() / ".ovformer")


class Store:
    """Thread-safe access to one data folder. Each call opens a short-lived connection so that
    Gradio worker threads never share a connection; WAL lets readers run beside a writer."""

    def __init__(self, home: str | Path | None = None) -> None:
        self.home = Path(home) if home else default_home()
        self.home.mkdir(parents=True, exist_ok=True)
        self.db_path = self.home / "studio.sqlite"
        self._local = threading.local()
        self._conn().executescript(SCHEMA)  # executescript manages its own transaction
        self._migrate()
        self._sweep_staging()
        mode = self._conn().execute("PRAGMA journal_mode").fetchone()[0]
        assert mode.lower() == "wal", mode

    def _migrate(self) -> None:
        """Bring a data folder of an earlier version up to date (owners; undo per user; deletes
        that can be undone)."""
        c = self._conn()
        cols = {r["name"] for r in c.execute("PRAGMA table_info(projects)")}
        if "deleted" not in cols:
            # the name was unique over everyone's projects, then per owner (a table constraint,
            # which SQLite cannot drop); now per owner among the projects not deleted (INDEXES)
            owner = "owner" if "owner" in cols else "''"
            seq = c.execute("SELECT seq FROM sqlite_sequence WHERE name='projects'").fetchone()
            c.execute("PRAGMA foreign_keys=OFF")
            c.executescript(f"""BEGIN IMMEDIATE; {PROJECTS.format(table="projects_new")}
              INSERT INTO projects_new(id, name, vocabulary, created, owner)
                SELECT id, name, vocabulary, created, {owner} FROM projects;
              DROP TABLE projects; ALTER TABLE projects_new RENAME TO projects;
              UPDATE sqlite_sequence SET seq=MAX(seq, {int(seq[0]) if seq else 0}) WHERE name='projects';
              COMMIT;""")  # the sequence kept: an id (and its export's name) is never handed out twice
            c.execute("PRAGMA foreign_keys=ON")
        if "user" not in {r["name"] for r in c.execute("PRAGMA table_info(ops)")}:
            c.execute("ALTER TABLE ops ADD COLUMN user TEXT NOT NULL DEFAULT ''")
        if "deleted" not in {r["name"] for r in c.execute("PRAGMA table_info(videos)")}:
            c.execute("ALTER TABLE videos ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0")
        c.executescript(INDEXES)

    def _sweep_staging(self, max_age_s: float = 3600.0) -> None:
        """Remove decode folders orphaned by a crash (never registered, so never visible)."""
        import shutil
        videos = self.home / "videos"
        if videos.is_dir():  # frames of a video whose deletion committed before its folder went
            known = {str(r["id"]) for r in self.q("SELECT id FROM videos")}
            for d in videos.iterdir():
                if d.is_dir() and d.name not in known:
                    shutil.rmtree(d, ignore_errors=True)
        for d in (self.home / "staging").glob("*"):
            try:
                if time.time() - d.stat().st_mtime > max_age_s:
                    shutil.rmtree(d, ignore_errors=True)
            except OSError:
                pass

    # -- connections -------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk before the call returns (survives SIGKILL and power loss).
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE serialises writers from several sessions)."""
        c = self._conn()
        if c.in_transaction:  # nested use joins the outer transaction
            yield c
            return
        c.execute("BEGIN IMMEDIATE")
        try:
            yield c
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")

    def q(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        return self._conn().execute(sql, args).fetchall()

    # -- projects ------------------------------------------------------------------------------
    def create_project(self, name: str, vocabulary: list[str] | None = None, owner: str = "") -> int:
        """The owner's project of that name (created if new)."""
        name = name.strip() or "project"
        with self.tx() as c:
            row = c.execute("SELECT id FROM projects WHERE name=? AND owner=? AND deleted=0", (name, owner)).fetchone()
            if row:
                return int(row["id"])
            cur = c.execute("INSERT INTO projects(name, vocabulary, created, owner) VALUES (?,?,?,?)",
                            (name, json.dumps(vocabulary or []), time.time(), owner))
            return int(cur.lastrowid)

    def projects(self, owner: str = "") -> list[tuple[int, str]]:
        """The owner's projects (every query of a list is by owner: nobody lists another's), the
        deleted ones left out (as everywhere below: a deleted row is as unknown as a wrong id)."""
        return [(r["id"], r["name"]) for r in
                self.q("SELECT id, name FROM projects WHERE owner=? AND deleted=0 ORDER BY id", (owner,))]

    def project_owner(self, project_id: int) -> str | None:
        """The owner of a project not deleted (None: no such project)."""
        rows = self.q("SELECT owner FROM projects WHERE id=? AND deleted=0", (project_id,))
        return rows[0]["owner"] if rows else None

    def owns_project(self, owner: str, project_id: Any) -> bool:
        try:
            return self.project_owner(int(project_id)) == owner
        except (TypeError, ValueError, OverflowError):
            return False

    def owns_video(self, owner: str, video_id: Any) -> bool:
        try:
            rows = self.q(f"SELECT p.owner {LIVE_VIDEOS} AND v.id=?", (int(video_id),))
        except (TypeError, ValueError, OverflowError):
            return False
        return bool(rows) and rows[0]["owner"] == owner

    def project_name(self, project_id: int) -> str:
        rows = self.q("SELECT name FROM projects WHERE id=?", (project_id,))
        return rows[0]["name"] if rows else ""

    def delete_project(self, project_id: int) -> list[int]:
        """Remove a project for good with its videos, tracks, masks and undo history (the page's
        deletes only hide it until then: :mod:`app.annotate.trash`); returns the video ids whose
        frame folders the caller removes (after the commit)."""
        with self.tx() as c:
            vids = [r["id"] for r in c.execute("SELECT id FROM videos WHERE project_id=?", (project_id,))]
            for v in vids:
                self._delete_video_rows(c, v)
            c.execute("DELETE FROM projects WHERE id=?", (project_id,))
        return vids

    def delete_video(self, video_id: int) -> None:
        with self.tx() as c:
            self._delete_video_rows(c, video_id)

    @staticmethod
    def _delete_video_rows(c: sqlite3.Connection, video_id: int) -> None:
        for t in ("masks", "ops"):
            c.execute(f"DELETE FROM {t} WHERE video_id=?", (video_id,))
        c.execute("DELETE FROM tracks WHERE video_id=?", (video_id,))
        c.execute("DELETE FROM videos WHERE id=?", (video_id,))

    def remove_frames(self, video_id: int) -> None:
        """Delete a removed video's frame folder (its rows are gone already)."""
        import shutil
        shutil.rmtree(self.frames_dir(video_id), ignore_errors=True)
        shutil.rmtree(self.home / "queries" / str(int(video_id)), ignore_errors=True)  # click-to-add bank

    def vocabulary(self, project_id: int) -> list[str]:
        rows = self.q("SELECT vocabulary FROM projects WHERE id=?", (project_id,))
        return json.loads(rows[0]["vocabulary"]) if rows else []

    def set_vocabulary(self, project_id: int, vocabulary: list[str]) -> None:
        with self.tx() as c:
            c.execute("UPDATE projects SET vocabulary=? WHERE id=?", (json.dumps(vocabulary), project_id))

    # -- videos --------------------------------------------------------------------------------
    def frames_dir(self, video_id: int) -> Path:
        return self.home / "videos" / str(video_id)

    def frame_path(self, video_id: int, index: int) -> Path:
        return self.frames_dir(video_id) / f"{index:05d}.jpg"

    def reserve_video_dir(self) -> Path:
        """A staging folder for frames being decoded; moved into place once the row exists."""
        d = self.home / "staging" / f"{os.getpid()}-{threading.get_ident()}-{time.time_ns()}"
        d.mkdir(parents=True)
        return d

    def add_video(self, project_id: int, name: str, staged: Path, width: int, height: int,
                  num_frames: int, fps: float) -> int:
        """Register decoded frames (already JPEG files in ``staged``) as a new video."""
        with self.tx() as c:
            taken = {r["name"] for r in c.execute("SELECT name FROM videos WHERE project_id=?", (project_id,))}
            base, k = name, 2
            while name in taken:
                name, k = f"{base}_{k}", k + 1
            cur = c.execute("INSERT INTO videos(project_id, name, width, height, num_frames, fps, created)"
                            " VALUES (?,?,?,?,?,?,?)", (project_id, name, width, height, num_frames, fps, time.time()))
            vid = int(cur.lastrowid)
            dest = self.frames_dir(vid)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.exists():  # left over by a crash before a commit that never happened
                import shutil
                shutil.rmtree(dest)
            os.replace(staged, dest)
        return vid

    def videos(self, project_id: int) -> list[VideoRow]:
        """The project's videos not deleted (none when the project is)."""
        return [self._video(r) for r in self.q(f"SELECT v.* {LIVE_VIDEOS} AND v.project_id=? ORDER BY v.id",
                                               (project_id,))]

    def video(self, video_id: int) -> VideoRow | None:
        """A video not deleted, of a project not deleted (None otherwise)."""
        rows = self.q(f"SELECT v.* {LIVE_VIDEOS} AND v.id=?", (video_id,))
        return self._video(rows[0]) if rows else None

    @staticmethod
    def _video(r: sqlite3.Row) -> VideoRow:
        return VideoRow(r["id"], r["project_id"], r["name"], r["width"], r["height"], r["num_frames"],
                        r["fps"], bool(r["reviewed"]), r["weights_label"])

    def set_reviewed(self, video_id: int, reviewed: bool) -> None:
        with self.tx() as c:
            c.execute("UPDATE videos SET reviewed=? WHERE id=?", (int(reviewed), video_id))

    def set_weights_label(self, video_id: int, label: str) -> None:
        with self.tx() as c:
            c.execute("UPDATE videos SET weights_label=? WHERE id=?", (label, video_id))

    # -- tracks and masks ----------------------------------------------------------------------
    def tracks(self, video_id: int) -> list[TrackRow]:
        frames: dict[int, list[int]] = {}
        for r in self.q("SELECT track_id, frame FROM masks WHERE video_id=? ORDER BY frame", (video_id,)):
            frames.setdefault(r["track_id"], []).append(r["frame"])
        out = []
        for r in self.q("SELECT * FROM tracks WHERE video_id=? ORDER BY id", (video_id,)):
            alts = [(str(a), float(s)) for a, s in json.loads(r["alternatives"])]
            out.append(TrackRow(r["id"], r["video_id"], r["label"], r["score"], alts, r["source"],
                                frames.get(r["id"], [])))
        return out

    def track(self, track_id: int) -> TrackRow | None:
        rows = self.q("SELECT video_id FROM tracks WHERE id=?", (track_id,))
        if not rows:
            return None
        return next((t for t in self.tracks(rows[0]["video_id"]) if t.id == track_id), None)

    def frame_masks(self, video_id: int, frame: int) -> dict[int, str]:
        """``{track_id: rle counts}`` for one frame."""
        return {r["track_id"]: r["rle"] for r in
                self.q("SELECT track_id, rle FROM masks WHERE video_id=? AND frame=?", (video_id, frame))}

    def track_masks(self, track_id: int) -> dict[int, str]:
        return {r["frame"]: r["rle"] for r in self.q("SELECT frame, rle FROM masks WHERE track_id=?", (track_id,))}

    def video_masks(self, video_id: int) -> dict[int, dict[int, str]]:
        """``{track_id: {frame: rle}}`` for a whole video (export, rendering)."""
        out: dict[int, dict[int, str]] = {}
        for r in self.q("SELECT track_id, frame, rle FROM masks WHERE video_id=?", (video_id,)):
            out.setdefault(r["track_id"], {})[r["frame"]] = r["rle"]
        return out

    def stats(self) -> dict[str, Any]:
        """Counts, for tests and the status line."""
        return {t: self.q(f"SELECT COUNT(*) AS n FROM {t}")[0]["n"] for t in ("projects", "videos", "tracks", "masks", "ops")}
