"""Page callbacks for reviewing (scrub, select, review queue) and correcting tracks.

Each correction is one :class:`app.edits.Editor` call (saved and undoable the moment it is made)
followed by a re-render from the store, so what the page shows is always what is saved.
Every function returns ``[st, status, *view]`` unless its docstring says otherwise.
"""
from __future__ import annotations

from typing import Any, Callable

import gradio as gr
import numpy as np

from . import views
from .edits import EditError
from .studio import USER_ERRORS, Studio, as_mask, bad, ok


def _tid(st: dict, track: Any) -> int:
    try:
        return int(track if track not in (None, "") else st.get("track"))
    except (TypeError, ValueError):
        raise EditError("select a track first (track list, timeline or the Track menu)") from None


def _run(s: Studio, st: dict, action: Callable[[], str]) -> tuple:
    """Run one action on ``st`` (callers pass their own copy; ``action`` may update it)."""
    if not st.get("video"):
        return (st, bad("add or open a video first"), *s.view(st))
    try:
        msg = ok(action())
    except USER_ERRORS as e:
        msg = bad(str(e))
    return (st, msg, *s.view(st))


# -- navigation -------------------------------------------------------------------------------
def scrub(s: Studio, st: dict, frame: float) -> tuple:
    """-> [st, frame_img, timeline]: the cheap path used while dragging the slider."""
    st = dict(st)
    v = s.store.video(st["video"]) if st.get("video") else None
    if v is None:
        return st, views.blank(), views.timeline([], 1, 0, set())
    st["frame"] = int(min(max(0, int(frame or 0)), v.num_frames - 1))
    hidden = set(st.get("hidden", []))
    return (st, views.frame_image(s.store, v, st["frame"], hidden, st.get("track")),
            views.timeline(s.store.tracks(v.id), v.num_frames, st["frame"], hidden, st.get("track")))


def step(s: Studio, st: dict, delta: int) -> tuple:
    """-> [st, frame_img, slider, timeline]."""
    st, img, fig = scrub(s, st, int(st.get("frame", 0)) + delta)
    return st, img, gr.Slider(value=st["frame"]), fig


def select_track(s: Studio, st: dict, track: Any) -> tuple:
    """Select a track and jump to its first frame when it is absent from the current one."""
    st = dict(st)

    def act() -> str:
        t = s.store.track(_tid(st, track))
        if t is None:
            raise EditError("that track no longer exists")
        st["track"] = t.id
        if t.frames and st.get("frame", 0) not in t.frames:
            st["frame"] = t.frames[0]
        alts = ", ".join(f"{a} ({sc:.2f})" for a, sc in t.alternatives[:3]) or "none"
        return f"track #{t.id} **{t.label}** (score {t.score:.2f}, {len(t.frames)} frames); alternatives: {alts}"
    return _run(s, st, act)


def select_row(s: Studio, st: dict, table: Any, evt: gr.SelectData) -> tuple:
    """Click in the track table selects that row's track."""
    row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    try:
        tid = int(table.iloc[row, 0]) if hasattr(table, "iloc") else int(table["data"][row][0])
    except (IndexError, KeyError, TypeError, ValueError):
        return (dict(st), bad("could not read that row"), *s.view(st))
    return select_track(s, st, tid)


def next_in_queue(s: Studio, st: dict) -> tuple:
    """The review queue: low score and short tracks first, cycling."""
    v = s.store.video(st["video"]) if st.get("video") else None
    if v is None:
        return (dict(st), bad("add or open a video first"), *s.view(st))
    order = [t.id for t in views.queue_order(s.store.tracks(v.id), v.num_frames)]
    if not order:
        return (dict(st), ok("no tracks to review"), *s.view(st))
    cur = st.get("track")
    nxt = order[(order.index(cur) + 1) % len(order)] if cur in order else order[0]
    return select_track(s, st, nxt)


def toggle_hidden(s: Studio, st: dict, track: Any) -> tuple:
    def act() -> str:
        tid = _tid(st, track)
        hidden = set(st.get("hidden", []))
        hidden ^= {tid}
        st["hidden"] = sorted(hidden)
        return f"track #{tid} {'hidden' if tid in hidden else 'shown'} (this session only)"
    st = dict(st)
    return _run(s, st, act)


def set_reviewed(s: Studio, st: dict, reviewed: bool) -> tuple:
    """-> [st, status, video_dd, *view]."""
    st = dict(st)
    out = _run(s, st, lambda: (s.store.set_reviewed(st["video"], bool(reviewed)),
                               f"video marked {'reviewed' if reviewed else 'not reviewed'}")[1])
    return (out[0], out[1], s.video_choices(out[0]), *out[2:])


