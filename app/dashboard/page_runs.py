"""Dashboard pages for training runs and evaluation reports."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from app.dashboard import cache
from app.dashboard import figures as fg
from app.dashboard.cache import Folders, pct
from app.dashboard.loaders import RunData, label_for, loss_terms

# Selecting every run of a large folder by default would load them all; the newest few are
# what one usually compares.
DEFAULT_RUNS = 4


def _run_table(runs: list[RunData]) -> pd.DataFrame:
    rows = []
    for r in runs:
        last = r.train[-1] if r.train else {}
        aps = [e["AP"] for e in r.evals if e.get("AP", -1) >= 0]
        rows.append({
            "run": r.name,
            "iterations": int(max((x["iteration"] for x in r.train), default=0)),
            "last loss": last.get("loss"),
            "last lr": last.get("lr"),
            "samples/s": last.get("samples_per_s"),
            "s/iter": last.get("iter_time_s"),
            "best AP (%)": round(max(aps) * 100, 2) if aps else None,
            "final checkpoint": r.has_final,
        })
    return pd.DataFrame(rows)


def _chart(fig, key: str) -> None:
    st.plotly_chart(fig, key=key, config={"displaylogo": False})


def training_page(folders: Folders) -> None:
    """Loss terms, learning rate, throughput and validation mAP of the selected runs, overlaid."""
    st.title("Training runs")
    paths = cache.list_runs(folders.runs)
    if not paths:
        st.info(f"No training runs (folders with metrics.jsonl or config.json) in `{folders.runs}`.")
        return
    by_name = {Path(p).name: p for p in paths}
    names = st.multiselect("Runs to compare", list(by_name), default=list(by_name)[:DEFAULT_RUNS],
                           key="runs", bind="query-params")
    if not names:
        st.info("Pick one or more runs.")
        return
    runs = cache.load_with_progress([by_name[n] for n in names], cache.run, "runs")
    cache.show_warnings([w for r in runs for w in r.warnings])
    st.dataframe(_run_table(runs), hide_index=True, key="run_table",
                 column_config={"last lr": st.column_config.NumberColumn(format="%.2e")})

    log_loss = st.toggle("Log scale for losses", value=False, key="log_loss")
    colors = {name: fg.run_color(i) for i, name in enumerate(sorted(by_name))}  # stable per run
    c1, c2 = st.columns(2)
    with c1:
        _chart(fg.training_figure(runs, "loss", "loss", "Total loss", log_y=log_loss, colors=colors), "fig_loss")
    with c2:
        _chart(fg.eval_figure(runs, colors=colors), "fig_eval")
    terms = loss_terms(runs)
    if terms:
        fig = fg.loss_terms_figure(runs, terms, colors)
        if log_loss:
            fig.update_yaxes(type="log")
        _chart(fig, "fig_terms")
    c3, c4 = st.columns(2)
    with c3:
        _chart(fg.training_figure(runs, "lr", "lr", "Learning rate", colors=colors), "fig_lr")
    with c4:
        _chart(fg.training_figure(runs, "samples_per_s", "throughput", "Throughput (samples/s)", colors=colors),
               "fig_tp")
    with st.expander("Run configs"):
        for r in runs:
            st.caption(r.name)
            st.json(r.config, expanded=False)


def reports_page(folders: Folders) -> None:
    """AP/AR tiles, base vs novel, and per-category AP sorted worst first."""
    st.title("Evaluation reports")
    roots = [folders.reports, folders.runs]
    paths = cache.report_paths(folders)
    if not paths:
        st.info(f"No METRICS json files in `{folders.reports}` or in `{folders.runs}/*/eval`.")
        return
    by_label = {label_for(p, roots): p for p in paths}
    labels = list(by_label)
    label = st.selectbox("Report", labels, key="report", bind="query-params")
    others = st.multiselect("Compare with", [x for x in labels if x != label], key="compare")
    reps = cache.load_with_progress([label, *others], lambda x: cache.report(by_label[x], x), "reports")
    cache.show_warnings([w for r in reps for w in r.warnings])
    rep = reps[0]
    if not rep.summary:
        st.error(f"`{label}` has no metrics to show.")
        return

    tiles = [k for k in ("AP", "AP50", "AP75", "AR1", "AR10", "AR100", "AP_base", "AP_novel") if k in rep.summary]
    for col, k in zip(st.columns(len(tiles)), tiles):
        col.metric(k, pct(rep.summary[k]))
    st.caption("Percent; n/a = undefined in the evaluator (no ground truth in that slice).")
    _chart(fg.summary_figure(reps), "fig_summary")

    if not rep.per_category:
        st.info("This report has no per-category AP.")
        return
    defined = [c for c in rep.per_category if c["AP"] is not None]
    has_split = any(c["partition"] != "all" for c in defined)
    c1, c2 = st.columns([1, 2])
    part = c1.radio("Categories", ["all", "base", "novel"] if has_split else ["all"], horizontal=True, key="part")
    n_max = max(1, len(defined))
    top_n = c2.slider("Worst categories shown", 1, n_max, min(30, n_max), key="top_n")
    _chart(fg.per_category_figure(rep, top_n, part), "fig_percat")
    undefined = [c["name"] for c in rep.per_category if c["AP"] is None]
    if undefined:
        st.caption(f"{len(undefined)} {'category' if len(undefined) == 1 else 'categories'} without "
                   "ground truth (AP undefined): "
                   + ", ".join(undefined[:20]) + (" …" if len(undefined) > 20 else ""))
    with st.expander("All categories"):
        df = pd.DataFrame(rep.per_category)
        df["AP"] = df["AP"].map(lambda v: None if v is None else round(v * 100, 2))
        st.dataframe(df.sort_values("AP", na_position="last"), hide_index=True, key="cat_table")
