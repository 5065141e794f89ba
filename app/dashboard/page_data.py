"""Dashboard pages for datasets (ground truth statistics) and the results browser."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from app.dashboard import cache
from app.dashboard import figures as fg
from app.dashboard.cache import Folders
from app.dashboard.datasets import DatasetSummary, load_frame, results_frame_size
from app.dashboard.loaders import label_for
from app.dashboard.overlay import frame_items
from ovformer.render import overlay_frame

NO_DATASET = "(none: masks on a blank canvas)"


def _chart(fig, key: str) -> None:
    st.plotly_chart(fig, key=key, config={"displaylogo": False})


def datasets_page(folders: Folders) -> None:
    """Videos, frames, tracks, class histogram, track-length and mask-area distributions."""
    st.title("Datasets")
    paths = cache.dataset_paths(folders)
    if not paths:
        st.info(f"No YouTube-VIS ground-truth json (with a \"videos\" list) under `{folders.datasets}`.")
        return
    by_label = {label_for(p, [folders.datasets]): p for p in paths}
    label = st.selectbox("Dataset", list(by_label), key="dataset", bind="query-params")
    ds = cache.dataset(by_label[label], label)
    cache.show_warnings(ds.warnings)
    if not ds.videos and not ds.num_tracks:
        return

    for col, (k, v) in zip(st.columns(4), [("videos", len(ds.videos)), ("frames", ds.num_frames),
                                            ("tracks", ds.num_tracks), ("categories", len(ds.categories))]):
        col.metric(k, f"{v:,}")
    if st.button("Check the format (the checks of `ovformer train` / `eval`)", key="check_format"):
        problem = cache.gt_problem(by_label[label], label)
        if problem:
            st.error(f"Format problem: {problem}")
        else:
            st.success("The file passes ovformer.ytvis.io's checks.")
    if ds.frames_root:
        st.caption(f"Frames: `{ds.frames_root}`")
    else:
        st.caption("Frames not found next to this json (annotations only).")
    if ds.num_tracks == 0:
        st.info("No annotations (a test split?): only videos and frames are counted.")
    else:
        top_n = st.slider("Categories in the histogram", 1, max(1, len(ds.class_counts)),
                          min(40, max(1, len(ds.class_counts))), key="hist_n")
        _chart(fg.class_histogram_figure(ds, top_n), "fig_classes")
        c1, c2 = st.columns(2)
        with c1:
            _chart(fg.track_length_figure(ds), "fig_tracklen")
        with c2:
            _chart(fg.mask_area_figure(ds), "fig_area")
    with st.expander(f"Videos ({len(ds.videos)})"):
        st.dataframe(pd.DataFrame([{k: v[k] for k in ("id", "name", "length", "height", "width")}
                                   for v in ds.videos]), hide_index=True, key="video_table")


def _match_dataset(video_ids: set, labels: list[str], by_label: dict[str, str]) -> int:
    """Index of the first dataset whose videos include all result videos (0 = none)."""
    for i, lab in enumerate(labels, 1):
        ds = cache.dataset(by_label[lab], lab)
        if video_ids and video_ids <= {v["id"] for v in ds.videos}:
            return i
    return 0


def _track_table(entries: list[dict[str, Any]], names: dict[int, str]) -> pd.DataFrame:
    return pd.DataFrame([{
        "track": e["index"] + 1,
        "category": names.get(e["category_id"], f"class {e['category_id']}"),
        "score": round(e["score"], 3),
        "frames with mask": sum(1 for s in e["segmentations"] if s),
    } for e in entries])


def results_page(folders: Folders) -> None:
    """Pick a results json and a video, scrub frames with the predicted masks drawn."""
    st.title("Results browser")
    res_paths = cache.results_paths(folders)
    if not res_paths:
        st.info("No results json (a list of {video_id, category_id, score, segmentations}) found.")
        return
    roots = [folders.runs, folders.reports, folders.datasets]
    res_by_label = {label_for(p, roots): p for p in res_paths}
    res_label = st.selectbox("Results file", list(res_by_label), key="results", bind="query-params")
    res = cache.results(res_by_label[res_label])
    cache.show_warnings(res.warnings)
    if not res.by_video:
        st.info("This results file has no predictions.")
        return

    gt_by_label = {label_for(p, [folders.datasets]): p for p in cache.dataset_paths(folders)}
    gt_labels = list(gt_by_label)
    default = _match_dataset(set(res.by_video), gt_labels, gt_by_label)
    c1, c2, c3 = st.columns([2, 2, 1])
    gt_label = c1.selectbox("Frames and class names from", [NO_DATASET, *gt_labels], index=default,
                            key="results_gt")
    ds: DatasetSummary | None = cache.dataset(gt_by_label[gt_label], gt_label) if gt_label != NO_DATASET else None
    names = ds.categories if ds else {}
    videos = {v["id"]: v for v in ds.videos} if ds else {}
    # Numeric order for int ids (10 after 9); a file with odd ids still gets a stable order.
    vids = sorted(res.by_video, key=lambda v: (0, v, "") if isinstance(v, int) else (1, 0, str(v)))
    vid = c2.selectbox("Video", vids, key="video", bind="query-params",
                       format_func=lambda v: f"{v}: {videos[v]['name']}" if v in videos else str(v))
    min_score = c3.number_input("Min score", 0.0, 1.0, 0.3, 0.05, key="min_score")

    entries = [e for e in res.by_video[vid] if e["score"] >= min_score]
    size = results_frame_size(res.by_video[vid])
    n_frames = max((len(e["segmentations"]) for e in res.by_video[vid]), default=0)
    if size is None or n_frames == 0:
        st.info("No masks in this video's results.")
        return
    # A one-frame video gets no slider (a slider needs min < max).
    frame = st.slider("Frame", 0, n_frames - 1, 0, key="frame", bind="query-params") if n_frames > 1 else 0
    frame = min(frame, n_frames - 1)
    file_names = videos[vid]["file_names"] if vid in videos else []
    if file_names and len(file_names) != n_frames:
        st.warning(f"Video {vid} has {len(file_names)} frames but its results have {n_frames} "
                   "segmentations; the evaluator would ignore the extra frames.")
    rgb, from_disk = load_frame(ds.frames_root if ds else None,
                                file_names[frame] if frame < len(file_names) else None, size)
    items = frame_items(entries, frame, names)
    # Small frames are scaled up so masks stay inspectable; large ones fit the page.
    st.image(overlay_frame(rgb, items), width="stretch" if size[1] >= 640 else 640, output_format="PNG",
             caption=f"frame {frame} of 0-{n_frames - 1}: {len(items)} masks"
                     + ("" if from_disk else " (frame image not found: blank canvas)"))
    if entries:
        _chart(fg.timeline_figure(entries, names, frame, [e["index"] + 1 for e in entries]), "fig_timeline")
        st.dataframe(_track_table(entries, names), hide_index=True, key="track_table")
    else:
        st.info(f"No predictions with score ≥ {min_score:.2f} in this video.")
