"""What one browser tab has open, and what a callback asks the page to show.

:class:`Session` is per tab (a ``gr.State``): two tabs never see each other's selection;
everything a person *does* is committed to the store at once. It is frozen: a service returns a
new one (``session.replace(...)``) instead of copying and mutating a dict.

:class:`Screen` is a service's answer, one field per thing the Annotate page shows; ``None``
leaves that thing as it is. The UI renders it in one place (:func:`app.annotate.ui.render`), so a
new component is a new field here and one line there.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Session:
    """The open project, video, frame and track of one tab, and the tracks it hides.

    ``user`` is who is logged in ("" in the single-user local mode); the page sets it from the
    request on every event (:meth:`app.annotate.service.AnnotateService.enter`), never from
    what a client sends."""

    project: int | None = None
    video: int | None = None
    frame: int = 0
    track: int | None = None
    hidden: frozenset[int] = frozenset()
    user: str = ""
    # Add / fix by clicking (:mod:`app.annotate.clicks`): (x, y, positive) clicks on
    # ``click_frame``, the candidate shown, the track being fixed (None: adding)
    clicks: tuple[tuple[float, float, bool], ...] = ()
    click_frame: int = 0
    pick: int = 0
    fixing: int | None = None

    def replace(self, **changes: Any) -> Session:
        return dataclasses.replace(self, **changes)

    def with_video(self, video: int | None) -> Session:
        """The same project with ``video`` open at frame 0, nothing selected or hidden."""
        return self.replace(video=video, frame=0, track=None, hidden=frozenset(), clicks=(), pick=0,
                            fixing=None)


@dataclass(frozen=True)
class Choices:
    """A dropdown's options ((label, value) pairs or plain values) and its selection."""

    choices: list[Any]
    value: Any = None


@dataclass(frozen=True)
class Slider:
    """The frame slider: its last frame and the current one."""

    maximum: int
    value: int


@dataclass
class Screen:
    """What the Annotate page should show after a call; ``None`` fields are left unchanged."""

    session: Session | None = None
    status: str | None = None
    banner: str | None = None
    projects: Choices | None = None        # project dropdown
    videos: Choices | None = None          # video dropdown
    vocab: str | None = None               # vocabulary text box
    canvas: tuple[int, int] | None = None  # reset the paint editor to this (width, height)
    editor: dict | None = None             # the paint editor's value (background + layer)
    frame_img: np.ndarray | None = None
    slider: Slider | None = None
    timeline: Any = None                   # plotly Figure
    tracks: Any = None                     # pandas DataFrame
    track_dd: Choices | None = None
    merge_dd: Choices | None = None
    label_dd: Choices | None = None
    reviewed: bool | None = None
    info: str | None = None
    export_file: str | None = None
    player: str | None = None
    exports: Choices | None = None         # the user's exports (to delete one)
    undo_delete: str | None = None         # the Undo delete button's text ("" hides it)


#: The review panel: the fields :meth:`app.annotate.review.ReviewService.panel` fills.
PANEL = ("frame_img", "slider", "timeline", "tracks", "track_dd", "merge_dd", "label_dd", "reviewed", "info")


def ok(msg: str) -> str:
    return f"✔ {msg}"


def bad(msg: str) -> str:
    return f"✖ {msg}"
