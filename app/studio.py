"""The app's services, built once and shared by every session (the composition root).

Each service imports no Gradio: the store and its editor, the model hub, the Annotate page's
services (projects/videos/pre-label/export, and track review) and the fine-tuner.
"""
from __future__ import annotations

from .annotate.edits import Editor
from .annotate.review import ReviewService
from .annotate.service import AnnotateService, Config
from .annotate.store import Store
from .finetune.service import FineTuner
from .hub import ModelHub
from .wiring import Wiring


class Studio:
    """What all sessions share. ``api`` lists each API event's outputs by name once the page is built."""

    def __init__(self, cfg: Config, hub: ModelHub) -> None:
        self.cfg, self.hub = cfg, hub
        self.store = Store(cfg.home)
        self.editor = Editor(self.store)
        self.review = ReviewService(self.store, self.editor)
        self.annotate = AnnotateService(cfg, self.store, self.editor, hub, self.review)
        self.finetune = FineTuner(cfg.home, cfg.datasets, self.store, hub)
        self.wiring = Wiring()

    @property
    def api(self) -> dict[str, list[str]]:
        return self.wiring.outputs
