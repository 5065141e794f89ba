"""The Annotate tab: its layout, one :func:`render` of a :class:`Screen`, and its events.

No logic here (see :mod:`app.annotate.service` and :mod:`app.annotate.review`). Components are
kept by the name of the :class:`Screen` field they show; every event returns ``{component:
value}`` built by :func:`render`, so a new component is a field of ``Screen``, a component
here and a line in :func:`render`. Every event has an ``api_name`` and every component an
``elem_id`` (gradio_client and the browser tests drive exactly what the page drives).
"""
from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import gradio as gr

from ..wiring import Wiring, page_of, user_of
from . import views
from .media import VIDEO_EXT
from .prelabel import PrelabelSettings
from .clicks import ClickService
from .deletes import DeleteService
from .review import EDITS, ReviewService
from .service import PRESETS, SAMPLE_VOCAB, AnnotateService
from .session import PANEL, Choices, Screen, Session, bad

Components = dict[str, Any]


def layout(svc: AnnotateService) -> Components:
    """The tab's components by name (call inside ``with gr.Tab(...)``)."""
    c: Components = {}
    with gr.Row():
        with gr.Column(scale=1, min_width=330):
            c["sample_btn"] = gr.Button("▶ Try the sample (one click)", variant="primary", elem_id="sample_btn")
            with gr.Accordion("1 · Project & videos", open=True):
                c["projects"] = gr.Dropdown(label="Project", choices=svc.project_choices(Session()).choices,
                                            allow_custom_value=True, elem_id="project_dd")
                with gr.Row():
                    c["project_name"] = gr.Textbox(label="New project name", scale=2, elem_id="project_name")
                    c["new_project_btn"] = gr.Button("Create", scale=1, elem_id="new_project_btn")
                c["upload"] = gr.File(label="Video file or zip of frames", elem_id="video_in",
                                      file_types=list(VIDEO_EXT) + [".zip"])
                c["json_in"] = gr.File(label="Optional: YouTube-VIS / LV-VIS json (ground truth or results) "
                                             "to import as pre-labels", file_types=[".json"], elem_id="json_in")
                c["import_fps"] = gr.Number(5, label="Frames per second to keep (0 = all)", minimum=0,
                                            elem_id="import_fps")
                c["add_btn"] = gr.Button("Add video to project", elem_id="add_btn")
                c["videos"] = gr.Dropdown(label="Video", choices=[], allow_custom_value=True, elem_id="video_dd")
                if svc.cfg.sample_video:
                    gr.Examples([[str(svc.cfg.sample_video)]], inputs=[c["upload"]], label="Example video")
            with gr.Accordion("2 · Vocabulary", open=True):
                c["vocab"] = gr.Textbox(label="Classes (comma or newline separated)", lines=3, elem_id="vocab",
                                        placeholder=SAMPLE_VOCAB)
                gr.Examples([[SAMPLE_VOCAB], ["dog, cat, ball, sofa"], ["car, truck, bus, traffic light"]],
                            inputs=[c["vocab"]], label="Example vocabularies")
                with gr.Row():
                    c["preset_dd"] = gr.Dropdown(list(PRESETS), value="YTVIS-2019", label="Preset", scale=2,
                                                 elem_id="preset_dd")
                    c["preset_btn"] = gr.Button("Add preset", scale=1, elem_id="preset_btn")
                c["save_vocab_btn"] = gr.Button("Save vocabulary", elem_id="save_vocab_btn")
            with gr.Accordion("3 · Pre-label with OVFormer", open=True):
                c["res"] = gr.Slider(96, 1024, 360, step=8, label="Resolution (shorter side)", elem_id="res")
                c["clip_len"] = gr.Slider(1, 16, 5, step=1, label="Clip length (frames)", elem_id="clip_len")
                c["fps"] = gr.Number(0, label="Frame rate for the model (0 = every frame)", minimum=0, elem_id="fps")
                c["thr"] = gr.Slider(0, 1, 0.1, step=0.01, label="Score threshold", elem_id="thr")
                c["max_tracks"] = gr.Slider(1, 100, 20, step=1, label="Maximum tracks", elem_id="max_tracks")
                with gr.Row():
                    c["run_btn"] = gr.Button("Pre-label", variant="primary", elem_id="run_btn")
                    c["cancel_btn"] = gr.Button("Cancel", elem_id="cancel_btn")
            with gr.Accordion("6 · Export", open=True):
                with gr.Row():
                    c["export_ds_btn"] = gr.Button("Dataset (YTVIS zip)", elem_id="export_ds_btn")
                    c["export_res_btn"] = gr.Button("Results json", elem_id="export_res_btn")
                    c["export_vid_btn"] = gr.Button("Overlay video", elem_id="export_vid_btn")
                c["export_file"] = gr.File(label="Download", interactive=False, elem_id="export_file")
            with gr.Accordion("7 · Delete", open=False):
                c["confirm"] = gr.Checkbox(False, label="I am sure (↶ Undo delete brings it back until you leave "
                                                        "this page)", elem_id="confirm_cb")
                with gr.Row():
                    c["delete_project_btn"] = gr.Button("Delete this project", variant="stop",
                                                        elem_id="delete_project_btn")
                    c["delete_video_btn"] = gr.Button("Delete this video", variant="stop", elem_id="delete_video_btn")
                with gr.Row():
                    c["exports"] = gr.Dropdown(label="Your exports", choices=[], scale=3, elem_id="exports_dd")
                    c["exports_refresh_btn"] = gr.Button("↻", scale=0, min_width=44, elem_id="exports_refresh_btn")
                c["delete_export_btn"] = gr.Button("Delete this export", variant="stop", elem_id="delete_export_btn")
                # shown after a delete, naming what it restores (Screen.undo_delete)
                c["undo_delete"] = gr.Button("↶ Undo delete", visible=False, elem_id="undo_delete_btn")
        with gr.Column(scale=3):
            c["info"] = gr.Markdown("No video selected.", elem_id="video_info")
            # no block label: it would sit over the top-left corner, where track tags often are
            c["frame_img"] = gr.Image(label="Frame (masks, ids and classes overlaid)", show_label=False,
                                      type="numpy", interactive=False, format="jpeg", elem_id="frame_img",
                                      value=views.blank())
            with gr.Row():
                c["prev_btn"] = gr.Button("◀", scale=0, min_width=50, elem_id="prev_btn")
                c["slider"] = gr.Slider(0, 1, 0, step=1, label="Frame", scale=8, elem_id="frame_slider")
                c["next_btn"] = gr.Button("▶", scale=0, min_width=50, elem_id="next_btn")
            c["timeline"] = gr.Plot(label="Timeline (current frame in red)", elem_id="timeline")
            with gr.Row():
                c["track_dd"] = gr.Dropdown(label="Selected track", choices=[], allow_custom_value=True, scale=3,
                                            elem_id="track_dd")
                c["queue_btn"] = gr.Button("Next in review queue", scale=1, elem_id="queue_btn")
                c["toggle_btn"] = gr.Button("Show / hide", scale=1, elem_id="toggle_btn")
                c["reviewed"] = gr.Checkbox(label="Video reviewed", scale=1, elem_id="reviewed_cb")
            with gr.Tabs():
                with gr.Tab("4 · Review", elem_id="tab_review"):
                    c["tracks"] = gr.Dataframe(headers=views.TABLE_HEADERS, interactive=False, wrap=True,
                                               label="Tracks (review queue order: low score and short first;"
                                                     " click a row to select)", elem_id="tracks_df")
                with gr.Tab("5 · Correct", elem_id="tab_correct"):
                    with gr.Row():
                        c["label_dd"] = gr.Dropdown(label="Class (alternatives, vocabulary, or type a new one)",
                                                    choices=[], allow_custom_value=True, scale=3, elem_id="label_dd")
                        c["relabel_btn"] = gr.Button("Relabel track", scale=1, elem_id="relabel_btn")
                    with gr.Row():
                        c["merge_dd"] = gr.Dropdown(label="Merge this track into the selected one", choices=[],
                                                    allow_custom_value=True, scale=3, elem_id="merge_dd")
                        c["merge_btn"] = gr.Button("Merge", scale=1, elem_id="merge_btn")
                    with gr.Row():
                        c["span_a"] = gr.Number(0, label="From frame", precision=0, elem_id="span_a")
                        c["span_b"] = gr.Number(0, label="To frame", precision=0, elem_id="span_b")
                        c["delete_span_btn"] = gr.Button("Delete these frames", elem_id="span_btn")
                    with gr.Row():
                        c["copy_n"] = gr.Number(5, label="Copy mask to next N frames", precision=0, elem_id="copy_n")
                        c["copy_forward_btn"] = gr.Button("Copy forward", elem_id="copy_btn")
                        c["split_btn"] = gr.Button("Split at current frame", elem_id="split_btn")
                        c["delete_track_btn"] = gr.Button("Delete track", variant="stop", elem_id="delete_btn")
                with gr.Tab("Paint", elem_id="tab_paint"):
                    c["paint_btn"] = gr.Button("Paint this frame (loads the selected track's mask)",
                                               elem_id="paint_btn")
                    c["editor"] = gr.ImageEditor(type="numpy", image_mode="RGBA", format="png", sources=(),
                                                 transforms=(), canvas_size=(640, 360), elem_id="editor",
                                                 layers=gr.LayerOptions(allow_additional_layers=False),
                                                 brush=gr.Brush(colors=["#ff3030"], color_mode="fixed"),
                                                 eraser=gr.Eraser(), label="Brush adds, eraser removes")
                    with gr.Row():
                        c["save_mask_btn"] = gr.Button("Save mask to selected track", variant="primary",
                                                       elem_id="save_mask_btn")
                        c["new_track_btn"] = gr.Button("Save as new track (class from the Correct tab)",
                                                       elem_id="new_track_btn")
                with gr.Tab("Add by clicking", elem_id="tab_add"):
                    gr.Markdown("Click an object on the frame: the model's best unused query for it is drawn "
                                "in magenta over the whole video, with its classes. **n** next candidate, "
                                "**Enter** accept (one Undo reverts it), **Esc** cancel, **a** opens this tab.",
                                elem_id="add_help")
                    with gr.Row():
                        c["click_neg"] = gr.Checkbox(False, label="Next click excludes (negative)",
                                                     elem_id="click_neg")
                        c["add_next_btn"] = gr.Button("Next candidate (n)", elem_id="add_next_btn")
                        c["add_accept_btn"] = gr.Button("Accept (Enter)", variant="primary", elem_id="add_accept_btn")
                        c["add_cancel_btn"] = gr.Button("Cancel (Esc)", elem_id="add_cancel_btn")
                    c["fix_btn"] = gr.Button("Fix the selected track by clicking (from this frame to the end of "
                                             "its clip)", elem_id="fix_btn")
                with gr.Tab("Play", elem_id="tab_play"):
                    c["play_btn"] = gr.Button("Render and play with masks", elem_id="play_btn")
                    c["player"] = gr.Video(label="Overlay video (also under Export → Overlay video)",
                                          interactive=False, elem_id="player")
            with gr.Row():
                c["undo_btn"] = gr.Button("↶ Undo", elem_id="undo_btn")
                c["redo_btn"] = gr.Button("↷ Redo", elem_id="redo_btn")
    return c


