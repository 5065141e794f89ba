"""The Blocks layout and event wiring (no logic here: see studio.py and edit_callbacks.py).

Every event has an ``api_name`` so gradio_client drives exactly what the page drives, and every
component an ``elem_id`` for the browser tests.
"""
from __future__ import annotations

import functools
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # must precede Blocks(): no calls home

import gradio as gr  # noqa: E402

from . import edit_callbacks as E  # noqa: E402
from . import views  # noqa: E402
from .finetune_ui import build_tab as build_finetune_tab  # noqa: E402
from .media import VIDEO_EXT  # noqa: E402
from .studio import Studio, new_session  # noqa: E402
from .vocab_util import PRESETS  # noqa: E402

INTRO = """# OVFormer Studio — open-vocabulary video annotation
**New here?** Click **▶ Try the sample**: it adds a short street clip, types a vocabulary and pre-labels
it. Then scrub the slider, pick tracks from the list (the review queue puts doubtful ones first), fix
them in **Correct** / **Paint**, and **Export** a YouTube-VIS dataset that `ovformer train` reads."""

CSS = "#status {min-height: 2.2em} #progress {min-height: 3.2em} #frame_img img {object-fit: contain}"

SAMPLE_VOCAB = "person, bicycle, car"


def build(s: Studio) -> gr.Blocks:
    """The whole page. ``s`` is shared by all sessions; per-session state is ``st``."""
    P = functools.partial
    with gr.Blocks(title="OVFormer Studio", delete_cache=(3600, 3600)) as demo:
        st = gr.State(new_session())
        banner = gr.Markdown(s.hub.banner(), elem_id="banner")
        gr.Markdown(INTRO)
        status = gr.Markdown("Ready.", elem_id="status")
        progress_box = gr.Markdown("", elem_id="progress")
        with gr.Tabs(elem_id="main_tabs"):
            with gr.Tab("Annotate", elem_id="tab_annotate"):
                with gr.Row():
                    with gr.Column(scale=1, min_width=330):
                        sample_btn = gr.Button("▶ Try the sample (one click)", variant="primary",
                                               elem_id="sample_btn")
                        with gr.Accordion("1 · Project & videos", open=True):
                            project_dd = gr.Dropdown(label="Project", choices=[(n, i) for i, n in s.store.projects()],
                                                     allow_custom_value=True, elem_id="project_dd")
                            with gr.Row():
                                project_name = gr.Textbox(label="New project name", scale=2, elem_id="project_name")
                                new_project_btn = gr.Button("Create", scale=1, elem_id="new_project_btn")
                            upload = gr.File(label="Video file or zip of frames", elem_id="video_in",
                                             file_types=list(VIDEO_EXT) + [".zip"])
                            json_in = gr.File(label="Optional: YouTube-VIS / LV-VIS json (ground truth or results) "
                                                    "to import as pre-labels", file_types=[".json"], elem_id="json_in")
                            import_fps = gr.Number(5, label="Frames per second to keep (0 = all)", minimum=0,
                                                   elem_id="import_fps")
                            add_btn = gr.Button("Add video to project", elem_id="add_btn")
                            video_dd = gr.Dropdown(label="Video", choices=[], allow_custom_value=True,
                                                   elem_id="video_dd")
                            if s.cfg.sample_video:
                                gr.Examples([[str(s.cfg.sample_video)]], inputs=[upload], label="Example video")
                        with gr.Accordion("2 · Vocabulary", open=True):
                            vocab = gr.Textbox(label="Classes (comma or newline separated)", lines=3, elem_id="vocab",
                                               placeholder="person, bicycle, car")
                            gr.Examples([[SAMPLE_VOCAB], ["dog, cat, ball, sofa"], ["car, truck, bus, traffic light"]],
                                        inputs=[vocab], label="Example vocabularies")
                            with gr.Row():
                                preset_dd = gr.Dropdown(list(PRESETS), value="YTVIS-2019", label="Preset", scale=2,
                                                        elem_id="preset_dd")
                                preset_btn = gr.Button("Add preset", scale=1, elem_id="preset_btn")
                            save_vocab_btn = gr.Button("Save vocabulary", elem_id="save_vocab_btn")
                        with gr.Accordion("3 · Pre-label with OVFormer", open=True):
                            res = gr.Slider(96, 1024, 360, step=8, label="Resolution (shorter side)", elem_id="res")
                            clip_len = gr.Slider(1, 16, 5, step=1, label="Clip length (frames)", elem_id="clip_len")
                            fps = gr.Number(0, label="Frame rate for the model (0 = every frame)", minimum=0,
                                            elem_id="fps")
                            thr = gr.Slider(0, 1, 0.1, step=0.01, label="Score threshold", elem_id="thr")
                            max_tracks = gr.Slider(1, 100, 20, step=1, label="Maximum tracks", elem_id="max_tracks")
                            with gr.Row():
                                run_btn = gr.Button("Pre-label", variant="primary", elem_id="run_btn")
                                cancel_btn = gr.Button("Cancel", elem_id="cancel_btn")
                        with gr.Accordion("6 · Export", open=True):
                            with gr.Row():
                                export_ds_btn = gr.Button("Dataset (YTVIS zip)", elem_id="export_ds_btn")
                                export_res_btn = gr.Button("Results json", elem_id="export_res_btn")
                                export_vid_btn = gr.Button("Overlay video", elem_id="export_vid_btn")
                            export_file = gr.File(label="Download", interactive=False, elem_id="export_file")
                    with gr.Column(scale=3):
                        info = gr.Markdown("No video selected.", elem_id="video_info")
                        # no block label: it would sit over the top-left corner, where track tags often are
                        frame_img = gr.Image(label="Frame (masks, ids and classes overlaid)", show_label=False,
                                             type="numpy", interactive=False, format="jpeg", elem_id="frame_img",
                                             value=views.blank())
                        with gr.Row():
                            prev_btn = gr.Button("◀", scale=0, min_width=50, elem_id="prev_btn")
                            slider = gr.Slider(0, 1, 0, step=1, label="Frame", scale=8, elem_id="frame_slider")
                            next_btn = gr.Button("▶", scale=0, min_width=50, elem_id="next_btn")
                        timeline = gr.Plot(label="Timeline (current frame in red)", elem_id="timeline")
                        with gr.Row():
                            track_dd = gr.Dropdown(label="Selected track", choices=[], allow_custom_value=True, scale=3,
                                                   elem_id="track_dd")
                            queue_btn = gr.Button("Next in review queue", scale=1, elem_id="queue_btn")
                            toggle_btn = gr.Button("Show / hide", scale=1, elem_id="toggle_btn")
                            reviewed_cb = gr.Checkbox(label="Video reviewed", scale=1, elem_id="reviewed_cb")
                        with gr.Tabs():
                            with gr.Tab("4 · Review", elem_id="tab_review"):
                                tracks_df = gr.Dataframe(headers=views.TABLE_HEADERS, interactive=False, wrap=True,
                                                         label="Tracks (review queue order: low score and short first;"
                                                               " click a row to select)", elem_id="tracks_df")
                            with gr.Tab("5 · Correct", elem_id="tab_correct"):
                                with gr.Row():
                                    label_dd = gr.Dropdown(label="Class (alternatives, vocabulary, or type a new one)",
                                                           choices=[], allow_custom_value=True, scale=3,
                                                           elem_id="label_dd")
                                    relabel_btn = gr.Button("Relabel track", scale=1, elem_id="relabel_btn")
                                with gr.Row():
                                    merge_dd = gr.Dropdown(label="Merge this track into the selected one", choices=[],
                                                           allow_custom_value=True, scale=3, elem_id="merge_dd")
                                    merge_btn = gr.Button("Merge", scale=1, elem_id="merge_btn")
                                with gr.Row():
                                    span_a = gr.Number(0, label="From frame", precision=0, elem_id="span_a")
                                    span_b = gr.Number(0, label="To frame", precision=0, elem_id="span_b")
                                    span_btn = gr.Button("Delete these frames", elem_id="span_btn")
                                with gr.Row():
                                    copy_n = gr.Number(5, label="Copy mask to next N frames", precision=0,
                                                       elem_id="copy_n")
                                    copy_btn = gr.Button("Copy forward", elem_id="copy_btn")
                                    split_btn = gr.Button("Split at current frame", elem_id="split_btn")
                                    delete_btn = gr.Button("Delete track", variant="stop", elem_id="delete_btn")
                            with gr.Tab("Paint", elem_id="tab_paint"):
                                paint_btn = gr.Button("Paint this frame (loads the selected track's mask)",
                                                      elem_id="paint_btn")
                                editor = gr.ImageEditor(type="numpy", image_mode="RGBA", format="png", sources=(),
                                                        transforms=(), canvas_size=(640, 360), elem_id="editor",
                                                        layers=gr.LayerOptions(allow_additional_layers=False),
                                                        brush=gr.Brush(colors=["#ff3030"], color_mode="fixed"),
                                                        eraser=gr.Eraser(), label="Brush adds, eraser removes")
                                with gr.Row():
                                    save_mask_btn = gr.Button("Save mask to selected track", variant="primary",
                                                              elem_id="save_mask_btn")
                                    new_track_btn = gr.Button("Save as new track (class from the Correct tab)",
                                                              elem_id="new_track_btn")
                            with gr.Tab("Play", elem_id="tab_play"):
                                play_btn = gr.Button("Render and play with masks", elem_id="play_btn")
                                player = gr.Video(label="Overlay video (also under Export → Overlay video)",
                                                  interactive=False, elem_id="player")
                        with gr.Row():
                            undo_btn = gr.Button("↶ Undo", elem_id="undo_btn")
                            redo_btn = gr.Button("↷ Redo", elem_id="redo_btn")
            with gr.Tab("Fine-tune", elem_id="tab_finetune"):
                build_finetune_tab(s.finetune, banner, demo)

        VIEW = [frame_img, slider, timeline, tracks_df, track_dd, merge_dd, label_dd, reviewed_cb, info]
        EDIT_OUT = [st, status, *VIEW]
        quick = {"show_progress": "hidden"}

        new_project_btn.click(s.create_project, [st, project_name, vocab],
                              [st, status, project_dd, video_dd, vocab, editor, *VIEW], api_name="create_project")
        project_dd.input(s.open_project, [st, project_dd], [st, status, video_dd, vocab, editor, *VIEW],
                         api_name="open_project")
        add_btn.click(s.add_video, [st, upload, json_in, import_fps, vocab],
                      [st, status, project_dd, video_dd, editor, *VIEW], api_name="add_video",
                      show_progress_on=[progress_box])
        video_dd.input(s.open_video, [st, video_dd], [st, status, editor, *VIEW], api_name="open_video")
        save_vocab_btn.click(s.save_vocab, [st, vocab], [st, status, vocab, label_dd], api_name="save_vocab")
        preset_btn.click(s.use_preset, [st, preset_dd, vocab], [st, status, vocab, label_dd], api_name="use_preset")

        pre_out = [st, status, banner, editor, *VIEW, progress_box]

        def prelabel(st_, vocab_, res_, clip_, fps_, thr_, max_, progress=gr.Progress()):
            for d in s.prelabel(st_, vocab_, res_, clip_, fps_, thr_, max_, progress=progress):
                yield {pre_out[k]: v for k, v in d.items()}
        pre_in = [st, vocab, res, clip_len, fps, thr, max_tracks]
        run_btn.click(prelabel, pre_in, pre_out, api_name="prelabel", show_progress_on=[progress_box],
                      concurrency_limit=8)
        cancel_btn.click(s.cancel, [st], [status], api_name="cancel", concurrency_limit=None)

        def sample(st_, vocab_, progress=gr.Progress()):
            if s.cfg.sample_video is None:
                return (st_, "✖ no sample video is available", *[gr.update()] * (4 + len(VIEW)))
            text = vocab_ if vocab_.strip() else SAMPLE_VOCAB
            st_ = dict(st_)
            if not st_.get("project"):
                st_["project"] = s.store.create_project("sample", [])
            out = s.add_video(st_, str(s.cfg.sample_video), None, 5, text, progress=progress)
            return (*out[:2], text, *out[2:])
        sample_btn.click(sample, [st, vocab], [st, status, vocab, project_dd, video_dd, editor, *VIEW],
                         api_name="sample", show_progress_on=[progress_box]).then(
            prelabel, pre_in, pre_out, show_progress_on=[progress_box], concurrency_limit=8)

        slider.input(P(E.scrub, s), [st, slider], [st, frame_img, timeline], api_name="scrub",
                     trigger_mode="always_last", concurrency_limit=None, **quick)
        prev_btn.click(lambda x: E.step(s, x, -1), [st], [st, frame_img, slider, timeline], api_name="prev", **quick)
        next_btn.click(lambda x: E.step(s, x, +1), [st], [st, frame_img, slider, timeline], api_name="next", **quick)
        track_dd.input(P(E.select_track, s), [st, track_dd], EDIT_OUT, api_name="select_track", **quick)
        def on_row(st_, table_, evt: gr.SelectData):
            return E.select_row(s, st_, table_, evt)
        tracks_df.select(on_row, [st, tracks_df], EDIT_OUT, **quick)
        queue_btn.click(P(E.next_in_queue, s), [st], EDIT_OUT, api_name="next_in_queue", **quick)
        toggle_btn.click(P(E.toggle_hidden, s), [st, track_dd], EDIT_OUT, api_name="toggle_hidden", **quick)
        reviewed_cb.input(P(E.set_reviewed, s), [st, reviewed_cb], [st, status, video_dd, *VIEW],
                          api_name="set_reviewed")
        relabel_btn.click(P(E.relabel, s), [st, track_dd, label_dd], EDIT_OUT, api_name="relabel")
        delete_btn.click(P(E.delete_track, s), [st, track_dd], EDIT_OUT, api_name="delete_track")
        span_btn.click(P(E.delete_span, s), [st, track_dd, span_a, span_b], EDIT_OUT, api_name="delete_span")
        merge_btn.click(P(E.merge, s), [st, track_dd, merge_dd], EDIT_OUT, api_name="merge")
        split_btn.click(P(E.split, s), [st, track_dd], EDIT_OUT, api_name="split")
        copy_btn.click(P(E.copy_forward, s), [st, track_dd, copy_n], EDIT_OUT, api_name="copy_forward")
        undo_btn.click(P(E.undo, s), [st], EDIT_OUT, api_name="undo")
        redo_btn.click(P(E.redo, s), [st], EDIT_OUT, api_name="redo")
        paint_btn.click(s.editor_canvas, [st], [editor], **quick).then(
            P(E.load_editor, s), [st, track_dd], [status, editor], api_name="load_editor")
        save_mask_btn.click(P(E.save_mask, s), [st, track_dd, editor], EDIT_OUT, api_name="save_mask")
        new_track_btn.click(P(E.new_track, s), [st, label_dd, editor], EDIT_OUT, api_name="new_track")
        export_ds_btn.click(s.export_dataset, [st], [status, export_file], api_name="export_dataset",
                            show_progress_on=[progress_box])
        export_res_btn.click(s.export_results, [st], [status, export_file], api_name="export_results")
        for btn, name in ((export_vid_btn, "export_video"), (play_btn, "play")):
            btn.click(s.export_video, [st], [status, export_file, player], api_name=name,
                      show_progress_on=[progress_box])
        # a fresh page shows the projects that exist now and reopens the latest one
        demo.load(s.on_load, [st], [st, status, project_dd, video_dd, vocab, editor, *VIEW],
                  api_visibility="private")
    return demo
