"""Deleting projects, videos and exports from the Annotate page, and undoing it.

Each delete asks for the page's confirmation first (the **I am sure** box), then goes to the
trash under the user and the page that asked (:mod:`app.annotate.trash`): out of sight at once,
restorable by the page's **↶ Undo delete** button until the page is left. The button names what
its next click restores (``Screen.undo_delete``; "" hides it).
"""
from __future__ import annotations

from typing import Any, Iterable

from .service import AnnotateService
from .session import Choices, Screen, Session, bad, ok
from .trash import TrashError
from .vocab import vocab_text

KINDS = ("project", "video", "export", "dataset")  # what this page deletes (runs: the Fine-tune tab)
UNDO_HINT = " (**↶ Undo delete** brings it back until you leave this page)"


class DeleteService:
    """The Annotate page's deletes and their undo; ``page`` is the Gradio session hash."""

    def __init__(self, annotate: AnnotateService) -> None:
        self.svc, self.store, self.trash, self.review = annotate, annotate.store, annotate.trash, annotate.review

    def undo_label(self, s: Session, page: str) -> str:
        """The Undo button's text for the page's newest pending delete ("" when none)."""
        return self.trash.undo_label(s.user, page, KINDS)

    def _running(self, video_ids: Iterable[int]) -> bool:
        """Whether a pre-label writes into one of these videos (its result would be lost)."""
        return any((j := self.svc.runner.jobs.get(v)) is not None and not j.finished for v in video_ids)

    def delete_project(self, s: Session, confirm: bool, page: str = "") -> Screen:
        """Hide the open project with its videos (after the confirmation)."""
        if not s.project:
            return self.review.panel(s, bad("open the project to delete first"))
        name = self.store.project_name(s.project)
        if not confirm:
            return Screen(session=s, status=bad(f"tick **I am sure** to delete project **{name}** with all its "
                                                "videos and tracks"))
        if self._running(v.id for v in self.store.videos(s.project)):
            return Screen(session=s, status=bad(f"a pre-label is running in project **{name}**: cancel it first"))
        try:
            self.trash.hide_row(s.user, page, "project", s.project, name)
        except TrashError as e:  # deleted from another tab a moment ago
            return Screen(session=s, status=bad(str(e)))
        s = Session(user=s.user)
        return self.review.panel(s, ok(f"project **{name}** deleted" + UNDO_HINT),
                                 projects=self.svc.project_choices(s), videos=self.svc.video_choices(s), vocab="",
                                 undo_delete=self.undo_label(s, page))

    def delete_video(self, s: Session, confirm: bool, page: str = "") -> Screen:
        """Hide the open video with its tracks (after the confirmation)."""
        if not s.video:
            return self.review.panel(s, bad("open the video to delete first"))
        v = self.store.video(s.video)
        if not confirm:
            return Screen(session=s, status=bad(f"tick **I am sure** to delete video **{v.name}** and its tracks"))
        if self._running([v.id]):
            return Screen(session=s, status=bad(f"a pre-label is running on **{v.name}**: cancel it first"))
        try:
            self.trash.hide_row(s.user, page, "video", v.id, v.name)
        except TrashError as e:
            return Screen(session=s, status=bad(str(e)))
        s = s.with_video(None)
        return self.review.panel(s, ok(f"video **{v.name}** deleted" + UNDO_HINT), videos=self.svc.video_choices(s),
                                 undo_delete=self.undo_label(s, page))

    def delete_export(self, s: Session, name: Any, confirm: bool, page: str = "") -> Screen:
        """Move one of the user's export files, or a dataset folder (by the name listed), to the trash."""
        files = self.svc.exports_of(s)
        if name not in files and name not in self.svc.datasets_of(s):  # only listed names: no path from the page
            return Screen(status=bad("pick one of your exports"))
        if not confirm:
            return Screen(status=bad(f"tick **I am sure** to delete **{name}**"))
        kind, path = (("export", self.svc.cfg.exports(s.user) / name) if name in files
                      else ("dataset", self.svc.cfg.datasets_of(s.user) / name))
        try:
            self.trash.move_path(s.user, page, kind, path)
        except OSError as e:
            return Screen(status=bad(f"could not delete **{name}** ({e}); nothing was deleted"))
        return Screen(status=ok(f"**{name}** deleted" + UNDO_HINT), undo_delete=self.undo_label(s, page))

    def undo(self, s: Session, page: str = "") -> Screen:
        """Restore the page's newest pending delete and show it again."""
        try:
            e, name = self.trash.restore(s.user, page, KINDS)
        except TrashError as err:
            return Screen(session=s, status=bad(str(err)), undo_delete=self.undo_label(s, page))
        except OSError as err:  # the folder could not be moved back: it stays in the trash
            return Screen(session=s, status=bad(f"could not restore it ({err}); try again"),
                          undo_delete=self.undo_label(s, page))
        msg = ok(e.restored(name))
        if e.kind == "project":
            out = self.svc.open_project(s, int(e.target))
            out.status = msg
        elif e.kind == "video" and (v := self.store.video(int(e.target))) is not None:
            s = (s if s.project == v.project_id else Session(project=v.project_id, user=s.user)).with_video(v.id)
            out = self.review.panel(s, msg, projects=self.svc.project_choices(s), videos=self.svc.video_choices(s),
                                    vocab=vocab_text(self.store.vocabulary(v.project_id)), canvas=self.svc.canvas(s))
        else:  # an export, or a video whose project another page of the user deleted meanwhile
            if e.kind == "video":
                msg += ", but its project is deleted too (undo that in the page that deleted it)"
            names = self.svc.exports_of(s) + self.svc.datasets_of(s)
            out = Screen(session=s, status=msg, exports=Choices(names, name if name in names else None))
        out.undo_delete = self.undo_label(out.session or s, page)
        return out
