"""Click to add what the model missed, and click to fix a track, from OVFormer's own queries.

Pre-labelling keeps every query of the video (a :class:`~ovformer.inference.queries.QueryBank`
under ``<data>/queries/<video id>``, :func:`~.prelabel.keep_query_bank`). Here a click on the
frame ranks all queries by their mask probability at the clicks (more positive clicks, and
negative ones to exclude), without running the model; the person cycles through candidates and
accepts one, which becomes a track through the :class:`~.edits.Editor` as one undoable step.

The "Add" state (clicks, which candidate is shown, the track being fixed) lives in the tab's
:class:`~.session.Session`; nothing is saved before Accept.
"""
from __future__ import annotations

import bisect
import json
from typing import Any

import numpy as np

from ovformer.inference.queries import Candidate, QueryBank

from .edits import EditError, Editor
from .prelabel import query_bank_dir
from .review import ReviewService, owned_track
from .session import Screen, Session, bad, ok
from .store import Store, mask_counts

MAX_CLICKS = 16
CANDIDATE_COLOR = np.array([255, 0, 255], np.float32)  # magenta: not a track yet


class ClickService:
    """Add / fix by clicking on the open video (the review panel renders the result)."""

    def __init__(self, store: Store, editor: Editor, review: ReviewService) -> None:
        self.store, self.editor, self.review = store, editor, review
        self._banks: dict[int, tuple[float, QueryBank, list[int], dict[int, int]]] = {}

    # -- the bank of a video -----------------------------------------------------------------
    def bank(self, video_id: int) -> tuple[QueryBank, list[int], dict[int, int]]:
        """(bank, stored frame of each model frame, query of each pre-label track)."""
        d = query_bank_dir(self.store, video_id)
        if not QueryBank.exists(d):
            raise EditError("no model queries for this video yet: pre-label it first (pre-labelling "
                            "keeps every query, so clicks can add what it missed)")
        stamp = (d / "meta.json").stat().st_mtime
        hit = self._banks.get(video_id)
        if hit is None or hit[0] != stamp or not hit[1].path.exists():
            bank = QueryBank(d)
            links = json.loads((d / "links.json").read_text()) if (d / "links.json").exists() else {}
            indices = [int(i) for i in links.get("indices", range(bank.num_frames))]
            tracks = {int(k): int(q) for k, q in links.get("tracks", {}).items()}
            v = self.store.video(video_id)
            if tuple(bank.output_size) != (v.height, v.width) or len(indices) != bank.num_frames:
                raise EditError("the kept model queries do not match this video: pre-label it again")
            hit = self._banks[video_id] = (stamp, bank, indices, tracks)
        return hit[1], hit[2], hit[3]

    @staticmethod
    def model_frame(indices: list[int], frame: int) -> int:
        """The model frame shown on stored frame ``frame`` (the last one at or before it)."""
        return max(0, bisect.bisect_right(indices, int(frame)) - 1)

    def _live_queries(self, video_id: int, tracks: dict[int, int]) -> set[int]:
        live = {t.id for t in self.store.tracks(video_id)}
        return {q for tid, q in tracks.items() if tid in live}

    def candidates(self, s: Session, points: Any = None, limit: int = 10) -> list[Candidate]:
        """Candidates for the session's clicks (or ``points``) on its frame, best first; in fix
        mode (``s.fixing``) masks from other queries for the rest of the clip."""
        if not s.video:
            raise EditError("add or open a video first")
        pts = _points(points if points is not None else s.clicks, self.store.video(s.video))
        bank, indices, tracks = self.bank(s.video)
        k = self.model_frame(indices, s.click_frame if s.clicks and points is None else s.frame)
        if s.fixing is not None:
            q = tracks.get(int(s.fixing))
            if q is None:
                raise EditError(f"track #{s.fixing} did not come from the model: only pre-label tracks "
                                "can be fixed by clicking")
            return bank.fix_candidates(q, k, pts, limit=limit)
        return bank.candidates(k, pts, limit=limit, exclude=self._live_queries(s.video, tracks))

    def stored_masks(self, s: Session, cand: Candidate) -> dict[int, str | None]:
        """The candidate's masks on the stored frames it covers (a model frame's mask held on
        the stored frames up to the next model frame, as pre-labelling does)."""
        v = self.store.video(s.video)
        _, indices, _ = self.bank(s.video)
        ends = indices[1:] + [v.num_frames]
        out: dict[int, str | None] = {}
        for k, m in cand.masks():
            counts = mask_counts(m) if m.any() else None
            out.update(dict.fromkeys(range(indices[k], min(v.num_frames, ends[k])), counts))
        return out

    # -- the Add mode: each returns the panel to show ----------------------------------------
    def click(self, s: Session, x: Any, y: Any, positive: bool = True) -> Screen:
        """Add a click on the current frame and show the best candidate."""
        if not s.video:
            return self.review.panel(s, bad("add or open a video first"))
        if len(s.clicks) >= MAX_CLICKS:
            return self.show(s, bad(f"at most {MAX_CLICKS} clicks: accept, or Esc to start again"))
        try:
            pt = _point((x, y, positive), self.store.video(s.video))
            if not positive and not (s.clicks and s.click_frame == s.frame):
                raise EditError("click on the object first (a positive click), then exclude with negatives")
        except EditError as e:
            return self.review.panel(s, bad(str(e)))
        same = s.clicks and s.click_frame == s.frame
        s = s.replace(clicks=(tuple(s.clicks) if same else ()) + (pt,), pick=0, click_frame=s.frame)
        return self.show(s)

    def start_fix(self, s: Session, track: Any) -> Screen:
        """Fix mode for a track: the next clicks propose masks for it from other queries."""
        try:
            tid = owned_track(self.store, s, track)
        except EditError as e:
            return self.review.panel(s, bad(str(e)))
        s = s.replace(fixing=tid, clicks=(), pick=0, track=tid)
        return self.review.panel(s, ok(f"fixing track #{tid}: click where its mask is wrong on this frame "
                                          "(right/shift-click: a place it must not cover)"))

    def next(self, s: Session) -> Screen:
        """The next candidate (n)."""
        return self.show(s.replace(pick=s.pick + 1)) if s.clicks else self.review.panel(s)

    def cancel(self, s: Session) -> Screen:
        """Leave the Add / fix mode without saving (Esc)."""
        return self.review.panel(s.replace(clicks=(), pick=0, fixing=None), ok("cancelled: nothing was changed"))

    def show(self, s: Session, status: str | None = None) -> Screen:
        """The panel with the picked candidate drawn on the frame and its classes in the status."""
        if not s.clicks:
            return self.review.panel(s, status)
        try:
            cands = self.candidates(s)
        except (EditError, ValueError, IndexError) as e:
            return self.review.panel(s, bad(str(e)))
        if not cands:
            return self.review.panel(s, status or bad("no query of the model covers this click: paint the "
                                                      "object by hand, or Esc"))
        s = s.replace(pick=s.pick % len(cands))
        c = cands[s.pick]
        screen = self.review.panel(s, status or ok(self._describe(s, c, len(cands))))
        img = np.asarray(screen.frame_img).astype(np.float32)
        m = c.frame_mask(self.model_frame(self.bank(s.video)[1], s.frame)) \
            if c.frames[0] <= self.model_frame(self.bank(s.video)[1], s.frame) < c.frames[1] \
            else np.zeros(img.shape[:2], bool)
        if img.shape[:2] == m.shape:
            img[m] = 0.45 * img[m] + 0.55 * CANDIDATE_COLOR
            for x, y, p in s.clicks:
                img[max(0, int(y) - 3):int(y) + 4, max(0, int(x) - 3):int(x) + 4] = (0, 255, 0) if p else (255, 0, 0)
        screen.frame_img = img.astype(np.uint8)
        return screen

    def _describe(self, s: Session, c: Candidate, n: int) -> str:
        names = self.bank(s.video)[0].vocabulary
        classes = ", ".join(f"{_label(names, lb)} {sc:.2f}" for lb, sc in c.classes)
        what = f"replace track #{s.fixing} on frames {c.frames[0]}–{c.frames[1] - 1} (model frames)" \
            if s.fixing is not None else "a new track over the whole video"
        return (f"candidate {s.pick + 1}/{n} (query {c.query}, fit {c.score:.2f}): {what} · classes: {classes} "
                "· n: next, Enter: accept, Esc: cancel")

    def accept(self, s: Session, label: Any = None) -> Screen:
        """Accept the shown candidate (Enter): a new track, or the fixed frames of the track,
        as one undoable step."""
        if not s.clicks:
            return self.review.panel(s, bad("click on the frame first (Add mode)"))
        try:
            cands = self.candidates(s)
            if not cands:
                raise EditError("no candidate to accept")
            c = cands[s.pick % len(cands)]
            masks = self.stored_masks(s, c)
            ed = self.editor.for_user(s.user)
            names = self.bank(s.video)[0].vocabulary
            if s.fixing is not None:
                tid = owned_track(self.store, s, s.fixing)
                n = ed.replace_masks(tid, masks)
                msg = f"track #{tid}: {n} frames replaced from query {c.query} (one Undo reverts it)"
            else:
                name = str(label).strip() if label not in (None, "") else _label(names, c.label)
                alts = [(_label(names, lb), float(sc)) for lb, sc in c.classes[1:]]
                tid = ed.add_track_masks(s.video, name, {f: m for f, m in masks.items() if m},
                                         score=float(c.classes[0][1]), alternatives=alts)
                msg = f"new track #{tid} **{name}** from query {c.query} on {sum(1 for m in masks.values() if m)} frames"
        except (EditError, ValueError, IndexError) as e:
            return self.show(s, bad(str(e)))
        return self.review.panel(s.replace(clicks=(), pick=0, fixing=None, track=tid), ok(msg))


def _label(names: list[str], i: int) -> str:
    return names[i] if 0 <= i < len(names) else f"class {i + 1}"


def _points(raw: Any, video) -> list[tuple[float, float, bool]]:
    """Clicks as (x, y, positive) inside the frame; anything else is a user error."""
    out = [_point(item, video) for item in list(raw or [])[:MAX_CLICKS]]
    if not any(p for *_, p in out):
        raise EditError("click on the object first (a positive click)")
    return out


def _point(item: Any, video) -> tuple[float, float, bool]:
    try:
        x, y, p = item
        x, y = float(x), float(y)
    except (TypeError, ValueError):
        raise EditError(f"a click is (x, y, positive), got {item!r:.40}") from None
    if not (np.isfinite(x) and np.isfinite(y) and 0 <= x < video.width and 0 <= y < video.height):
        raise EditError(f"the click ({x:g}, {y:g}) is outside the {video.width}x{video.height} frame")
    return x, y, bool(p)