def _dropdown(x: Choices) -> gr.Dropdown:
    return gr.Dropdown(choices=x.choices, value=x.value)


#: How a Screen field becomes a component update (fields not listed are passed as they are).
CONVERT: dict[str, Callable[[Any], Any]] = {
    "projects": _dropdown, "videos": _dropdown, "track_dd": _dropdown, "merge_dd": _dropdown,
    "label_dd": _dropdown,
    "slider": lambda x: gr.Slider(minimum=0, maximum=x.maximum, value=x.value, step=1),
    "canvas": lambda size: gr.ImageEditor(canvas_size=size, value=None),
    "exports": _dropdown,
    "undo_delete": lambda text: gr.Button(value=text or "↶ Undo delete", visible=bool(text)),
}


#: a n Enter Esc for the Add mode; keys typed into a text field stay there
KEYS_JS = """() => {
  if (window.__ovfKeys) return; window.__ovfKeys = true;
  const press = (id) => { const b = document.querySelector('#' + id); if (b) b.click(); };
  document.addEventListener('keydown', (e) => {
    const t = e.target; const tag = (t && t.tagName || '').toLowerCase();
    if (tag === 'input' || tag === 'textarea' || tag === 'select' || (t && t.isContentEditable)) return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    // a focused button keeps Enter/Space, except the frame itself (clicking it focuses it)
    if (tag === 'button' && (e.key === 'Enter' || e.key === ' ') && !t.closest('#frame_img')) return;
    if (e.key === 'a') { const tab = [...document.querySelectorAll('button[role=tab]')]
        .find(b => b.textContent.includes('Add by clicking')); if (tab) tab.click(); }
    else if (e.key === 'n') press('add_next_btn');
    else if (e.key === 'Enter') { press('add_accept_btn'); e.preventDefault(); }
    else if (e.key === 'Escape') press('add_cancel_btn');
  });
}"""


