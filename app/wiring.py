"""Event wiring by name: every component has a name, every API event lists its outputs by name.

gradio_client returns an event's outputs as a tuple in the order of the event's outputs (a
``gr.State`` or a button is not part of the API). :attr:`Wiring.outputs` records those names per API name,
so a caller (the tests) reads ``named(app.api, "relabel", out)["tracks"]`` instead of ``out[4]``
and adding a component to an event never shifts what others read.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import gradio as gr


class Wiring:
    """Names of components, and the named outputs of each API event."""

    def __init__(self) -> None:
        self.names: dict[int, str] = {}
        self.outputs: dict[str, list[str]] = {}

    def name(self, components: dict[str, gr.components.Component]) -> None:
        """Register components under their names (a view's fields)."""
        self.names.update({id(c): n for n, c in components.items()})

    def on(self, trigger: Callable[..., Any], fn: Callable[..., Any], inputs: Sequence[Any],
           outputs: Sequence[Any], *, api_name: str | None = None, **kw: Any) -> Any:
        """``trigger(fn, inputs, outputs, ...)``, remembering the API outputs by name."""
        if api_name:
            # what gradio_client returns: components with skip_api (State, Button) are left out
            self.outputs[api_name] = [self.names[id(c)] for c in outputs if not c.skip_api]
        return trigger(fn, inputs, list(outputs), api_name=api_name, **kw)


def user_of(request: gr.Request | None) -> str:
    """Who sent an event: the login name with ``--users``, "" in the single-user local mode.
    Every event that reads or changes a user's things takes it from the request (a parameter
    annotated ``gr.Request``), never from an input a client could set."""
    return (getattr(request, "username", None) or "") if request is not None else ""


def page_of(request: gr.Request | None) -> str:
    """Which open page sent an event (Gradio's session hash, "" without one): a delete is
    undoable from that page until it is left (:mod:`app.annotate.trash`)."""
    return (getattr(request, "session_hash", None) or "") if request is not None else ""


def named(api: dict[str, list[str]], api_name: str, out: Any) -> dict[str, Any]:
    """gradio_client's outputs of ``api_name`` by name (a single output comes back bare)."""
    names = api[api_name]
    values = out if isinstance(out, (list, tuple)) and len(names) > 1 else [out]
    return dict(zip(names, values, strict=True))
