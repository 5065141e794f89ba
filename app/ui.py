"""The page: the weights banner, the status line, and one tab per thing a person does.

Each tab builds its own components and events (:mod:`app.annotate.ui`, :mod:`app.finetune.ui`);
this module only places them and shares the banner.
"""
from __future__ import annotations

import html
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # must precede Blocks(): no calls home

import gradio as gr  # noqa: E402

from .annotate import ui as annotate_ui  # noqa: E402
from .annotate.session import Session  # noqa: E402
from .finetune.ui import build_tab as build_finetune_tab  # noqa: E402
from .hub import ModelHub  # noqa: E402
from .studio import Studio  # noqa: E402
from .wiring import page_of, user_of  # noqa: E402

INTRO = """# OVFormer Studio — open-vocabulary video annotation
**New here?** Click **▶ Try the sample**: it adds a short street clip, types a vocabulary and pre-labels
it. Then scrub the slider, pick tracks from the list (the review queue puts doubtful ones first), fix
them in **Correct** / **Paint**, and **Export** a YouTube-VIS dataset that `ovformer train` reads."""

CSS = ("#status {min-height: 2.2em} #progress {min-height: 3.2em} #frame_img img {object-fit: contain} "
       "#download_progress progress {width: 100%; height: 1.1em} #download_progress .failed {color: #b00020} "
       "#banner td, #banner th {word-break: normal} #banner td:nth-child(1), #banner td:nth-child(3) {white-space: nowrap}")


def build(s: Studio) -> gr.Blocks:
    """The whole page. ``s`` is shared by all sessions; per-session state is a :class:`Session`.
    The API outputs of every event, by name, land in ``s.api``."""
    with gr.Blocks(title="OVFormer Studio", delete_cache=(3600, 3600)) as demo:
        page = {"session": gr.State(Session()), "banner": weights_box(s, demo)}
        gr.Markdown(INTRO)
        page["status"] = gr.Markdown("Ready.", elem_id="status")
        page["progress"] = gr.Markdown("", elem_id="progress")
        with gr.Tabs(elem_id="main_tabs"):
            with gr.Tab("Annotate", elem_id="tab_annotate"):
                annotate = {**page, **annotate_ui.layout(s.annotate)}
            with gr.Tab("Fine-tune", elem_id="tab_finetune"):
                build_finetune_tab(s.finetune, page["banner"], demo, s.wiring)
        annotate_ui.wire(s.annotate, s.review, annotate, s.wiring, demo)

        def leave(request: gr.Request) -> None:
            """The page was closed or reloaded: the deletes it could undo become permanent (only
            its own: another page, or another user's, has another session hash)."""
            s.trash.purge_page(user_of(request) if s.cfg.users else "", page_of(request))
        demo.unload(leave)
    return demo


# --- the weights banner: what the model needs, the picker, Download with its progress -------------


def progress_html(hub: ModelHub) -> str:
    """The download's progress bar and line (empty when nothing was asked)."""
    v = hub.download_view()
    if v.state == "idle":
        return ""
    text = html.escape(v.text)
    if v.state == "failed":
        detail = f"<details><summary>details</summary><pre>{html.escape(v.error or '')}</pre></details>"
        return f'<div class="failed" data-state="failed" data-reason="{v.reason}"><b>{text}</b>{detail}</div>'
    bar = f'<progress max="1" value="{v.fraction:.3f}"></progress>' if v.fraction is not None else "<progress></progress>"
    return f'<div data-state="{v.state}">{bar}<div>{text}</div></div>'


def weights_box(s: Studio, demo: gr.Blocks) -> gr.Markdown:
    """The banner (returned: other tabs update it), the model picker, Download and its progress.

    A ``gr.Timer`` polls the hub's download while it runs; the page's load event switches it on
    again when a download is already running, so the bar survives a reload."""
    hub = s.hub
    banner = gr.Markdown(hub.banner(), elem_id="banner")
    missing = hub.missing_files()
    with gr.Row(equal_height=True):
        picker = gr.Dropdown(choices=[(c.label, c.key) for c in hub.choices()], value=hub.current_key(),
                             label="Model (released models and fine-tuned runs)", show_label=False, container=False,
                             elem_id="model_picker", scale=4, interactive=True)
        download = gr.Button("Download", elem_id="download_btn", variant="primary", scale=1, size="md",
                             visible=bool(missing) and all(f.downloadable for f in missing))
    bar = gr.HTML("", elem_id="download_progress")
    timer = gr.Timer(0.5, active=False)
    s.wiring.name({"banner": banner, "model_picker": picker, "download_progress": bar, "download_timer": timer})
    outs = [banner, picker, download, bar, timer]

    def render(note: str | None = None) -> tuple:
        view = hub.download_view()
        choices = hub.choices()
        can_fetch = bool(hub.missing_files()) and all(f.downloadable for f in hub.missing_files())
        status = progress_html(hub)
        if note:
            status = f"<div>{html.escape(note)}</div>" + status
        return (hub.banner(), gr.Dropdown(choices=[(c.label, c.key) for c in choices], value=hub.current_key()),
                gr.Button(visible=can_fetch and not view.running, interactive=not view.running), status,
                gr.Timer(active=view.running))

    refused = "✖ only an admin may change the model every user pre-labels with (ovformer users admin NAME)"

    def on_download(request: gr.Request) -> tuple:
        if not s.may_change_model(user_of(request)):
            return render(refused)
        hub.start_download()
        return render()

    def on_pick(key: str | None, request: gr.Request) -> tuple:
        if not key:
            return render()
        if not s.may_change_model(user_of(request)):
            return render(refused)
        try:
            note = hub.select(key)
        except Exception as e:  # noqa: BLE001 - a bad checkpoint: say so, keep the current model
            note = f"✖ could not load {key}: {e}"
        return render(note)

    s.wiring.on(download.click, on_download, [], outs, api_name="weights_download", show_progress="hidden")
    s.wiring.on(picker.input, on_pick, [picker], outs, api_name="weights_pick")
    timer.tick(render, None, outs, api_visibility="private", show_progress="hidden")
    demo.load(render, None, outs, api_visibility="private", show_progress="hidden")
    return banner
