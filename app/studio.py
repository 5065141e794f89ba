"""The app's services, built once and shared by every session (the composition root).

Each service imports no Gradio: the store and its editor, the model hub, the Annotate page's
services (projects/videos/pre-label/export, and track review) and the fine-tuner.
"""
from __future__ import annotations

from .annotate.edits import Editor
from .auth import Users
from .annotate.review import ReviewService
from .annotate.service import AnnotateService, Config
from .annotate.store import Store
from .annotate.trash import Trash
from .finetune.service import FineTuner
from .hub import ModelHub
from .wiring import Wiring


class Studio:
    """What all sessions share. ``api`` lists each API event's outputs by name once the page is built."""

    def __init__(self, cfg: Config, hub: ModelHub) -> None:
        self.cfg, self.hub = cfg, hub
        #: the accounts with ``--users`` (None: the single-user local mode, where "" is everyone)
        self.users = Users(cfg.home) if cfg.users else None
        self.store = Store(cfg.home)
        #: pending deletes, undoable until their page is left (``demo.unload``, app.ui)
        self.trash = Trash(self.store)
        self.editor = Editor(self.store)
        self.review = ReviewService(self.store, self.editor)
        self.annotate = AnnotateService(cfg, self.store, self.editor, hub, self.review, self.trash)
        # next to the sweep of spill folders (AnnotateService's JobRunner): what a stopped or
        # killed app's pages left in the trash is deleted for good now
        self.trash.purge_leftovers()
        self.finetune = FineTuner(cfg.home, cfg.datasets, self.store, hub, self.may_change_model,
                                  accounts=cfg.users, trash=self.trash)
        self.wiring = Wiring()

    def may_change_model(self, user: str) -> bool:
        """Whether ``user`` may swap the weights every session pre-labels with (admins only
        with ``--users``; anyone in the single-user local mode)."""
        return self.users is None or self.users.is_admin(user)

    @property
    def api(self) -> dict[str, list[str]]:
        return self.wiring.outputs
