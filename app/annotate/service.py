"""The Annotate page's services (no Gradio): projects, videos, vocabulary, pre-labelling, export.

Each method takes the tab's :class:`~app.annotate.session.Session` and the page's inputs and
returns a :class:`~app.annotate.session.Screen`; long ones take a ``progress(fraction, text)``
callback. Track review and corrections are :class:`~app.annotate.review.ReviewService`'s.
"""
from __future__ import annotations

import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from ovformer.vocab import load_vocab_preset

from ..hub import ModelHub
from . import export as X
from . import views
from .edits import EditError, Editor
from .media import DISK_FULL, Limits, MediaError, decode_any, disk_full, safe_name
from .prelabel import JobRunner, PrelabelSettings
from .review import ReviewService
from .session import Choices, Screen, Session, bad, ok
from .store import Store
from .trash import Trash
from .vocab import PRESETS, SAMPLE_VOCAB, VocabError, parse_vocab, vocab_text  # noqa: F401 (the UI reads the first two here)
from .ytvis_import import ImportError_, detect_layout, read_json, tracks_from_json

USER_ERRORS = (MediaError, ImportError_, EditError, VocabError)
Progress = Callable[[float, str], None]
MAX_PROJECT_NAME = 100


def _no_progress(fraction: float, text: str) -> None:
    pass


def _full(e: BaseException) -> bool:
    """A write refused for want of space (the file system's or SQLite's word for it)."""
    return disk_full(e) or (isinstance(e, sqlite3.OperationalError) and "full" in str(e).lower())


@dataclass
class Config:
    """What :func:`app.main.create_app` parsed."""

    home: Path
    datasets: Path
    limits: Limits = field(default_factory=Limits)
    sample_video: Path | None = None
    users: bool = False  # accounts required (``ovformer app --users``)

    def exports(self, user: str) -> Path:
        """Where ``user``'s exports go (each user has their own folder; "" is the local user)."""
        return self.home / "exports" if not user else self.home / "users" / user / "exports"

    def datasets_of(self, user: str) -> Path:
        """Where ``user``'s dataset exports go (what their Fine-tune tab lists)."""
        return self.datasets if not user else self.datasets / "users" / user


