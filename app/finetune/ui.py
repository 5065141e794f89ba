"""The Fine-tune tab: choose data, start a run, watch it, load the result, compare before/after.

Layout and wiring only (logic: :mod:`app.finetune.service`, :mod:`app.finetune.closed_loop`;
figures: :mod:`app.dashboard.figures`, shared with the dashboard). A ``gr.Timer``
polls the run folder once a second while something moves; figures are re-sent only when new
metrics arrived, so the plots do not flicker. Every event has an ``api_name`` (``/ft_*``) so
gradio_client drives what the page drives, and every component an ``elem_id``.
"""
from __future__ import annotations

import time
from typing import Any

import gradio as gr

from ..dashboard.figures import LOOP_KEYS, closed_loop_figure, run_loss_figure, run_map_figure
from ..dashboard.loaders import RunData, split_metrics
from ..annotate.trash import TrashError
from ..wiring import Wiring, page_of, user_of
from .service import FineTuneError, FineTuner, RunView, StartRequest

MOVING = ("starting", "running", "evaluating")
LOOP_HEADERS = ["metric", "before", "after", "change"]


def run_data(v: RunView) -> RunData:
    """The run's metrics.jsonl records as the figures take them (training and eval rows)."""
    train, evals = split_metrics(v.metrics)
    return RunData(name=v.name, path="", train=train, evals=evals)


def loop_rows(loop: dict | None) -> list[list[Any]]:
    """[metric, before %, after %, change] for AP, AP50, AP75 (formatted: the table only shows them)."""
    if not loop:
        return []
    rows = []
    for k in LOOP_KEYS:
        b, a = loop["before"].get(k, -1), loop["after"].get(k, -1)
        rows.append([k, f"{100 * b:.1f}", f"{100 * a:.1f}", f"{100 * (a - b):+.1f}" if min(a, b) >= 0 else "n/a"])
    return rows


