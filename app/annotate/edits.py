"""Track editing operations with undo/redo stored in the database.

Every operation runs in ONE transaction that (1) snapshots the rows it is about to touch,
(2) changes them and (3) appends ``before``/``after`` snapshots to the ``ops`` table. Undo
restores ``before``, redo restores ``after``. Because the log is in the same database as the data,
undo history survives restarts, and a crash can never leave an edit without its undo record.
"""
from __future__ import annotations

import json
import sqlite3
import time
from typing import Callable, Iterable

import numpy as np

from ovformer.ytvis.rle import rle_area

from .store import Store, counts_mask, counts_rle, mask_counts

HISTORY = 200  # undo steps kept per video and user (the issue asks for at least 50)
MAX_LABEL = 100  # characters of a class name

# (track_id, frames or None for "every frame of the track")
Scope = list[tuple[int, Iterable[int] | None]]


class EditError(ValueError):
    """An edit that cannot be applied (unknown track, empty mask...); nothing was changed."""


def _snapshot(c: sqlite3.Connection, scope: Scope) -> list[dict]:
    snap = []
    for tid, frames in scope:
        row = c.execute("SELECT * FROM tracks WHERE id=?", (tid,)).fetchone()
        rowd = {k: row[k] for k in row.keys()} if row else None
        if frames is None:
            ms = {r["frame"]: r["rle"] for r in c.execute("SELECT frame, rle FROM masks WHERE track_id=?", (tid,))}
        else:
            ms = {}
            for f in frames:
                r = c.execute("SELECT rle FROM masks WHERE track_id=? AND frame=?", (tid, f)).fetchone()
                ms[int(f)] = r["rle"] if r else None
        snap.append({"track": tid, "row": rowd, "full": frames is None, "masks": {str(k): v for k, v in ms.items()}})
    return snap


def _restore(c: sqlite3.Connection, snap: list[dict]) -> None:
    for s in snap:
        tid, row = s["track"], s["row"]
        if row is None:
            c.execute("DELETE FROM masks WHERE track_id=?", (tid,))
            c.execute("DELETE FROM tracks WHERE id=?", (tid,))
            continue
        cols = list(row)
        c.execute(f"INSERT OR REPLACE INTO tracks({','.join(cols)}) VALUES ({','.join('?' * len(cols))})",
                  [row[k] for k in cols])
        if s["full"]:
            c.execute("DELETE FROM masks WHERE track_id=?", (tid,))
        for f, rle in s["masks"].items():
            _put_mask(c, row["video_id"], tid, int(f), rle)


def _put_mask(c: sqlite3.Connection, video_id: int, tid: int, frame: int, rle: str | None) -> None:
    if rle is None:
        c.execute("DELETE FROM masks WHERE track_id=? AND frame=?", (tid, frame))
        return
    h, w = c.execute("SELECT height, width FROM videos WHERE id=?", (video_id,)).fetchone()
    c.execute("INSERT OR REPLACE INTO masks(video_id, track_id, frame, rle, area) VALUES (?,?,?,?,?)",
              (video_id, tid, frame, rle, rle_area(counts_rle(rle, h, w))))


def check_label(label: str) -> str:
    label = label.strip()
    if not label:
        raise EditError("the new class name is empty")
    if len(label) > MAX_LABEL:
        raise EditError(f"a class name may have at most {MAX_LABEL} characters (this one has {len(label)})")
    return label


def _frame(x: object) -> int:
    """A frame number from the page (any number; NaN, inf and text are refused)."""
    try:
        return int(float(x))  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise EditError(f"{x!r} is not a frame number") from None


