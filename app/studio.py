"""Page callbacks for projects, videos, vocabulary, pre-labelling and export.

Per-session UI state (current project/video/frame/track, hidden tracks) lives in a ``gr.State``
dict, so two browser sessions never see each other's selection or unsaved paint; everything the
user *does* is committed to the store at once. Track edits are in :mod:`app.edit_callbacks`.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from . import export as X
from . import views
from .edits import EditError, Editor
from .finetune import FineTuner
from .media import Limits, MediaError, decode_any, safe_name
from .prelabel import JobRunner, PredictorHub, PrelabelSettings
from .store import Store
from .vocab_util import load_preset, parse_vocab, vocab_text
from .ytvis_import import ImportError_, detect_layout, read_json, tracks_from_json

USER_ERRORS = (MediaError, ImportError_, EditError)


def new_session() -> dict[str, Any]:
    return {"project": None, "video": None, "frame": 0, "track": None, "hidden": []}


def ok(msg: str) -> str:
    return f"✔ {msg}"


def bad(msg: str) -> str:
    return f"✖ {msg}"


@dataclass
class Config:
    """What :func:`app.main.main` parsed."""

    home: Path
    datasets: Path
    limits: Limits = field(default_factory=Limits)
    sample_video: Path | None = None


class Studio:
    """Holds the store, editor, model hub and job runner shared by all sessions."""

    def __init__(self, config: Config, hub: PredictorHub) -> None:
        self.cfg = config
        self.store = Store(config.home)
        self.editor = Editor(self.store)
        self.hub = hub
        self.runner = JobRunner(self.store, hub)
        self.exports = config.home / "exports"
        self.finetune = FineTuner(config.home, config.datasets, self.store, hub)  # the Fine-tune tab

    # -- the shared view ------------------------------------------------------------------------
    def view(self, st: dict) -> list:
        """[frame_img, slider, timeline, tracks_df, track_dd, merge_dd, label_dd, reviewed_cb, history]."""
        v = self.store.video(st["video"]) if st.get("video") else None
        if v is None:
            empty = views.track_table([], 1, set())
            return [views.blank(), gr.Slider(minimum=0, maximum=1, value=0), views.timeline([], 1, 0, set()),
                    empty, gr.Dropdown(choices=[], value=None), gr.Dropdown(choices=[], value=None),
                    gr.Dropdown(choices=[], value=None), False, "No video selected."]
        hidden = set(st.get("hidden", []))
        tracks = self.store.tracks(v.id)
        ids = {t.id for t in tracks}
        if st.get("track") not in ids:
            st["track"] = None
        st["frame"] = int(min(max(0, st.get("frame", 0)), v.num_frames - 1))
        sel = st["track"]
        choices = views.track_choices(tracks, v.num_frames)
        undo, redo = self.editor.history(v.id)
        info = (f"**{v.name}**: {v.num_frames} frames, {v.width}x{v.height}, {v.fps:g} fps · "
                f"{len(tracks)} tracks · undo {undo} / redo {redo}"
                + (f" · pre-labelled with `{v.weights_label}`" if v.weights_label else "")
                + (" · ✔ reviewed" if v.reviewed else ""))
        return [views.frame_image(self.store, v, st["frame"], hidden, sel),
                gr.Slider(minimum=0, maximum=max(1, v.num_frames - 1), value=st["frame"], step=1),
                views.timeline(tracks, v.num_frames, st["frame"], hidden, sel),
                views.track_table(tracks, v.num_frames, hidden),
                gr.Dropdown(choices=choices, value=sel),
                gr.Dropdown(choices=[c for c in choices if c[1] != sel], value=None),
                gr.Dropdown(choices=self.label_choices(st), value=None),
                v.reviewed, info]

    def label_choices(self, st: dict) -> list[str]:
        """Relabel choices: the selected track's alternatives first, then the vocabulary."""
        names: list[str] = []
        if st.get("track"):
            t = self.store.track(st["track"])
            if t:
                names += [a for a, _ in t.alternatives]
        if st.get("project"):
            names += self.store.vocabulary(st["project"])
        return list(dict.fromkeys(names))

    def video_choices(self, st: dict) -> gr.Dropdown:
        vids = self.store.videos(st["project"]) if st.get("project") else []
        return gr.Dropdown(choices=[(f"{v.name}{' ✔' if v.reviewed else ''}", v.id) for v in vids],
                           value=st.get("video"))

    def project_choices(self, st: dict) -> gr.Dropdown:
        return gr.Dropdown(choices=[(n, i) for i, n in self.store.projects()], value=st.get("project"))

    def editor_canvas(self, st: dict) -> gr.ImageEditor:
        """Pitfall 1 of the notes: the canvas size must reach the editor before its value."""
        v = self.store.video(st["video"]) if st.get("video") else None
        return gr.ImageEditor(canvas_size=(v.width, v.height) if v else (640, 360), value=None)

    # -- projects, videos, vocabulary -------------------------------------------------------------
    def open_project(self, st: dict, project: Any) -> tuple:
        """-> [st, status, video_dd, vocab_box, editor, *view]."""
        st = dict(st)
        try:
            pid = int(project)
        except (TypeError, ValueError):
            return (st, bad("pick a project"), self.video_choices(st), gr.Textbox(), gr.ImageEditor(), *self.view(st))
        vids = self.store.videos(pid)
        st.update(project=pid, video=vids[-1].id if vids else None, frame=0, track=None, hidden=[])
        return (st, ok(f"project **{self.store.project_name(pid)}** opened ({len(vids)} videos)"),
                self.video_choices(st), vocab_text(self.store.vocabulary(pid)), self.editor_canvas(st), *self.view(st))

    def on_load(self, st: dict) -> tuple:
        """A new page opens the latest project, so work is on screen again after a restart.
        -> [st, status, project_dd, video_dd, vocab_box, editor, *view]."""
        projects = self.store.projects()
        if not projects or st.get("project"):
            return (dict(st), "Ready. Click **▶ Try the sample** or add a video.", self.project_choices(st),
                    self.video_choices(st), gr.Textbox(), gr.ImageEditor(), *self.view(st))
        out = self.open_project(st, projects[-1][0])
        return (out[0], out[1], self.project_choices(out[0]), *out[2:])

    def create_project(self, st: dict, name: str, vocab: str) -> tuple:
        """-> [st, status, project_dd, video_dd, vocab_box, editor, *view]."""
        name = (name or "").strip() or time.strftime("project-%Y%m%d-%H%M%S")
        pid = self.store.create_project(name, parse_vocab(vocab))
        out = self.open_project(st, pid)
        return (out[0], out[1], self.project_choices(out[0]), *out[2:])

    def ensure_project(self, st: dict) -> int:
        if not st.get("project"):
            st["project"] = self.store.create_project(time.strftime("project-%Y%m%d-%H%M%S"))
        return st["project"]

    def open_video(self, st: dict, video: Any) -> tuple:
        """-> [st, status, editor, *view]."""
        st = dict(st)
        v = self.store.video(int(video)) if video not in (None, "") else None
        if v is None or v.project_id != st.get("project"):
            return (st, bad("pick a video of this project"), gr.ImageEditor(), *self.view(st))
        st.update(video=v.id, frame=0, track=None, hidden=[])
        return st, ok(f"video **{v.name}** opened"), self.editor_canvas(st), *self.view(st)

    def add_video(self, st: dict, upload: Any, json_file: Any, fps: float | None, vocab: str,
                  progress: gr.Progress = gr.Progress()) -> tuple:
        """Upload a video/zip (+ optional YTVIS json). -> [st, status, project_dd, video_dd, editor, *view]."""
        st = dict(st)
        path = getattr(upload, "name", upload)
        if not path:
            return (st, bad("choose a video file or a zip of frames first"), self.project_choices(st),
                    self.video_choices(st), gr.ImageEditor(), *self.view(st))
        pid = self.ensure_project(st)
        staged = self.store.reserve_video_dir()
        try:
            data = read_json(getattr(json_file, "name", json_file)) if json_file else None
            if data is not None:
                detect_layout(data)  # reject a non-YTVIS json before decoding anything
            progress(0.0, desc="decoding frames")
            dec = decode_any(path, staged, None if data is not None else (fps or None), self.cfg.limits,
                             lambda f: progress(0.9 * f, desc="decoding frames"))
            typed = parse_vocab(vocab)
            names = typed or self.store.vocabulary(pid)
            tracks, note = (tracks_from_json(data, safe_name(path), dec.num_frames,
                                             dec.height, dec.width, names) if data is not None else ([], ""))
            vid = self.store.add_video(pid, safe_name(path), staged, dec.width, dec.height, dec.num_frames, dec.fps)
        except (*USER_ERRORS, ValueError, KeyError, TypeError) as e:  # a malformed json entry too
            shutil.rmtree(staged, ignore_errors=True)
            what = "" if isinstance(e, USER_ERRORS) else "could not import this input: "
            return (st, bad(f"{what}{e}") + " (nothing was changed)", self.project_choices(st), self.video_choices(st), gr.ImageEditor(), *self.view(st))
        if tracks:
            self.editor.replace_tracks(vid, tracks, kind="import")
        if typed and not self.store.vocabulary(pid):  # the typed vocabulary is kept with the project
            self.store.set_vocabulary(pid, typed)
        st.update(video=vid, frame=0, track=None, hidden=[])
        msg = ok(f"added **{self.store.video(vid).name}**: {dec.num_frames} frames at {dec.fps:g} fps, "
                 f"{dec.width}x{dec.height}" + (f"; {note}" if note else "")
                 + (" (stopped at the --max-frames limit)" if dec.num_frames >= self.cfg.limits.max_frames else ""))
        return st, msg, self.project_choices(st), self.video_choices(st), self.editor_canvas(st), *self.view(st)

    def save_vocab(self, st: dict, text: str) -> tuple:
        """-> [st, status, vocab_box, label_dd]."""
        st = dict(st)
        names = parse_vocab(text)
        if not names:
            return st, bad("the vocabulary is empty: type class names separated by commas or new lines"), \
                gr.Textbox(), gr.Dropdown()
        pid = self.ensure_project(st)
        self.store.set_vocabulary(pid, names)
        return st, ok(f"vocabulary saved: {len(names)} classes"), vocab_text(names), \
            gr.Dropdown(choices=self.label_choices(st))

    def use_preset(self, st: dict, preset: str, text: str) -> tuple:
        """Add a preset's classes to the typed ones. -> [st, status, vocab_box, label_dd]."""
        try:
            names = load_preset(preset)
        except (OSError, KeyError, ValueError) as e:
            return dict(st), bad(f"preset {preset!r} is not available ({e})"), gr.Textbox(), gr.Dropdown()
        return self.save_vocab(st, vocab_text(list(dict.fromkeys(parse_vocab(text) + names))))

    # -- pre-labelling ----------------------------------------------------------------------------
    def prelabel(self, st: dict, vocab: str, min_size: float, clip_length: float, fps: float,
                 threshold: float, max_tracks: float, progress: gr.Progress = gr.Progress()):
        """Generator: start the background job, stream progress and previews, then the result.
        Yields [st, status, banner, editor, *view] (partial updates while running)."""
        st = dict(st)
        names = parse_vocab(vocab)
        if not st.get("video"):
            yield {0: st, 1: bad("add a video first (upload one, or click the sample)")}
            return
        if not names:
            yield {0: st, 1: bad("the vocabulary is empty: type class names (e.g. `person, bicycle`) or pick a preset")}
            return
        self.store.set_vocabulary(st["project"], names)
        settings = PrelabelSettings(int(min_size), max(1, int(clip_length)), float(fps or 0), float(threshold),
                                    max(1, int(max_tracks)))
        job = self.runner.start(st["video"], names, settings)
        v = self.store.video(st["video"])
        seen = -1
        while not job.finished:
            frac = job.frames_done / max(1, job.total)
            eta = f", ETA {job.eta_s:.0f} s" if job.eta_s is not None else ""
            text = f"Pre-labelling {job.frames_done}/{job.total} frames{eta} — {job.message}"
            progress(frac, desc=f"{job.frames_done}/{job.total} frames{eta}")
            out = {1: text}
            if job.preview_version != seen and job.preview_frame is not None:
                seen = job.preview_version
                rgb = views.load_frame(self.store.frame_path(v.id, job.preview_frame))
                items = [(q, f"{lb} {s:.2f} (provisional)", m) for q, lb, s, m in job.preview if m.shape == rgb.shape[:2]]
                out[4] = views.overlay_frame(rgb, items)
                out[2] = self.hub.banner()
            yield out
            time.sleep(0.25)
        st.update(track=None, frame=st.get("frame", 0))
        status = ok(job.message) if job.state == "done" else bad(job.message)
        yield {0: st, 1: status, 2: self.hub.banner(), 3: self.editor_canvas(st),
               **{4 + i: x for i, x in enumerate(self.view(st))}}

    def cancel(self, st: dict) -> str:
        job = self.runner.jobs.get(st.get("video"))
        if job is None or job.finished:
            return "Nothing is running."
        job.cancel.set()
        return "Cancelling…"

    # -- export ---------------------------------------------------------------------------------
    def export_dataset(self, st: dict, progress: gr.Progress = gr.Progress()) -> tuple:
        """-> [status, file]: the dataset folder for ``ovformer train`` and its zip."""
        if not st.get("project"):
            return bad("nothing to export yet"), None
        progress(0.05, desc="writing the dataset")
        root = X.export_dataset(self.store, st["project"], self.cfg.datasets,
                                progress=lambda f, d: progress(0.05 + 0.8 * f, desc=d))
        progress(0.9, desc="zipping")
        z = X.zip_folder(root, self.exports / f"{root.name}-{time.strftime('%Y%m%d-%H%M%S')}.zip")
        n = len(X.ground_truth(self.store, st["project"])["annotations"])
        return ok(f"dataset with {n} tracks written to `{root}` (train with `ovformer train --data {root}`) "
                  f"and zipped for download"), str(z)

    def export_results(self, st: dict) -> tuple:
        if not st.get("project"):
            return bad("nothing to export yet"), None
        name = X.dataset_dir_name(self.store.project_name(st["project"]))
        p = X.write_results(self.store, st["project"], self.exports / f"{name}-results.json")
        return ok(f"results layout (with scores) written to `{p}`"), str(p)

    def export_video(self, st: dict, progress: gr.Progress = gr.Progress()) -> tuple:
        """-> [status, file, player]."""
        if not st.get("video"):
            return bad("no video selected"), None, None
        v = self.store.video(st["video"])
        progress(0.2, desc=f"rendering {v.num_frames} frames")
        p = X.render_video(self.store, v.id, self.exports / f"{v.name}-overlay-{time.strftime('%H%M%S')}.mp4",
                           set(st.get("hidden", [])))
        return ok(f"overlay video rendered: `{p.name}`"), str(p), str(p)


def as_mask(layer: Any, height: int, width: int) -> np.ndarray:
    """The ImageEditor's first layer -> bool (H, W) mask (alpha > 0), resized if the canvas differs."""
    a = np.asarray(layer)
    m = a[..., 3] > 0 if a.ndim == 3 and a.shape[2] == 4 else (a.reshape(a.shape[0], a.shape[1], -1).max(-1) > 0)
    if m.shape != (height, width):
        from PIL import Image
        m = np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize((width, height), Image.NEAREST)) > 127
    return m