def _num(x: Any) -> float:
    """A number from the page (refused with a message, not an exception, when it is not one)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise FineTuneError(f"{x!r} is not a number") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise FineTuneError(f"{x!r} is not a finite number")
    return v


def _int(x: Any) -> int:
    return int(_num(x))


def progress_html(v: RunView | None) -> str:
    if v is None:
        return ""
    p = v.progress
    it, total = int(p.get("iteration") or 0), int(p.get("total") or 0)
    frac = 1.0 if v.state == "finished" else (it / total if total else 0.0)
    bits = [f"iteration {it}/{total or '?'}"]
    if p.get("loss") is not None and v.state in MOVING:
        bits.append(f"loss {p['loss']:.3f}")
    if p.get("lr") is not None and v.state in MOVING:
        bits.append(f"lr {p['lr']:.2e}")
    if p.get("eta_s") is not None and v.state in MOVING:
        bits.append(f"ETA {_duration(p['eta_s'])}")
    if p.get("elapsed_s") is not None:
        bits.append(f"elapsed {_duration(p['elapsed_s'])}")
    color = {"failed": "#dc2626", "stopped": "#d97706", "finished": "#16a34a"}.get(v.state, "#2563eb")
    return (f'<div style="background:#e5e7eb;border-radius:6px;height:16px;overflow:hidden">'
            f'<div style="width:{100 * frac:.1f}%;height:100%;background:{color}"></div></div>'
            f'<div style="margin-top:4px">{v.state} · {" · ".join(bits)}</div>')


def _duration(s: float) -> str:
    s = float(s)
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min"


def status_text(v: RunView) -> str:
    """What the run is doing, in one or two lines (log tail on failure)."""
    p, head = v.progress, f"**{v.name}**"
    text = {"starting": f"⏳ {head}: starting (data, CLIP and the model are loading)…",
            "running": f"⏳ {head}: training, iteration {p.get('iteration', 0)}/{p.get('total', '?')}",
            "evaluating": f"⏳ {head}: scoring the held-out set at iteration {p.get('iteration', 0)}",
            "stopped": f"■ {head}: stopped at iteration {p.get('iteration', 0)} (a checkpoint was saved)",
            "finished": f"✔ {head} finished: `{v.final}`. **Load the fine-tuned model** to pre-label with it.",
            }.get(v.state, f"✖ {head} failed: {v.error}" + (f"\n```\n{v.log_tail}\n```" if v.log_tail else ""))
    if v.stop_requested and v.state in MOVING:
        text += " — ■ stop requested: it checkpoints and stops after this iteration"
    excluded = v.record.get("excluded") or {}
    if excluded:
        text += "  \nHeld-out videos kept out of training: " + "; ".join(
            f"{d}: {', '.join(n)}" for d, n in excluded.items())
    if v.loop is not None and not v.loop.finished:
        text += f"  \n⏳ closed loop: {v.loop.message} ({v.loop.done}/{v.loop.total} videos)"
    elif v.loop is not None and v.loop.state == "error":
        text += f"  \n✖ {v.loop.message}"
    elif v.loop_result:
        b, a = v.loop_result["before"]["AP"], v.loop_result["after"]["AP"]
        text += (f"  \n✔ closed loop on {len(v.loop_result['videos'])} held-out videos: "
                 f"AP {100 * b:.1f} → {100 * a:.1f}")
    return text


def build_tab(ft: FineTuner, banner: gr.Markdown, demo: gr.Blocks, w: Wiring) -> None:
    """The tab's contents; call inside ``with gr.Tab(...)``. ``banner`` is the page's weights banner."""
    gr.Markdown("Fine-tune the model on datasets exported from your projects, then check on held-out "
                "**reviewed** videos whether it got better (the closed loop).")
    model_md = gr.Markdown(elem_id="ft_model")
    with gr.Row():
        with gr.Column(scale=1, min_width=330):
            with gr.Accordion("1 · Training data", open=True):
                with gr.Row():
                    datasets = gr.Dropdown(label="Exported datasets", multiselect=True, choices=[], scale=4,
                                           elem_id="ft_datasets")
                    refresh = gr.Button("↻", scale=0, min_width=44, elem_id="ft_refresh")
            with gr.Accordion("2 · Held-out videos (closed loop)", open=True):
                project = gr.Dropdown(label="Project", choices=[], elem_id="ft_project")
                heldout = gr.Dropdown(label="Reviewed videos to hold out (left out of training)", multiselect=True,
                                      choices=[], elem_id="ft_heldout")
                heldout_ds = gr.Dropdown(label="…or a held-out dataset", choices=[], elem_id="ft_heldout_ds")
                auto = gr.Checkbox(True, label="Run the closed loop when training finishes", elem_id="ft_auto")
            with gr.Accordion("3 · Settings", open=True):
                note = gr.Markdown(elem_id="ft_note")
                with gr.Row():
                    iters = gr.Number(50, label="Iterations", precision=0, minimum=1, elem_id="ft_iters")
                    batch = gr.Number(2, label="Batch (clips)", precision=0, minimum=1, elem_id="ft_batch")
                with gr.Row():
                    lr = gr.Number(0, label="Learning rate (0 = recipe)", minimum=0, elem_id="ft_lr")
                    min_size = gr.Number(0, label="Training shorter side (0 = recipe)", precision=0, minimum=0,
                                         elem_id="ft_min_size")
                with gr.Row():
                    eval_every = gr.Number(0, label="Held-out mAP every N iterations (0 = at the end)", precision=0,
                                           minimum=0, elem_id="ft_eval_every")
                    loop_size = gr.Number(0, label="Closed-loop shorter side (0 = model's)", precision=0, minimum=0,
                                          elem_id="ft_loop_size")
                name = gr.Textbox(label="Run name (optional)", elem_id="ft_name")
            with gr.Row():
                start = gr.Button("Start fine-tuning", variant="primary", elem_id="ft_start")
                stop = gr.Button("Stop", variant="stop", elem_id="ft_stop")
            with gr.Accordion("Delete a run", open=False):
                confirm = gr.Checkbox(False, label="I am sure (↶ Undo delete brings it back until you leave "
                                                   "this page)", elem_id="ft_confirm")
                delete = gr.Button("Delete the selected run", variant="stop", elem_id="ft_delete")
                undo = gr.Button("↶ Undo delete", visible=False, elem_id="ft_undo_delete")  # shown after a delete
        with gr.Column(scale=2):
            run = gr.Dropdown(label="Run", choices=[], elem_id="ft_run")
            status = gr.Markdown("No run yet.", elem_id="ft_status")
            progress = gr.HTML(elem_id="ft_progress")
            with gr.Row():
                loss_plot = gr.Plot(label="Loss", elem_id="ft_loss")
                map_plot = gr.Plot(label="mAP", elem_id="ft_map")
            with gr.Row():
                load = gr.Button("Load the fine-tuned model", interactive=False, elem_id="ft_load")
                loop_btn = gr.Button("Closed loop: re-label held-out videos before / after", interactive=False,
                                     elem_id="ft_loop_btn")
            with gr.Row():
                loop_df = gr.Dataframe(headers=LOOP_HEADERS, interactive=False, label="Held-out AP (%)",
                                       elem_id="ft_loop_table", scale=2, min_width=320)
                loop_plot = gr.Plot(label="Before vs after", elem_id="ft_loop_plot", scale=3)
    timer = gr.Timer(1.0, active=False)
    seen = gr.State({})
    w.name({"confirm": confirm, "banner": banner, "model": model_md, "datasets": datasets, "project": project, "heldout": heldout,
            "heldout_ds": heldout_ds, "note": note, "iters": iters, "batch": batch, "eval_every": eval_every,
            "run": run, "status": status, "progress": progress, "loss_plot": loss_plot, "map_plot": map_plot,
            "load": load, "loop_btn": loop_btn, "loop_table": loop_df, "loop_plot": loop_plot, "timer": timer})

    def who(request: gr.Request) -> str:
        """The requesting user with ``--users``; the one local user "" otherwise."""
        return user_of(request) if ft.accounts else ""

    def lists(request: gr.Request, proj: Any = None) -> tuple:
        user = who(request)
        projects = [(n, i) for i, n in ft.store.projects(user)]
        pid = proj if proj in [i for _, i in projects] else (projects[-1][1] if projects else None)
        names = ft.datasets(user)
        spec_label, (preset, _, clip) = ft.hub.label(), ft.model_setup()
        return (gr.Dropdown(choices=names), gr.Dropdown(choices=projects, value=pid),
                gr.Dropdown(choices=ft.reviewed_videos(pid, user)), gr.Dropdown(choices=[""] + names),
                gr.Dropdown(choices=ft.runs(user)), f"Starts from the loaded weights: `{spec_label}` "
                f"(preset `{preset}`, CLIP `{clip}`).")
    list_out = [datasets, project, heldout, heldout_ds, run, model_md]

    def on_load(request: gr.Request) -> tuple:
        user = who(request)
        d = ft.defaults()
        runs = ft.runs(user)
        out = lists(request)
        return (*out[:4], gr.Dropdown(choices=runs, value=ft.active_of(user) or (runs[0] if runs else None)), out[5],
                d["note"], d["iters"], d["batch"], d["eval_every"], gr.Timer(active=bool(runs)))

    w.on(refresh.click, lists, [project], list_out, api_name="ft_refresh")
    def on_project(request: gr.Request, p: Any) -> gr.Dropdown:
        return gr.Dropdown(choices=ft.reviewed_videos(p, who(request)), value=[])
    w.on(project.input, on_project, [project], [heldout],
                  api_name="ft_project")
    demo.load(on_load, None, [*list_out, note, iters, batch, eval_every, timer], api_visibility="private")

    def do_start(request: gr.Request, ds, proj, held, held_ds, n_it, n_b, lr_, size, every, lsize, auto_,
                 name_) -> tuple:
        user = who(request)
        try:
            req = StartRequest(list(ds or []), _int(proj) if proj else None, [_int(v) for v in held or []],
                               held_ds or None, _int(n_it or 1), _int(n_b or 1), _num(lr_ or 0) or None,
                               _int(size or 0) or None, _int(every or 0), _int(lsize or 0) or None, bool(auto_),
                               str(name_ or ""))
            started = ft.start(req, user)
        except FineTuneError as e:
            return f"✖ {e} (nothing was started)", gr.Dropdown(), gr.Timer()
        return (f"⏳ **{started}** started", gr.Dropdown(choices=ft.runs(user), value=started), gr.Timer(active=True))
    w.on(start.click, do_start, [datasets, project, heldout, heldout_ds, iters, batch, lr, min_size, eval_every,
                           loop_size, auto, name], [status, run, timer], api_name="ft_start")

    poll_out = [status, progress, loss_plot, map_plot, load, loop_btn, loop_df, loop_plot, seen, timer]

    def render(user: str, name: str | None, seen_: dict, force: bool) -> tuple:
        if not name:
            return ("No run yet.", "", *[gr.skip()] * 6, seen_, gr.Timer(active=False))
        try:
            v = ft.view(name, user)
        except FineTuneError as e:
            return (f"✖ {e}", "", *[gr.skip()] * 6, seen_, gr.Timer(active=False))
        key = {"run": name, "n": len(v.metrics), "loop": bool(v.loop_result)}
        new = force or key != seen_
        loop_pending = (v.state == "finished" and str(ft.run_dir(name, user)) in ft.handles and v.record.get("auto_loop")
                        and v.record.get("heldout", {}).get("kind") and not v.loop_result
                        and (v.loop is None or not v.loop.finished))
        moving = v.state in MOVING or loop_pending or (v.loop is not None and not v.loop.finished)
        done = v.final is not None
        return (status_text(v), progress_html(v),
                run_loss_figure(run_data(v)) if new else gr.skip(),
                run_map_figure(run_data(v), v.loop_result) if new else gr.skip(),
                gr.Button(interactive=done),
                gr.Button(interactive=done and bool(v.record.get("heldout", {}).get("kind"))),
                loop_rows(v.loop_result) if new else gr.skip(), closed_loop_figure(v.loop_result) if new else gr.skip(),
                key, gr.Timer(active=bool(moving)))

    def poll(request: gr.Request, n: str | None, s: dict) -> tuple:
        return render(who(request), n, s, False)

    def view(request: gr.Request, n: str | None, s: dict) -> tuple:
        return render(who(request), n, s, True)
    w.on(timer.tick, poll, [run, seen], poll_out, api_name="ft_poll",
               show_progress="hidden", concurrency_limit=None)
    w.on(run.input, view, [run, seen], poll_out, api_name="ft_view", show_progress="hidden")

    def do_stop(request: gr.Request, name: str | None) -> str:
        try:
            return ft.stop(name, who(request))
        except FineTuneError as e:
            return f"✖ {e}"
    w.on(stop.click, do_stop, [run], [status], api_name="ft_stop")

    def undo_button(user: str, page: str) -> gr.Button:
        text = ft.trash.undo_label(user, page, ("run",))
        return gr.Button(value=text or "↶ Undo delete", visible=bool(text))

    def do_delete(request: gr.Request, name: str | None, sure: bool) -> tuple:
        user, page = who(request), page_of(request)
        if not sure:
            return "✖ tick **I am sure** to delete the run", gr.Dropdown(), gr.Button()
        try:
            msg = "✔ " + ft.delete_run(name, user, page)
        except FineTuneError as e:
            return f"✖ {e}", gr.Dropdown(), gr.Button()
        return msg, gr.Dropdown(choices=ft.runs(user), value=None), undo_button(user, page)
    w.on(delete.click, do_delete, [run, confirm], [status, run, undo], api_name="ft_delete")

    def do_undo(request: gr.Request) -> tuple:
        user, page = who(request), page_of(request)
        try:
            e, restored = ft.trash.restore(user, page, ("run",))
        except (TrashError, OSError) as err:  # nothing pending, or it could not be moved back
            return f"✖ {err}", gr.Dropdown(), undo_button(user, page)
        return ("✔ " + e.restored(restored), gr.Dropdown(choices=ft.runs(user), value=restored),
                undo_button(user, page))
    w.on(undo.click, do_undo, [], [status, run, undo], api_name="ft_undo_delete")

    def do_load(request: gr.Request, name: str | None) -> tuple:
        try:
            label = ft.load_final(name, who(request))
        except FineTuneError as e:
            return f"✖ {e}", gr.Markdown(), gr.Markdown()
        except Exception as e:  # a broken checkpoint: the old weights stay loaded
            return f"✖ could not load the fine-tuned model ({type(e).__name__}: {e})", gr.Markdown(), gr.Markdown()
        return (f"✔ pre-labelling now uses the fine-tuned weights `{label}`", ft.hub.banner(),
                lists(request)[5])
    w.on(load.click, do_load, [run], [status, banner, model_md], api_name="ft_load")

    def do_loop(request: gr.Request, name: str | None, seen_: dict):
        user = who(request)
        try:
            job = ft.closed_loop(name, user)
        except FineTuneError as e:
            yield {status: f"✖ {e}"}
            return
        while not job.finished:
            yield {status: f"⏳ closed loop: {job.message} ({job.done}/{job.total} videos)"}
            time.sleep(0.3)
        yield dict(zip(poll_out, render(user, name, seen_, True)))
    w.on(loop_btn.click, do_loop, [run, seen], poll_out, api_name="ft_closed_loop", show_progress_on=[status])