PUBLISHED = "ovformer-out"


def publish(path: str) -> str:
    """A file of the data folder, handed to the one request that asked for it: linked (copied
    across file systems) into an unguessable folder of Gradio's upload folder, from which Gradio
    serves it. The data folder itself is never served (``blocked_paths``, :mod:`app.main`)."""
    from gradio.utils import get_upload_folder

    root = Path(get_upload_folder()) / PUBLISHED
    if root.is_dir():  # what was handed out an hour ago has been downloaded (or never will be)
        for d in root.iterdir():
            try:
                if time.time() - d.stat().st_mtime > 3600:
                    shutil.rmtree(d, ignore_errors=True)
            except OSError:
                pass
    d = root / uuid.uuid4().hex
    d.mkdir(parents=True)
    dst = d / Path(path).name
    try:
        os.link(path, dst)
    except OSError:
        shutil.copyfile(path, dst)
    return str(dst)


CONVERT.update({"export_file": publish, "player": publish})


def render(screen: Screen, c: Components, outputs: list[Any]) -> dict[Any, Any]:
    """``{component: value}`` of a Screen's set fields, restricted to an event's outputs."""
    allowed = {id(o) for o in outputs}
    out: dict[Any, Any] = {}
    for name in screen.__dataclass_fields__:
        value = getattr(screen, name)
        comp = c["editor"] if name == "canvas" else c.get(name)
        if value is None or comp is None or id(comp) not in allowed:
            continue
        out[comp] = CONVERT.get(name, lambda x: x)(value)
    return out


