"""The page: the weights banner, the status line, and one tab per thing a person does.

Each tab builds its own components and events (:mod:`app.annotate.ui`, :mod:`app.finetune.ui`);
this module only places them and shares the banner.
"""
from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # must precede Blocks(): no calls home

import gradio as gr  # noqa: E402

from .annotate import ui as annotate_ui  # noqa: E402
from .annotate.session import Session  # noqa: E402
from .finetune.ui import build_tab as build_finetune_tab  # noqa: E402
from .studio import Studio  # noqa: E402

INTRO = """# OVFormer Studio — open-vocabulary video annotation
**New here?** Click **▶ Try the sample**: it adds a short street clip, types a vocabulary and pre-labels
it. Then scrub the slider, pick tracks from the list (the review queue puts doubtful ones first), fix
them in **Correct** / **Paint**, and **Export** a YouTube-VIS dataset that `ovformer train` reads."""

CSS = "#status {min-height: 2.2em} #progress {min-height: 3.2em} #frame_img img {object-fit: contain}"


def build(s: Studio) -> gr.Blocks:
    """The whole page. ``s`` is shared by all sessions; per-session state is a :class:`Session`.
    The API outputs of every event, by name, land in ``s.api``."""
    with gr.Blocks(title="OVFormer Studio", delete_cache=(3600, 3600)) as demo:
        page = {"session": gr.State(Session()), "banner": gr.Markdown(s.hub.banner(), elem_id="banner")}
        gr.Markdown(INTRO)
        page["status"] = gr.Markdown("Ready.", elem_id="status")
        page["progress"] = gr.Markdown("", elem_id="progress")
        with gr.Tabs(elem_id="main_tabs"):
            with gr.Tab("Annotate", elem_id="tab_annotate"):
                annotate = {**page, **annotate_ui.layout(s.annotate)}
            with gr.Tab("Fine-tune", elem_id="tab_finetune"):
                build_finetune_tab(s.finetune, page["banner"], demo, s.wiring)
        annotate_ui.wire(s.annotate, s.review, annotate, s.wiring, demo)
    return demo