class AnnotateService:
    """Everything on the Annotate page except track review (shared by all sessions)."""

    def __init__(self, cfg: Config, store: Store, editor: Editor, hub: ModelHub, review: ReviewService,
                 trash: Trash | None = None) -> None:
        self.cfg, self.store, self.editor, self.hub, self.review = cfg, store, editor, hub, review
        self.trash = trash or Trash(store)  # pending deletes (app.annotate.deletes)
        self.runner = JobRunner(store, hub)

    def enter(self, s: Session, user: str) -> Session:
        """The session of an event by ``user`` (from the request, never from the client): another
        user's session, or a project or video that is not (or no longer) theirs, starts afresh.
        Without ``--users`` everyone is the one local user "" (a shared ``--auth`` login too)."""
        user = user if self.cfg.users else ""
        if s.user != user:
            return Session(user=user)
        if s.project is not None and not self.store.owns_project(user, s.project):
            return Session(user=user)
        if s.video is not None:
            v = self.store.video(s.video)
            if v is None or v.project_id != s.project:
                return s.with_video(None)
        return s

    # -- what the dropdowns offer -------------------------------------------------------------------
    def project_choices(self, s: Session) -> Choices:
        return Choices([(n, i) for i, n in self.store.projects(s.user)], s.project)

    def video_choices(self, s: Session) -> Choices:
        vids = self.store.videos(s.project) if s.project else []
        return Choices([(f"{v.name}{' ✔' if v.reviewed else ''}", v.id) for v in vids], s.video)

    def canvas(self, s: Session) -> tuple[int, int]:
        """The paint canvas of the open video (notes, pitfall 1: it must reach the editor before
        a value does)."""
        v = self.store.video(s.video) if s.video else None
        return (v.width, v.height) if v else (640, 360)

    def _ensure_project(self, s: Session) -> Session:
        if s.project:
            return s
        return s.replace(project=self.store.create_project(time.strftime("project-%Y%m%d-%H%M%S"), owner=s.user))

    # -- projects, videos, vocabulary -----------------------------------------------------------------
    def on_load(self, s: Session) -> Screen:
        """A new page opens the latest project, so work is on screen again after a restart."""
        projects = self.store.projects(s.user)
        if not projects or s.project:
            return self.review.panel(s, "Ready. Click **▶ Try the sample** or add a video.",
                                     projects=self.project_choices(s), videos=self.video_choices(s))
        return self.open_project(s, projects[-1][0])

    def open_project(self, s: Session, project: Any) -> Screen:
        try:
            pid = int(project)
        except (TypeError, ValueError, OverflowError):
            return self.review.panel(s, bad("pick a project"), videos=self.video_choices(s))
        if not self.store.owns_project(s.user, pid):  # another user's id is as unknown as a wrong one
            return self.review.panel(s, bad(f"there is no project {pid} of yours"), videos=self.video_choices(s))
        vids = self.store.videos(pid)
        s = Session(project=pid, user=s.user).with_video(vids[-1].id if vids else None)
        return self.review.panel(s, ok(f"project **{self.store.project_name(pid)}** opened ({len(vids)} videos)"),
                                 projects=self.project_choices(s), videos=self.video_choices(s),
                                 vocab=vocab_text(self.store.vocabulary(pid)), canvas=self.canvas(s))

    def create_project(self, s: Session, name: str, vocab: str) -> Screen:
        name = (name or "").strip() or time.strftime("project-%Y%m%d-%H%M%S")
        if len(name) > MAX_PROJECT_NAME:
            return self.review.panel(s, bad(f"a project name may have at most {MAX_PROJECT_NAME} characters"))
        try:
            names = parse_vocab(vocab)
        except VocabError as e:
            return self.review.panel(s, bad(str(e)))
        return self.open_project(s, self.store.create_project(name, names, owner=s.user))

    def open_video(self, s: Session, video: Any) -> Screen:
        try:
            v = self.store.video(int(video)) if video not in (None, "") else None
        except (TypeError, ValueError, OverflowError):
            v = None
        if v is None or v.project_id != s.project:
            return self.review.panel(s, bad("pick a video of this project"))
        s = s.with_video(v.id)
        return self.review.panel(s, ok(f"video **{v.name}** opened"), canvas=self.canvas(s))

    def add_video(self, s: Session, upload: str | None, json_file: str | None, fps: float | None, vocab: str,
                  progress: Progress = _no_progress) -> Screen:
        """Import a video or a zip of frames (+ optional YouTube-VIS json as pre-labels)."""
        if not upload:
            return self.review.panel(s, bad("choose a video file or a zip of frames first"),
                                     projects=self.project_choices(s), videos=self.video_choices(s))
        try:
            typed = parse_vocab(vocab)  # over the limits: refused before anything is decoded
        except VocabError as e:
            return self.review.panel(s, bad(str(e)) + " (nothing was changed)",
                                     projects=self.project_choices(s), videos=self.video_choices(s))
        s = self._ensure_project(s)
        try:
            staged = self.store.reserve_video_dir()
        except OSError as e:
            if not disk_full(e):
                raise
            return self.review.panel(s, bad(DISK_FULL), projects=self.project_choices(s), videos=self.video_choices(s))
        try:
            data = read_json(json_file, self.cfg.limits.max_json_mb) if json_file else None
            if data is not None:
                detect_layout(data)  # reject a non-YTVIS json before decoding anything
            progress(0.0, "decoding frames")
            dec = decode_any(upload, staged, None if data is not None else (fps or None), self.cfg.limits,
                             lambda f: progress(0.9 * f, "decoding frames"))
            names = typed or self.store.vocabulary(s.project)
            tracks, note = (tracks_from_json(data, safe_name(upload), dec.num_frames, dec.height, dec.width, names)
                            if data is not None else ([], ""))
            vid = self.store.add_video(s.project, safe_name(upload), staged, dec.width, dec.height,
                                       dec.num_frames, dec.fps)
        except (*USER_ERRORS, ValueError, KeyError, TypeError, OverflowError, OSError, sqlite3.OperationalError) as e:
            shutil.rmtree(staged, ignore_errors=True)  # a malformed json entry, a full disk too
            if isinstance(e, (OSError, sqlite3.OperationalError)) and not _full(e):
                raise
            what = "" if isinstance(e, USER_ERRORS) else "could not import this input: "
            msg = DISK_FULL if _full(e) else f"{what}{e} (nothing was changed)"
            return self.review.panel(s, bad(msg), projects=self.project_choices(s), videos=self.video_choices(s))
        if tracks:
            try:
                self.editor.for_user(s.user).replace_tracks(vid, tracks, kind="import")
            except sqlite3.OperationalError as e:
                if not _full(e):
                    raise
                note = "the disk filled up while saving the imported tracks: the video was added without them"
        if typed and not self.store.vocabulary(s.project):  # the typed vocabulary is kept with the project
            self.store.set_vocabulary(s.project, typed)
        s = s.with_video(vid)
        msg = ok(f"added **{self.store.video(vid).name}**: {dec.num_frames} frames at {dec.fps:g} fps, "
                 f"{dec.width}x{dec.height}" + (f"; {note}" if note else "")
                 + (f" ({dec.note})" if dec.note else ""))
        return self.review.panel(s, msg, projects=self.project_choices(s), videos=self.video_choices(s),
                                 canvas=self.canvas(s))

    def add_sample(self, s: Session, vocab: str, progress: Progress = _no_progress) -> Screen:
        """The bundled sample clip at 5 fps, with a vocabulary typed in if there is none."""
        if self.cfg.sample_video is None:
            return Screen(session=s, status=bad("no sample video is available"))
        text = vocab if (vocab or "").strip() else SAMPLE_VOCAB
        if not s.project:
            s = s.replace(project=self.store.create_project("sample", [], owner=s.user))
        out = self.add_video(s, str(self.cfg.sample_video), None, 5, text, progress)
        out.vocab = text
        return out

    def save_vocab(self, s: Session, text: str) -> Screen:
        try:
            names = parse_vocab(text)
        except VocabError as e:
            return Screen(session=s, status=bad(str(e)))
        if not names:
            return Screen(session=s, status=bad("the vocabulary is empty: type class names separated by "
                                                "commas or new lines"))
        s = self._ensure_project(s)
        self.store.set_vocabulary(s.project, names)
        return Screen(session=s, status=ok(f"vocabulary saved: {len(names)} classes"), vocab=vocab_text(names),
                      label_dd=Choices(self.review.label_choices(s)))

    def use_preset(self, s: Session, preset: str, text: str) -> Screen:
        """Add a preset's classes (spelled as the data set) to the typed ones."""
        try:
            names = [c.name for c in load_vocab_preset(PRESETS.get(preset, preset))]
        except (OSError, KeyError, ValueError) as e:
            return Screen(session=s, status=bad(f"preset {preset!r} is not available ({e})"))
        return self.save_vocab(s, vocab_text(list(dict.fromkeys(parse_vocab(text) + names))))

    def set_reviewed(self, s: Session, reviewed: bool) -> Screen:
        out = self.review.set_reviewed(s, reviewed)
        out.videos = self.video_choices(out.session)
        return out

    # -- pre-labelling ------------------------------------------------------------------------------
    def prelabel(self, s: Session, vocab: str, settings: PrelabelSettings, progress: Progress = _no_progress,
                 poll_s: float = 0.25) -> Iterator[Screen]:
        """Start the background job, stream progress and previews, then the result."""
        try:
            names = parse_vocab(vocab)  # the bounds hold before the model lock is asked for
        except VocabError as e:
            yield Screen(session=s, status=bad(str(e)))
            return
        if not s.video:
            yield Screen(session=s, status=bad("add a video first (upload one, or click the sample)"))
            return
        if not names:
            yield Screen(session=s, status=bad("the vocabulary is empty: type class names (e.g. `person, bicycle`)"
                                               " or pick a preset"))
            return
        self.store.set_vocabulary(s.project, names)
        job = self.runner.start(s.video, names, settings)
        seen = -1
        while not job.finished:
            eta = f", ETA {job.eta_s:.0f} s" if job.eta_s is not None else ""
            progress(job.frames_done / max(1, job.total), f"{job.frames_done}/{job.total} frames{eta}")
            out = Screen(status=f"Pre-labelling {job.frames_done}/{job.total} frames{eta} — {job.message}")
            if job.preview_version != seen and job.preview_frame is not None:
                seen = job.preview_version
                rgb = views.load_frame(self.store.frame_path(s.video, job.preview_frame))
                out.frame_img = views.overlay_frame(rgb, [(q, f"{lb} {sc:.2f} (provisional)", m)
                                                          for q, lb, sc, m in job.preview if m.shape == rgb.shape[:2]])
                out.banner = self.hub.banner()
            yield out
            time.sleep(poll_s)
        status = ok(job.message) if job.state == "done" else bad(job.message)
        yield self.review.panel(s.replace(track=None), status, banner=self.hub.banner(), canvas=self.canvas(s))

    def cancel(self, s: Session) -> Screen:
        job = self.runner.jobs.get(s.video)
        if job is None or job.finished:
            return Screen(status="Nothing is running.")
        job.cancel.set()
        return Screen(status="Cancelling…")

    # -- export -------------------------------------------------------------------------------------
    def _exporting(self, s: Session, what: Callable[[], Screen]) -> Screen:
        """Run an export; a full disk is a message (the stored project is only read, never changed)."""
        try:
            return what()
        except (OSError, sqlite3.OperationalError) as e:
            if not _full(e):
                raise
            return Screen(status=bad("the server's disk is full: the export was not written (your project is "
                                     "unchanged; free some space, e.g. delete old exports, then try again)"))

    def export_dataset(self, s: Session, progress: Progress = _no_progress) -> Screen:
        """The dataset folder for ``ovformer train`` and its zip."""
        if not s.project:
            return Screen(status=bad("nothing to export yet"))

        def run() -> Screen:
            progress(0.05, "writing the dataset")
            root = X.export_dataset(self.store, s.project, self.cfg.datasets_of(s.user),
                                    lambda f, d: progress(0.05 + 0.8 * f, d))
            progress(0.9, "zipping")
            z = X.zip_folder(root, X.unique_path(self.cfg.exports(s.user) / f"{root.name}-{X.stamp()}.zip"))
            n = len(X.project_gt(self.store, s.project).annotations or [])
            return Screen(status=ok(f"dataset with {n} tracks written to `{root}` (train with `ovformer train "
                                    f"--data {root}`) and zipped for download"), export_file=str(z))
        return self._exporting(s, run)

    def export_results(self, s: Session) -> Screen:
        if not s.project:
            return Screen(status=bad("nothing to export yet"))

        def run() -> Screen:
            name = X.export_name(s.project, self.store.project_name(s.project))
            p = X.write_results(self.store, s.project,
                                X.unique_path(self.cfg.exports(s.user) / f"{name}-results-{X.stamp()}.json"))
            return Screen(status=ok(f"results layout (with scores) written to `{p.name}`"), export_file=str(p))
        return self._exporting(s, run)

    def export_video(self, s: Session, progress: Progress = _no_progress) -> Screen:
        if not s.video:
            return Screen(status=bad("no video selected"))

        def run() -> Screen:
            v = self.store.video(s.video)
            progress(0.2, f"rendering {v.num_frames} frames")
            p = X.render_video(self.store, v.id, X.unique_path(
                self.cfg.exports(s.user) / f"{s.project}-{v.name}-overlay-{X.stamp()}.mp4"), set(s.hidden))
            return Screen(status=ok(f"overlay video rendered: `{p.name}`"), export_file=str(p), player=str(p))
        return self._exporting(s, run)

    # -- what the user may delete (app.annotate.deletes; each asks for a confirmation first) ----------
    def exports_of(self, s: Session) -> list[str]:
        d = self.cfg.exports(s.user)
        return sorted((p.name for p in d.iterdir() if p.is_file()), reverse=True) if d.is_dir() else []

    def datasets_of(self, s: Session) -> list[str]:
        from ..finetune.data import list_datasets
        return list_datasets(self.cfg.datasets_of(s.user))
