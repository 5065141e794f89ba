"""Reviewing and correcting tracks (no Gradio): the review panel, navigation, the edit buttons.

Every correction is one :class:`~app.annotate.edits.Editor` call, saved and undoable the moment
it is made, followed by a re-render of the panel from the store, so what the page shows is
always what is saved. All edit buttons go through :meth:`ReviewService.edit` with an entry of
:data:`EDITS`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from PIL import Image

from ovformer.render import track_color

from . import views
from .edits import EditError, Editor
from .session import Choices, Screen, Session, Slider, bad, ok
from .store import Store, counts_mask


@dataclass
class Edit:
    """What an edit button did: the message, and the track to select afterwards (None: keep)."""

    message: str
    track: int | None = None


def track_id(session: Session, track: Any) -> int:
    """The track a button means: the one picked in its menu, else the selected one."""
    try:
        return int(track if track not in (None, "") else session.track)
    except (TypeError, ValueError, OverflowError):
        raise EditError("select a track first (track list, timeline or the Track menu)") from None


def owned_track(store: Store, session: Session, track: Any) -> int:
    """:func:`track_id`, which must be a track of the session's open video: an id typed into a
    box never reaches another video's (or another user's) track."""
    tid = track_id(session, track)
    rows = store.q("SELECT video_id FROM tracks WHERE id=?", (tid,))
    if not rows or session.video is None or rows[0]["video_id"] != session.video:
        raise EditError(f"track #{tid} is not a track of this video")
    return tid


def as_mask(layer: Any, height: int, width: int) -> np.ndarray:
    """A paint layer (RGBA: alpha > 0 is inside) -> bool (H, W) mask, resized if the canvas differs."""
    a = np.asarray(layer)
    m = a[..., 3] > 0 if a.ndim == 3 and a.shape[2] == 4 else (a.reshape(a.shape[0], a.shape[1], -1).max(-1) > 0)
    if m.shape != (height, width):
        m = np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize((width, height), Image.NEAREST)) > 127
    return m


def painted(value: Any, height: int, width: int) -> np.ndarray:
    """The union of the paint editor's layers as a bool (H, W) mask."""
    layers = (value or {}).get("layers") if isinstance(value, dict) else None
    if not layers or layers[0] is None:
        raise EditError("nothing to save: click 'Paint this frame' and paint first")
    m = np.zeros((height, width), bool)
    for layer in layers:
        if layer is not None:
            m |= as_mask(layer, height, width)
    return m


# -- the edit buttons: (editor, session, *inputs) -> Edit -------------------------------------------
def _relabel(ed: Editor, s: Session, track: Any, label: Any) -> Edit:
    tid = track_id(s, track)
    ed.relabel(tid, str(label or ""))
    return Edit(f"track #{tid} relabelled to **{str(label).strip()}**", tid)


def _delete_track(ed: Editor, s: Session, track: Any) -> Edit:
    tid = track_id(s, track)
    ed.delete_track(tid)
    return Edit(f"track #{tid} deleted (Undo brings it back)")


def _delete_span(ed: Editor, s: Session, track: Any, start: Any, end: Any) -> Edit:
    tid = track_id(s, track)
    lo, hi = ed.delete_span(tid, start, end)
    return Edit(f"frames {lo}-{hi} removed from track #{tid}", tid)


def _merge(ed: Editor, s: Session, track: Any, other: Any) -> Edit:
    tid = track_id(s, track)
    if other in (None, ""):
        raise EditError("pick the track to merge into the selected one")
    oid = track_id(Session(), other)
    ed.merge(tid, oid)
    return Edit(f"track #{oid} merged into #{tid}", tid)


def _split(ed: Editor, s: Session, track: Any) -> Edit:
    tid = track_id(s, track)
    new = ed.split(tid, s.frame)
    return Edit(f"track #{tid} split at frame {s.frame}: frames from there on are now track #{new}", new)


def _copy_forward(ed: Editor, s: Session, track: Any, n: Any) -> Edit:
    tid = track_id(s, track)
    k = ed.copy_forward(tid, s.frame, n or 1)
    return Edit(f"mask of track #{tid} copied to the next {k} frames", tid)


def _undo(ed: Editor, s: Session) -> Edit:
    return Edit(f"undid: {ed.undo(s.video) or 'nothing to undo'}")


def _redo(ed: Editor, s: Session) -> Edit:
    return Edit(f"redid: {ed.redo(s.video) or 'nothing to redo'}")


