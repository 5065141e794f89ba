"""Plotly figure builders for the dashboard and the app's Fine-tune tab (pure: data in, go.Figure out).

Every figure carries layout.meta = {"chart": <id>} so tests and the browser test can find a
chart and read back its numbers. Values are passed as Python lists rather than numpy arrays so
the figure JSON holds plain numbers (plotly encodes arrays as base64 "bdata" otherwise).
Metric values are shown in percent, the convention of the OVFormer paper tables.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from ovformer.render import track_color

from app.dashboard.datasets import DatasetSummary, histogram
from app.dashboard.loaders import SPLIT_KEYS, SUMMARY_KEYS, Report, RunData, sorted_categories

PALETTE = qualitative.Plotly
LOSS_TERMS = ("loss", "loss_ce", "loss_object_ce", "loss_mask", "loss_dice")
LOOP_KEYS = ("AP", "AP50", "AP75")  # what the closed loop compares
PARTITION_COLORS = {"base": "#1f77b4", "novel": "#ff7f0e", "all": "#7f7f7f"}
# Browsers slow down past a few thousand points per trace; long runs are thinned to this.
MAX_POINTS = 4000


def _layout(fig: go.Figure, chart: str, title: str, height: int = 340, **kw: Any) -> go.Figure:
    fig.update_layout(title=title, meta={"chart": chart}, height=height, template="plotly_white",
                      margin=dict(l=50, r=20, t=60, b=40),
                      legend=dict(orientation="h", x=1, xanchor="right", y=1.02, yanchor="bottom"), **kw)
    return fig


def _thin(xs: list[float], ys: list[float]) -> tuple[list[float], list[float]]:
    """Keep every k-th point (and the last) so a 1M-line log still draws quickly."""
    if len(xs) <= MAX_POINTS:
        return xs, ys
    k = -(-len(xs) // MAX_POINTS)
    idx = list(range(0, len(xs), k))
    if idx[-1] != len(xs) - 1:
        idx.append(len(xs) - 1)
    return [xs[i] for i in idx], [ys[i] for i in idx]


def series(rows: list[dict[str, float]], key: str, scale: float = 1.0) -> tuple[list[float], list[float]]:
    """(iterations, values) of rows that have key, in iteration order."""
    pts = sorted((r["iteration"], r[key] * scale) for r in rows if key in r)
    return [p[0] for p in pts], [p[1] for p in pts]


def run_color(i: int) -> str:
    """The i-th palette colour."""
    return PALETTE[i % len(PALETTE)]


def _colors(runs: list[RunData], colors: dict[str, str] | None) -> list[str]:
    """Each run's colour: from `colors` (keyed by run name; the page derives it from the whole
    runs folder so a run keeps its colour when others are (de)selected), else by position."""
    return [(colors or {}).get(r.name) or run_color(i) for i, r in enumerate(runs)]


def training_figure(runs: list[RunData], key: str, chart: str, title: str, log_y: bool = False,
                    colors: dict[str, str] | None = None) -> go.Figure:
    """One line per run of a training-log key (loss, lr, samples_per_s, iter_time_s)."""
    fig = go.Figure()
    for run, color in zip(runs, _colors(runs, colors)):
        xs, ys = _thin(*series(run.train, key))
        if xs:
            fig.add_trace(go.Scatter(x=xs, y=ys, name=run.name, mode="lines", line=dict(color=color)))
    fig.update_xaxes(title="iteration")
    if log_y:
        fig.update_yaxes(type="log")
    return _layout(fig, chart, title)


def loss_terms_figure(runs: list[RunData], terms: list[str], colors: dict[str, str] | None = None) -> go.Figure:
    """One panel per loss_* term, runs overlaid with the same colours as the other charts."""
    cols = min(2, max(1, len(terms)))
    rows = max(1, -(-len(terms) // cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=terms or ["no loss terms"],
                        horizontal_spacing=0.08, vertical_spacing=0.15)
    for t, term in enumerate(terms):
        for run, color in zip(runs, _colors(runs, colors)):
            xs, ys = _thin(*series(run.train, term))
            if xs:
                fig.add_trace(go.Scatter(x=xs, y=ys, name=run.name, legendgroup=run.name, mode="lines",
                                         showlegend=t == 0, line=dict(color=color), meta=term),
                              row=t // cols + 1, col=t % cols + 1)
    return _layout(fig, "loss_terms", "Loss terms", height=260 * rows + 60)


def eval_figure(runs: list[RunData], keys: tuple[str, ...] = ("AP", "AP50"),
                colors: dict[str, str] | None = None) -> go.Figure:
    """Validation mAP (percent) over iterations: solid AP, dashed AP50, one colour per run."""
    fig = go.Figure()
    dashes = ["solid", "dash", "dot", "dashdot"]
    for run, color in zip(runs, _colors(runs, colors)):
        for j, key in enumerate(keys):
            rows = [r for r in run.evals if r.get(key, -1) >= 0]  # -1 means undefined
            xs, ys = series(rows, key, 100.0)
            if xs:
                fig.add_trace(go.Scatter(x=xs, y=ys, name=f"{run.name} {key}", mode="lines+markers",
                                         line=dict(color=color, dash=dashes[j % len(dashes)])))
    fig.update_xaxes(title="iteration")
    fig.update_yaxes(title="%", rangemode="tozero")
    return _layout(fig, "eval_map", "Validation mAP")


def summary_figure(reports: list[Report]) -> go.Figure:
    """Grouped bars of the summary metrics (percent), one group per metric, one bar per report."""
    fig = go.Figure()
    keys = [k for k in SUMMARY_KEYS + SPLIT_KEYS if any(r.summary.get(k) is not None for r in reports)]
    for i, rep in enumerate(reports):
        ys = [None if rep.summary.get(k) is None else rep.summary[k] * 100 for k in keys]
        fig.add_trace(go.Bar(x=keys, y=ys, name=rep.name, marker_color=run_color(i),
                             text=[None if y is None else f"{y:.1f}" for y in ys], textposition="outside"))
    fig.update_yaxes(title="%", rangemode="tozero")
    return _layout(fig, "summary", "Summary metrics", barmode="group")


def per_category_figure(report: Report, top_n: int = 30, partition: str = "all") -> go.Figure:
    """Per-category AP (percent) as horizontal bars, worst first at the top, base/novel coloured.

    One trace per partition keeps the legend meaningful; a shared category axis keeps the
    sorted order across traces.
    """
    cats = sorted_categories(report, partition)[:top_n]
    order = [c["name"] for c in cats]
    fig = go.Figure()
    for part in ("base", "novel", "all"):
        sel = [c for c in cats if c["partition"] == part]
        if sel:
            fig.add_trace(go.Bar(
                y=[c["name"] for c in sel], x=[c["AP"] * 100 for c in sel], orientation="h",
                name=part, marker_color=PARTITION_COLORS[part],
                customdata=[[c["num_gt_tracks"]] for c in sel],
                hovertemplate="%{y}: AP %{x:.1f} (%{customdata[0]} GT tracks)<extra>" + part + "</extra>"))
    fig.update_yaxes(categoryorder="array", categoryarray=order, autorange="reversed")
    fig.update_xaxes(title="AP (%)", rangemode="tozero")
    return _layout(fig, "per_category", f"Per-category AP, worst {len(cats)} first",
                   height=max(300, 22 * len(cats) + 120))


def class_histogram_figure(ds: DatasetSummary, top_n: int = 40) -> go.Figure:
    """Tracks per category, most frequent first."""
    items = list(ds.class_counts.items())[:top_n]
    fig = go.Figure(go.Bar(x=[k for k, _ in items], y=[v for _, v in items], marker_color=PALETTE[0]))
    fig.update_yaxes(title="tracks")
    return _layout(fig, "class_hist", "Tracks per category")


def _hist_figure(values: list[float], chart: str, title: str, xtitle: str, log: bool) -> go.Figure:
    lefts, rights, counts = histogram(values, log=log)
    centers = [(a + b) / 2 for a, b in zip(lefts, rights)]
    widths = [b - a for a, b in zip(lefts, rights)]
    fig = go.Figure(go.Bar(x=centers, y=counts, width=widths, marker_color=PALETTE[2],
                           customdata=[[a, b] for a, b in zip(lefts, rights)],
                           hovertemplate="%{customdata[0]:.0f}-%{customdata[1]:.0f}: %{y}<extra></extra>"))
    fig.update_xaxes(title=xtitle, type="log" if log and lefts else "linear")
    fig.update_yaxes(title="count")
    return _layout(fig, chart, title)


def track_length_figure(ds: DatasetSummary) -> go.Figure:
    """Distribution of annotated frames per track."""
    return _hist_figure(ds.track_lengths, "track_length", "Track length", "frames per track", log=False)


def mask_area_figure(ds: DatasetSummary) -> go.Figure:
    """Distribution of per-frame mask areas on log-spaced bins."""
    # Log bins only when areas span two decades or more (real data: 10 px to megapixels).
    log = bool(ds.mask_areas) and min(ds.mask_areas) > 0 and max(ds.mask_areas) >= 100 * min(ds.mask_areas)
    return _hist_figure(ds.mask_areas, "mask_area", "Mask area", "pixels", log=log)


def timeline_figure(entries: list[dict[str, Any]], names: dict[int, str], frame: int,
                    track_ids: list[int]) -> go.Figure:
    """Which tracks have a mask on which frame, with the current frame marked."""
    fig = go.Figure()
    for e in entries:
        tid = e["index"] + 1
        if tid not in track_ids:
            continue
        xs: list[float | None] = []
        for t, s in enumerate(e["segmentations"]):
            xs.append(t if s else None)  # None breaks the line where the track is absent
        label = f"#{tid} {names.get(e['category_id'], e['category_id'])}"
        color = "rgb({},{},{})".format(*track_color(tid))  # the colour of its mask in the frame
        fig.add_trace(go.Scatter(x=xs, y=[label] * len(xs), mode="lines+markers", name=label,
                                 showlegend=False, line=dict(width=6, color=color), marker=dict(color=color)))
    fig.add_vline(x=frame, line_color="red")
    fig.update_xaxes(title="frame", rangemode="tozero")
    return _layout(fig, "timeline", "Track timeline", height=max(200, 28 * len(track_ids) + 110))


# -- one run, as the Fine-tune tab follows it -----------------------------------------------------
def run_loss_figure(run: RunData) -> go.Figure:
    """Total loss and its terms over the iterations of one run."""
    fig = go.Figure()
    for key in LOSS_TERMS:
        xs, ys = _thin(*series(run.train, key))
        if xs:
            fig.add_trace(go.Scatter(x=xs, y=ys, name=key, mode="lines+markers",
                                     line=dict(width=3 if key == "loss" else 1.5)))
    fig.update_xaxes(title="iteration")
    fig.update_yaxes(title="loss")
    return _layout(fig, "run_loss", "Training loss", height=330)


def run_map_figure(run: RunData, loop: dict[str, Any] | None = None) -> go.Figure:
    """Held-out mAP (%) at each evaluation of one run; the closed loop's "before" AP at iteration 0."""
    fig = go.Figure()
    for key in LOOP_KEYS:
        xs, ys = series([r for r in run.evals if r.get(key, -1) >= 0], key, 100.0)  # -1: undefined
        if xs:
            fig.add_trace(go.Scatter(x=xs, y=ys, name=key, mode="lines+markers"))
    if loop and (loop.get("before") or {}).get("AP", -1) >= 0:
        fig.add_trace(go.Scatter(x=[0], y=[100 * loop["before"]["AP"]], name="AP before (closed loop)",
                                 mode="markers", marker=dict(size=11, symbol="diamond")))
    fig.update_xaxes(title="iteration")
    fig.update_yaxes(title="%")
    title = "Held-out mAP (%)" if run.evals or loop else "Held-out mAP (%): none yet"
    return _layout(fig, "run_map", title, height=330)


def closed_loop_figure(loop: dict[str, Any] | None) -> go.Figure:
    """Held-out AP, AP50, AP75 (%) before vs after fine-tuning, as grouped bars."""
    fig = go.Figure()
    if loop:
        for which, color in (("before", "#9ca3af"), ("after", "#2563eb")):
            vals = [100 * max(0.0, loop[which].get(k, 0.0)) for k in LOOP_KEYS]
            fig.add_trace(go.Bar(x=list(LOOP_KEYS), y=vals, name=f"{which}: {loop[f'weights_{which}']}",
                                 marker_color=color, text=[f"{v:.1f}" for v in vals], textposition="outside",
                                 cliponaxis=False))  # the label over the tallest bar stays visible
    return _layout(fig, "closed_loop", "Closed loop: held-out AP before vs after fine-tuning (%)", height=330,
                   barmode="group")