def wire(svc: AnnotateService, review: ReviewService, c: Components, w: Wiring, demo: gr.Blocks) -> None:
    """Connect the tab's events; ``c`` must hold ``session``, ``status``, ``banner`` and
    ``progress`` (page-level components) besides the tab's own."""
    w.name(c)
    st, progress_box = c["session"], c["progress"]

    def outs(*names: str) -> list[Any]:
        return [c[n] for n in names]

    def bound(fn: Callable[..., Screen], outputs: list[Any]) -> Callable[..., dict]:
        """``fn(session, *inputs)`` as an event: the session is the requesting user's (Gradio
        passes the request first: a parameter annotated ``gr.Request``)."""
        def call(request: gr.Request, s: Session, *args: Any) -> dict:
            return render(fn(svc.enter(s, user_of(request)), *args), c, outputs)
        return call

    def bar(progress: gr.Progress) -> Callable[[float, str], None]:
        return lambda fraction, text: progress(fraction, desc=text)

    panel = outs("session", "status", *PANEL)
    opened = outs("session", "status", "projects", "videos", "vocab", "editor", *PANEL)
    quick = {"show_progress": "hidden"}

    w.on(c["new_project_btn"].click, bound(svc.create_project, opened), [st, c["project_name"], c["vocab"]], opened,
         api_name="create_project")
    w.on(c["projects"].input, bound(svc.open_project, opened), [st, c["projects"]], opened, api_name="open_project")
    added = outs("session", "status", "projects", "videos", "editor", *PANEL)

    def add_video(request: gr.Request, s, upload, json_file, fps, vocab, progress=gr.Progress()):
        s = svc.enter(s, user_of(request))
        return render(svc.add_video(s, getattr(upload, "name", upload), getattr(json_file, "name", json_file),
                                    fps, vocab, bar(progress)), c, added)
    w.on(c["add_btn"].click, add_video, [st, c["upload"], c["json_in"], c["import_fps"], c["vocab"]], added,
         api_name="add_video", show_progress_on=[progress_box])
    w.on(c["videos"].input, bound(svc.open_video, panel + [c["editor"]]), [st, c["videos"]], panel + [c["editor"]],
         api_name="open_video")
    vocab_out = outs("session", "status", "vocab", "label_dd")
    w.on(c["save_vocab_btn"].click, bound(svc.save_vocab, vocab_out), [st, c["vocab"]], vocab_out,
         api_name="save_vocab")
    w.on(c["preset_btn"].click, bound(svc.use_preset, vocab_out), [st, c["preset_dd"], c["vocab"]], vocab_out,
         api_name="use_preset")

    pre_out = outs("session", "status", "banner", "editor", *PANEL, "progress")
    pre_in = [st, c["vocab"], c["res"], c["clip_len"], c["fps"], c["thr"], c["max_tracks"]]

    def prelabel(request: gr.Request, s, vocab, res, clip, fps, thr, max_tracks,
                 progress=gr.Progress()) -> Iterator[dict]:
        s = svc.enter(s, user_of(request))
        try:
            settings = PrelabelSettings.from_page(res, clip, fps, thr, max_tracks)
        except ValueError as e:
            yield render(Screen(session=s, status=bad(str(e))), c, pre_out)
            return
        for screen in svc.prelabel(s, vocab, settings, bar(progress)):
            yield render(screen, c, pre_out)
    w.on(c["run_btn"].click, prelabel, pre_in, pre_out, api_name="prelabel", show_progress_on=[progress_box],
         concurrency_limit=8)
    w.on(c["cancel_btn"].click, bound(svc.cancel, [c["status"]]), [st], [c["status"]], api_name="cancel",
         concurrency_limit=None)

    sample_out = outs("session", "status", "vocab", "projects", "videos", "editor", *PANEL)

    def sample(request: gr.Request, s, vocab, progress=gr.Progress()):
        return render(svc.add_sample(svc.enter(s, user_of(request)), vocab, bar(progress)), c, sample_out)
    w.on(c["sample_btn"].click, sample, [st, c["vocab"]], sample_out, api_name="sample",
         show_progress_on=[progress_box]).then(prelabel, pre_in, pre_out, show_progress_on=[progress_box],
                                                concurrency_limit=8)

    scrubbed = outs("session", "frame_img", "timeline")
    w.on(c["slider"].input, bound(review.scrub, scrubbed), [st, c["slider"]], scrubbed, api_name="scrub",
         trigger_mode="always_last", concurrency_limit=None, **quick)
    stepped = outs("session", "frame_img", "slider", "timeline")
    for btn, delta, name in ((c["prev_btn"], -1, "prev"), (c["next_btn"], +1, "next")):
        w.on(btn.click, bound(lambda s, d=delta: review.step(s, d), stepped), [st], stepped, api_name=name, **quick)
    w.on(c["track_dd"].input, bound(review.select_track, panel), [st, c["track_dd"]], panel,
         api_name="select_track", **quick)

    def on_row(request: gr.Request, s, table, evt: gr.SelectData):
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        return render(review.select_row(svc.enter(s, user_of(request)), table, row), c, panel)
    c["tracks"].select(on_row, [st, c["tracks"]], panel, **quick)
    w.on(c["queue_btn"].click, bound(review.next_in_queue, panel), [st], panel, api_name="next_in_queue", **quick)
    w.on(c["toggle_btn"].click, bound(review.toggle_hidden, panel), [st, c["track_dd"]], panel,
         api_name="toggle_hidden", **quick)
    reviewed_out = outs("session", "status", "videos", *PANEL)
    w.on(c["reviewed"].input, bound(svc.set_reviewed, reviewed_out), [st, c["reviewed"]], reviewed_out,
         api_name="set_reviewed")

    # the edit buttons: one path (ReviewService.edit with an entry of EDITS), inputs by name
    edit_inputs = {"relabel": ["track_dd", "label_dd"], "delete_track": ["track_dd"],
                   "delete_span": ["track_dd", "span_a", "span_b"], "merge": ["track_dd", "merge_dd"],
                   "split": ["track_dd"], "copy_forward": ["track_dd", "copy_n"], "undo": [], "redo": [],
                   "save_mask": ["track_dd", "editor"], "new_track": ["label_dd", "editor"]}
    assert set(edit_inputs) == set(EDITS), "every edit has its button"
    for name, inputs in edit_inputs.items():
        fn = bound(lambda s, *args, n=name: review.edit(n, s, *args), panel)
        w.on(c[f"{name}_btn"].click, fn, [st, *outs(*inputs)], panel, api_name=name)

    canvas = c["paint_btn"].click(bound(lambda s: Screen(canvas=svc.canvas(s)), [c["editor"]]), [st],
                                  [c["editor"]], **quick)  # the canvas size first: notes, pitfall 1
    w.on(canvas.then, bound(review.load_editor, outs("status", "editor")), [st, c["track_dd"]],
         outs("status", "editor"), api_name="load_editor")
    exported = outs("status", "export_file")

    def export_dataset(request: gr.Request, s, progress=gr.Progress()):
        return render(svc.export_dataset(svc.enter(s, user_of(request)), bar(progress)), c, exported)
    w.on(c["export_ds_btn"].click, export_dataset, [st], exported, api_name="export_dataset",
         show_progress_on=[progress_box])
    w.on(c["export_res_btn"].click, bound(svc.export_results, exported), [st], exported, api_name="export_results")
    played = outs("status", "export_file", "player")

    def export_video(request: gr.Request, s, progress=gr.Progress()):
        return render(svc.export_video(svc.enter(s, user_of(request)), bar(progress)), c, played)
    for btn, name in ((c["export_vid_btn"], "export_video"), (c["play_btn"], "play")):
        w.on(btn.click, export_video, [st], played, api_name=name, show_progress_on=[progress_box])
    deletes = DeleteService(svc)

    def paged(fn: Callable[..., Screen], outputs: list[Any]) -> Callable[..., dict]:
        """:func:`bound` for the deletes: they also take the page (whose Undo restores them)."""
        def call(request: gr.Request, s: Session, *args: Any) -> dict:
            return render(fn(svc.enter(s, user_of(request)), *args, page=page_of(request)), c, outputs)
        return call
    deleted = outs("session", "status", "projects", "videos", "vocab", "editor", *PANEL, "undo_delete")
    w.on(c["delete_project_btn"].click, paged(deletes.delete_project, deleted), [st, c["confirm"]], deleted,
         api_name="delete_project")
    w.on(c["delete_video_btn"].click, paged(deletes.delete_video, deleted), [st, c["confirm"]], deleted,
         api_name="delete_video")
    listed = outs("exports")

    def list_exports(s: Session) -> Screen:
        names = svc.exports_of(s) + svc.datasets_of(s)
        return Screen(exports=Choices(names, names[0] if names else None))
    w.on(c["exports_refresh_btn"].click, bound(list_exports, listed), [st], listed, api_name="list_exports")
    export_deleted = outs("status", "undo_delete")
    w.on(c["delete_export_btn"].click, paged(deletes.delete_export, export_deleted),
         [st, c["exports"], c["confirm"]], export_deleted, api_name="delete_export").then(
        bound(list_exports, listed), [st], listed)
    undone = outs("session", "status", "projects", "videos", "vocab", "editor", *PANEL, "exports", "undo_delete")
    w.on(c["undo_delete"].click, paged(deletes.undo, undone), [st], undone, api_name="undo_delete")
    # click to add / fix from the model's kept queries (app.annotate.clicks)
    clicks = ClickService(svc.store, svc.editor, review)

    def on_click(request: gr.Request, s, negative, evt: gr.SelectData):
        x, y = (evt.index or (None, None))[:2] if isinstance(evt.index, (list, tuple)) else (None, None)
        return render(clicks.click(svc.enter(s, user_of(request)), x, y, not negative), c, panel)
    c["frame_img"].select(on_click, [st, c["click_neg"]], panel, **quick)
    w.on(c["add_next_btn"].click, bound(clicks.next, panel), [st], panel, api_name="add_next", **quick)
    w.on(c["add_accept_btn"].click, bound(clicks.accept, panel), [st], panel, api_name="add_accept")
    w.on(c["add_cancel_btn"].click, bound(clicks.cancel, panel), [st], panel, api_name="add_cancel", **quick)
    w.on(c["fix_btn"].click, bound(clicks.start_fix, panel), [st, c["track_dd"]], panel, api_name="fix_track")
    demo.load(None, None, None, js=KEYS_JS)
    # a fresh page shows the projects that exist now and reopens the latest one
    demo.load(bound(svc.on_load, opened), [st], opened, api_visibility="private")