class Editor:
    """All track edits of the app. Every public method is one undoable, saved step.

    Undo and redo are per user: ``user``'s Undo reverts ``user``'s latest step on the video,
    never someone else's (:meth:`for_user` gives the editor of one user)."""

    def __init__(self, store: Store, user: str = "") -> None:
        self.store, self.user = store, user

    def for_user(self, user: str) -> Editor:
        return self if user == self.user else Editor(self.store, user)

    # -- machinery -----------------------------------------------------------------------------
    def _op(self, video_id: int, kind: str, scope: Scope,
            change: Callable[[sqlite3.Connection], Scope | None]) -> None:
        """Run ``change`` between two snapshots; ``change`` may return extra scope (new tracks)."""
        scope = [(t, None if f is None else sorted(set(int(x) for x in f))) for t, f in scope]
        with self.store.tx() as c:
            before = _snapshot(c, scope)
            extra = change(c) or []
            extra = [(t, None if f is None else sorted(set(f))) for t, f in extra]
            before += [{"track": t, "row": None, "full": True, "masks": {}} for t, _ in extra]
            after = _snapshot(c, scope + extra)
            u = self.user
            c.execute("DELETE FROM ops WHERE video_id=? AND user=? AND undone=1", (video_id, u))  # ends redo
            c.execute("INSERT INTO ops(video_id, kind, before, after, created, user) VALUES (?,?,?,?,?,?)",
                      (video_id, kind, json.dumps(before), json.dumps(after), time.time(), u))
            c.execute("DELETE FROM ops WHERE video_id=? AND user=? AND id NOT IN (SELECT id FROM ops WHERE "
                      "video_id=? AND user=? ORDER BY id DESC LIMIT ?)", (video_id, u, video_id, u, HISTORY))

    def _track(self, c: sqlite3.Connection, tid: int) -> sqlite3.Row:
        row = c.execute("SELECT * FROM tracks WHERE id=?", (tid,)).fetchone()
        if row is None:
            raise EditError(f"track #{tid} does not exist (deleted in another session?)")
        return row

    def _video_of(self, tid: int) -> int:
        rows = self.store.q("SELECT video_id FROM tracks WHERE id=?", (tid,))
        if not rows:
            raise EditError(f"track #{tid} does not exist (deleted in another session?)")
        return int(rows[0]["video_id"])

    def undo(self, video_id: int) -> str | None:
        """Undo the latest step of this video; returns its kind, or None when there is none."""
        return self._replay(video_id, undo=True)

    def redo(self, video_id: int) -> str | None:
        """Redo the earliest undone step of this video; returns its kind, or None."""
        return self._replay(video_id, undo=False)

    def _replay(self, video_id: int, undo: bool) -> str | None:
        # undo restores the latest live step's "before"; redo the oldest undone step's "after"
        side, order = ("before", "DESC") if undo else ("after", "ASC")
        with self.store.tx() as c:
            r = c.execute(f"SELECT id, kind, {side} AS snap FROM ops WHERE video_id=? AND user=? AND undone=? "
                          f"ORDER BY id {order} LIMIT 1", (video_id, self.user, 0 if undo else 1)).fetchone()
            if r is None:
                return None
            _restore(c, json.loads(r["snap"]))
            c.execute("UPDATE ops SET undone=? WHERE id=?", (1 if undo else 0, r["id"]))
            return r["kind"]

    def history(self, video_id: int) -> tuple[int, int]:
        """(undo steps available, redo steps available)."""
        rows = self.store.q("SELECT undone, COUNT(*) AS n FROM ops WHERE video_id=? AND user=? GROUP BY undone",
                            (video_id, self.user))
        d = {r["undone"]: r["n"] for r in rows}
        return d.get(0, 0), d.get(1, 0)

    # -- operations ----------------------------------------------------------------------------
    def replace_tracks(self, video_id: int, tracks: list[dict], kind: str = "prelabel") -> list[int]:
        """Replace every track of a video (pre-labels, imports). ``tracks``: dicts with
        label, score, alternatives [(label, score)], source, masks {frame: counts}."""
        old = [(r["id"], None) for r in self.store.q("SELECT id FROM tracks WHERE video_id=?", (video_id,))]
        new_ids: list[int] = []

        def change(c: sqlite3.Connection) -> Scope:
            for tid, _ in old:
                c.execute("DELETE FROM masks WHERE track_id=?", (tid,))
                c.execute("DELETE FROM tracks WHERE id=?", (tid,))
            for t in tracks:
                cur = c.execute("INSERT INTO tracks(video_id, label, score, alternatives, source) VALUES (?,?,?,?,?)",
                                (video_id, t["label"], float(t.get("score", 1.0)),
                                 json.dumps(t.get("alternatives", [])), t.get("source", "import")))
                tid = int(cur.lastrowid)
                new_ids.append(tid)
                for f, rle in t["masks"].items():
                    _put_mask(c, video_id, tid, int(f), rle)
            return [(t, None) for t in new_ids]

        self._op(video_id, kind, old, change)
        return new_ids

    def relabel(self, track_id: int, label: str) -> None:
        label = check_label(label)
        self._op(self._video_of(track_id), "relabel", [(track_id, [])],
                 lambda c: c.execute("UPDATE tracks SET label=? WHERE id=?", (label, track_id)) and None)

    def delete_track(self, track_id: int) -> None:
        def change(c: sqlite3.Connection) -> None:
            self._track(c, track_id)
            c.execute("DELETE FROM masks WHERE track_id=?", (track_id,))
            c.execute("DELETE FROM tracks WHERE id=?", (track_id,))
        self._op(self._video_of(track_id), "delete track", [(track_id, None)], change)

    def delete_span(self, track_id: int, start: int, end: int) -> tuple[int, int]:
        """Remove the track's masks on frames ``start..end`` (inclusive), clamped to the video
        before anything is read (a span of a billion frames is the video's frames)."""
        vid = self._video_of(track_id)
        last = self.store.video(vid).num_frames - 1
        lo, hi = sorted((_frame(start), _frame(end)))
        if hi < 0 or lo > last:
            raise EditError(f"frames {lo}-{hi} are outside the video (frames 0-{last})")
        lo, hi = max(0, lo), min(last, hi)
        frames = range(lo, hi + 1)
        self._op(vid, "delete frames", [(track_id, frames)],
                 lambda c: c.execute("DELETE FROM masks WHERE track_id=? AND frame BETWEEN ? AND ?",
                                     (track_id, lo, hi)) and None)
        return lo, hi

    def merge(self, keep: int, other: int) -> None:
        """Move ``other``'s masks into ``keep`` (union where both exist) and delete ``other``."""
        if keep == other:
            raise EditError("pick two different tracks to merge")
        vid = self._video_of(keep)
        if self._video_of(other) != vid:
            raise EditError("tracks are in different videos")
        h, w = self.store.q("SELECT height, width FROM videos WHERE id=?", (vid,))[0]
        theirs = self.store.track_masks(other)

        def change(c: sqlite3.Connection) -> None:
            for f, rle in theirs.items():
                mine = c.execute("SELECT rle FROM masks WHERE track_id=? AND frame=?", (keep, f)).fetchone()
                if mine is not None:
                    rle = mask_counts(counts_mask(mine["rle"], h, w) | counts_mask(rle, h, w))
                _put_mask(c, vid, keep, f, rle)
            c.execute("DELETE FROM masks WHERE track_id=?", (other,))
            c.execute("DELETE FROM tracks WHERE id=?", (other,))
        self._op(vid, "merge", [(keep, theirs.keys()), (other, None)], change)

    def split(self, track_id: int, frame: int) -> int:
        """Frames >= ``frame`` move to a new track with the same class; returns its id."""
        vid = self._video_of(track_id)
        moved = [f for f in self.store.track_masks(track_id) if f >= frame]
        if not moved or len(moved) == len(self.store.track_masks(track_id)):
            raise EditError(f"split at frame {frame} would leave one side empty")
        new: list[int] = []

        def change(c: sqlite3.Connection) -> Scope:
            row = self._track(c, track_id)
            cur = c.execute("INSERT INTO tracks(video_id, label, score, alternatives, source) VALUES (?,?,?,?,?)",
                            (vid, row["label"], row["score"], row["alternatives"], "split"))
            new.append(int(cur.lastrowid))
            c.execute("UPDATE masks SET track_id=? WHERE track_id=? AND frame>=?", (new[0], track_id, frame))
            return [(new[0], None)]
        self._op(vid, "split", [(track_id, moved)], change)
        return new[0]

    def set_mask(self, track_id: int, frame: int, mask: np.ndarray) -> None:
        """Replace the track's mask on one frame (paint/erase result); empty removes it."""
        rle = mask_counts(mask)
        self._op(self._video_of(track_id), "paint", [(track_id, [frame])],
                 lambda c: _put_mask(c, self._video_of(track_id), track_id, frame, rle))

    def add_track(self, video_id: int, label: str, frame: int, mask: np.ndarray) -> int:
        """A new manual track whose first mask is ``mask`` on ``frame``."""
        rle = mask_counts(mask)
        if rle is None:
            raise EditError("paint the new object on the frame first (the mask is empty)")
        if not label.strip():
            raise EditError("type or pick a class for the new track")
        label = check_label(label)
        new: list[int] = []

        def change(c: sqlite3.Connection) -> Scope:
            cur = c.execute("INSERT INTO tracks(video_id, label, score, alternatives, source) VALUES (?,?,?,?,?)",
                            (video_id, label.strip(), 1.0, "[]", "manual"))
            new.append(int(cur.lastrowid))
            _put_mask(c, video_id, new[0], frame, rle)
            return [(new[0], None)]
        self._op(video_id, "new track", [], change)
        return new[0]

    def add_track_masks(self, video_id: int, label: str, masks: dict[int, str], score: float = 1.0,
                        alternatives: list[tuple[str, float]] | None = None, source: str = "query",
                        kind: str = "add from click") -> int:
        """A new track with masks on many frames (``{frame: counts}``), as one undoable step."""
        label = check_label(str(label or ""))
        total = self.store.video(video_id).num_frames
        masks = {int(f): m for f, m in masks.items() if m and 0 <= int(f) < total}
        if not masks:
            raise EditError("the candidate has no mask on this video's frames")
        new: list[int] = []

        def change(c: sqlite3.Connection) -> Scope:
            cur = c.execute("INSERT INTO tracks(video_id, label, score, alternatives, source) VALUES (?,?,?,?,?)",
                            (video_id, label, float(score), json.dumps(alternatives or []), source))
            new.append(int(cur.lastrowid))
            for f, rle in masks.items():
                _put_mask(c, video_id, new[0], f, rle)
            return [(new[0], None)]
        self._op(video_id, kind, [], change)
        return new[0]

    def replace_masks(self, track_id: int, masks: dict[int, str | None], kind: str = "fix from click") -> int:
        """Set the track's masks on the given frames (None removes one), as one undoable step;
        returns how many frames changed."""
        vid = self._video_of(track_id)
        total = self.store.video(vid).num_frames
        masks = {int(f): m for f, m in masks.items() if 0 <= int(f) < total}

        def change(c: sqlite3.Connection) -> None:
            self._track(c, track_id)
            for f, rle in masks.items():
                _put_mask(c, vid, track_id, f, rle)
        self._op(vid, kind, [(track_id, list(masks))], change)
        return len(masks)

    def copy_forward(self, track_id: int, frame: int, n: int) -> int:
        """Copy the mask on ``frame`` to the next ``n`` frames; returns how many were written."""
        vid = self._video_of(track_id)
        src = self.store.track_masks(track_id).get(frame)
        if src is None:
            raise EditError(f"track #{track_id} has no mask on frame {frame} to copy")
        total = self.store.video(vid).num_frames
        targets = list(range(frame + 1, min(total, frame + 1 + max(0, min(_frame(n), total)))))

        def change(c: sqlite3.Connection) -> None:
            for f in targets:
                _put_mask(c, vid, track_id, f, src)
        self._op(vid, "copy mask", [(track_id, targets)], change)
        return len(targets)