# -- corrections ------------------------------------------------------------------------------
def relabel(s: Studio, st: dict, track: Any, label: str) -> tuple:
    def act() -> str:
        tid = _tid(st, track)
        s.editor.relabel(tid, str(label or ""))
        st["track"] = tid
        return f"track #{tid} relabelled to **{str(label).strip()}**"
    st = dict(st)
    return _run(s, st, act)


def delete_track(s: Studio, st: dict, track: Any) -> tuple:
    def act() -> str:
        tid = _tid(st, track)
        s.editor.delete_track(tid)
        return f"track #{tid} deleted (Undo brings it back)"
    st = dict(st)
    return _run(s, st, act)


def delete_span(s: Studio, st: dict, track: Any, start: float, end: float) -> tuple:
    def act() -> str:
        tid = _tid(st, track)
        s.editor.delete_span(tid, int(start), int(end))
        st["track"] = tid
        return f"frames {int(start)}-{int(end)} removed from track #{tid}"
    st = dict(st)
    return _run(s, st, act)


def merge(s: Studio, st: dict, track: Any, other: Any) -> tuple:
    def act() -> str:
        tid = _tid(st, track)
        oid = _tid({}, other) if other not in (None, "") else None
        if oid is None:
            raise EditError("pick the track to merge into the selected one")
        s.editor.merge(tid, oid)
        st["track"] = tid
        return f"track #{oid} merged into #{tid}"
    st = dict(st)
    return _run(s, st, act)


def split(s: Studio, st: dict, track: Any) -> tuple:
    def act() -> str:
        tid = _tid(st, track)
        new = s.editor.split(tid, int(st.get("frame", 0)))
        st["track"] = new
        return f"track #{tid} split at frame {st.get('frame', 0)}: frames from there on are now track #{new}"
    st = dict(st)
    return _run(s, st, act)


def copy_forward(s: Studio, st: dict, track: Any, n: float) -> tuple:
    def act() -> str:
        tid = _tid(st, track)
        k = s.editor.copy_forward(tid, int(st.get("frame", 0)), int(n or 1))
        st["track"] = tid
        return f"mask of track #{tid} copied to the next {k} frames"
    st = dict(st)
    return _run(s, st, act)


def undo(s: Studio, st: dict) -> tuple:
    st = dict(st)
    return _run(s, st, lambda: f"undid: {s.editor.undo(st['video']) or 'nothing to undo'}")


def redo(s: Studio, st: dict) -> tuple:
    st = dict(st)
    return _run(s, st, lambda: f"redid: {s.editor.redo(st['video']) or 'nothing to redo'}")


# -- painting ---------------------------------------------------------------------------------
def load_editor(s: Studio, st: dict, track: Any) -> tuple:
    """-> [status, editor]: the current frame with the selected track's mask as the paint layer."""
    v = s.store.video(st["video"]) if st.get("video") else None
    if v is None:
        return bad("add or open a video first"), gr.ImageEditor()
    frame = views.load_frame(s.store.frame_path(v.id, st.get("frame", 0)))
    layer = np.zeros((v.height, v.width, 4), np.uint8)
    tid = track if track not in (None, "") else st.get("track")
    msg = "no track selected: paint a new object, then 'Save as new track'"
    if tid not in (None, ""):
        counts = s.store.frame_masks(v.id, st.get("frame", 0)).get(int(tid))
        if counts:
            m = views.M.decode(counts, v.height, v.width)
            layer[m] = (*views.track_color(int(tid)), 255)
        msg = f"painting track #{tid} on frame {st.get('frame', 0)}: brush adds, eraser removes, then 'Save mask'"
    return ok(msg), {"background": frame, "layers": [layer], "composite": None}


def _painted(s: Studio, st: dict, value: Any) -> np.ndarray:
    v = s.store.video(st["video"])
    layers = (value or {}).get("layers") if isinstance(value, dict) else None
    if not layers or layers[0] is None:
        raise EditError("nothing to save: click 'Paint this frame' and paint first")
    m = np.zeros((v.height, v.width), bool)
    for layer in layers:
        if layer is not None:
            m |= as_mask(layer, v.height, v.width)
    return m


def save_mask(s: Studio, st: dict, track: Any, value: Any) -> tuple:
    def act() -> str:
        tid = _tid(st, track)
        m = _painted(s, st, value)
        s.editor.set_mask(tid, int(st.get("frame", 0)), m)
        st["track"] = tid
        return f"mask of track #{tid} on frame {st.get('frame', 0)} saved ({int(m.sum())} px)"
    st = dict(st)
    return _run(s, st, act)


def new_track(s: Studio, st: dict, label: str, value: Any) -> tuple:
    def act() -> str:
        m = _painted(s, st, value)
        tid = s.editor.add_track(st["video"], str(label or ""), int(st.get("frame", 0)), m)
        st["track"] = tid
        return f"new track #{tid} **{label}** on frame {st.get('frame', 0)} ({int(m.sum())} px)"
    st = dict(st)
    return _run(s, st, act)