def _save_mask(ed: Editor, s: Session, track: Any, value: Any) -> Edit:
    tid = track_id(s, track)
    v = ed.store.video(s.video)
    m = painted(value, v.height, v.width)
    ed.set_mask(tid, s.frame, m)
    return Edit(f"mask of track #{tid} on frame {s.frame} saved ({int(m.sum())} px)", tid)


def _new_track(ed: Editor, s: Session, label: Any, value: Any) -> Edit:
    v = ed.store.video(s.video)
    m = painted(value, v.height, v.width)
    tid = ed.add_track(s.video, str(label or ""), s.frame, m)
    return Edit(f"new track #{tid} **{label}** on frame {s.frame} ({int(m.sum())} px)", tid)


#: Every edit button of the page by its API name; each is one saved, undoable step.
EDITS: dict[str, Callable[..., Edit]] = {
    "relabel": _relabel, "delete_track": _delete_track, "delete_span": _delete_span, "merge": _merge,
    "split": _split, "copy_forward": _copy_forward, "undo": _undo, "redo": _redo,
    "save_mask": _save_mask, "new_track": _new_track,
}


class ReviewService:
    """The review panel of one video and everything that changes it."""

    def __init__(self, store: Store, editor: Editor) -> None:
        self.store, self.editor = store, editor

    # -- the panel ----------------------------------------------------------------------------------
    def label_choices(self, s: Session) -> list[str]:
        """Relabel choices: the selected track's alternatives first, then the vocabulary."""
        t = self.store.track(s.track) if s.track else None
        names = [a for a, _ in t.alternatives] if t else []
        if s.project:
            names += self.store.vocabulary(s.project)
        return list(dict.fromkeys(names))

    def panel(self, s: Session, status: str | None = None, **extra: Any) -> Screen:
        """The whole review panel of the open video (with a valid frame and selection)."""
        v = self.store.video(s.video) if s.video else None
        if v is None:
            return Screen(session=s, status=status, frame_img=views.blank(), slider=Slider(1, 0),
                          timeline=views.timeline([], 1, 0, set()), tracks=views.track_table([], 1, set()),
                          track_dd=Choices([]), merge_dd=Choices([]), label_dd=Choices([]), reviewed=False,
                          info="No video selected.", **extra)
        tracks = self.store.tracks(v.id)
        s = s.replace(track=s.track if s.track in {t.id for t in tracks} else None,
                      frame=int(min(max(0, s.frame), v.num_frames - 1)))
        choices = views.track_choices(tracks, v.num_frames)
        undo, redo = self.editor.for_user(s.user).history(v.id)
        info = (f"**{v.name}**: {v.num_frames} frames, {v.width}x{v.height}, {v.fps:g} fps · "
                f"{len(tracks)} tracks · undo {undo} / redo {redo}"
                + (f" · pre-labelled with `{v.weights_label}`" if v.weights_label else "")
                + (" · ✔ reviewed" if v.reviewed else ""))
        return Screen(session=s, status=status,
                      frame_img=views.frame_image(self.store, v, s.frame, set(s.hidden), s.track),
                      slider=Slider(max(1, v.num_frames - 1), s.frame),
                      timeline=views.timeline(tracks, v.num_frames, s.frame, set(s.hidden), s.track),
                      tracks=views.track_table(tracks, v.num_frames, set(s.hidden)),
                      track_dd=Choices(choices, s.track),
                      merge_dd=Choices([c for c in choices if c[1] != s.track]),
                      label_dd=Choices(self.label_choices(s)), reviewed=v.reviewed, info=info, **extra)

    def _act(self, s: Session, action: Callable[[], tuple[Session, str]]) -> Screen:
        """Run one action on the open video and re-render; a user error changes nothing."""
        if not s.video:
            return self.panel(s, bad("add or open a video first"))
        try:
            s, msg = action()
            return self.panel(s, ok(msg))
        except EditError as e:
            return self.panel(s, bad(str(e)))

    # -- navigation ----------------------------------------------------------------------------------
    def scrub(self, s: Session, frame: Any) -> Screen:
        """The cheap path used while dragging the slider: the frame and the timeline only."""
        v = self.store.video(s.video) if s.video else None
        if v is None:
            return Screen(session=s, frame_img=views.blank(), timeline=views.timeline([], 1, 0, set()))
        s = s.replace(frame=int(min(max(0, int(frame or 0)), v.num_frames - 1)))
        return Screen(session=s, frame_img=views.frame_image(self.store, v, s.frame, set(s.hidden), s.track),
                      timeline=views.timeline(self.store.tracks(v.id), v.num_frames, s.frame, set(s.hidden), s.track))

    def step(self, s: Session, delta: int) -> Screen:
        out = self.scrub(s, s.frame + delta)
        out.slider = Slider(max(1, (self.store.video(s.video).num_frames - 1) if s.video else 1), out.session.frame)
        return out

    def select_track(self, s: Session, track: Any) -> Screen:
        """Select a track and jump to its first frame when it is absent from the current one."""
        def act() -> tuple[Session, str]:
            t = self.store.track(owned_track(self.store, s, track))
            if t is None:
                raise EditError("that track no longer exists")
            frame = t.frames[0] if t.frames and s.frame not in t.frames else s.frame
            alts = ", ".join(f"{a} ({sc:.2f})" for a, sc in t.alternatives[:3]) or "none"
            return (s.replace(track=t.id, frame=frame),
                    f"track #{t.id} **{t.label}** (score {t.score:.2f}, {len(t.frames)} frames); alternatives: {alts}")
        return self._act(s, act)

    def select_row(self, s: Session, table: Any, row: int) -> Screen:
        """A click in the track table selects that row's track."""
        try:
            tid = int(table.iloc[row, 0]) if hasattr(table, "iloc") else int(table["data"][row][0])
        except (IndexError, KeyError, TypeError, ValueError):
            return self.panel(s, bad("could not read that row"))
        return self.select_track(s, tid)

    def next_in_queue(self, s: Session) -> Screen:
        """The review queue: low score and short tracks first, cycling."""
        v = self.store.video(s.video) if s.video else None
        if v is None:
            return self.panel(s, bad("add or open a video first"))
        order = [t.id for t in views.queue_order(self.store.tracks(v.id), v.num_frames)]
        if not order:
            return self.panel(s, ok("no tracks to review"))
        nxt = order[(order.index(s.track) + 1) % len(order)] if s.track in order else order[0]
        return self.select_track(s, nxt)

    def toggle_hidden(self, s: Session, track: Any) -> Screen:
        def act() -> tuple[Session, str]:
            tid = owned_track(self.store, s, track)
            hidden = s.hidden ^ {tid}
            return s.replace(hidden=hidden), f"track #{tid} {'hidden' if tid in hidden else 'shown'} (this session only)"
        return self._act(s, act)

    def set_reviewed(self, s: Session, reviewed: bool) -> Screen:
        def act() -> tuple[Session, str]:
            self.store.set_reviewed(s.video, bool(reviewed))
            return s, f"video marked {'reviewed' if reviewed else 'not reviewed'}"
        return self._act(s, act)

    # -- corrections ------------------------------------------------------------------------------
    def edit(self, name: str, s: Session, *inputs: Any) -> Screen:
        """Run the edit button ``name`` of :data:`EDITS` with the page's inputs (as the session's
        user: their undo history; track ids only of the open video)."""
        def act() -> tuple[Session, str]:
            ids = {"relabel": [0], "delete_track": [0], "delete_span": [0], "merge": [0, 1], "split": [0],
                   "copy_forward": [0], "save_mask": [0]}.get(name, [])
            for k in ids:
                if k == 0 or inputs[k] not in (None, ""):
                    owned_track(self.store, s if k == 0 else Session(video=s.video), inputs[k])
            done = EDITS[name](self.editor.for_user(s.user), s, *inputs)
            return (s if done.track is None else s.replace(track=done.track)), done.message
        return self._act(s, act)

    def load_editor(self, s: Session, track: Any) -> Screen:
        """The current frame with the selected track's mask as the paint layer."""
        v = self.store.video(s.video) if s.video else None
        if v is None:
            return Screen(status=bad("add or open a video first"))
        layer = np.zeros((v.height, v.width, 4), np.uint8)
        tid = track if track not in (None, "") else s.track
        msg = "no track selected: paint a new object, then 'Save as new track'"
        if tid not in (None, ""):
            try:
                tid = owned_track(self.store, s, tid)
            except EditError as e:
                return Screen(status=bad(str(e)))
            counts = self.store.frame_masks(v.id, s.frame).get(tid)
            if counts:
                layer[counts_mask(counts, v.height, v.width)] = (*track_color(int(tid)), 255)
            msg = f"painting track #{tid} on frame {s.frame}: brush adds, eraser removes, then 'Save mask'"
        frame = views.load_frame(self.store.frame_path(v.id, s.frame))
        return Screen(status=ok(msg), editor={"background": frame, "layers": [layer], "composite": None})
