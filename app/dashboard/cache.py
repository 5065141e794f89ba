"""Streamlit caching around the pure loaders, keyed by file mtime and size.

Each public function stats the files it depends on and passes that signature to a
st.cache_data function, so an edited or growing file (a run still training) is re-read on the
next rerun while unchanged files cost one stat per rerun.
"""

from __future__ import annotations

import threading
from typing import Callable, TypeVar

import streamlit as st

from app.dashboard import datasets as dsl
from app.dashboard import loaders as ld
from app.dashboard.loaders import Folders

T = TypeVar("T")


# Discovery walks directory trees; a short ttl keeps slider reruns cheap on large folders while
# new runs still appear within seconds ("Rescan folders" clears it at once).
@st.cache_data(ttl=15, show_spinner="Scanning folders…")
def _discover(roots: tuple[str, ...], kinds: tuple[str, ...]) -> list[str]:
    return ld.discover_json(list(roots), set(kinds))


@st.cache_data(ttl=15, show_spinner=False)
def list_runs(runs_dir: str) -> list[str]:
    """Run folders under runs_dir, newest first."""
    return ld.list_runs(runs_dir)


def report_paths(f: Folders) -> list[str]:
    """METRICS files in the reports folder and in every run's eval/ folder."""
    return _discover((f.reports, f.runs), ("metrics",))


def dataset_paths(f: Folders) -> list[str]:
    """Ground-truth json files (YouTube-VIS folders and the app's exports) in the datasets folder."""
    return _discover((f.datasets,), ("gt",))


def results_paths(f: Folders) -> list[str]:
    """Results lists anywhere under the three folders."""
    return _discover((f.runs, f.reports, f.datasets), ("results",))


@st.cache_data(show_spinner=False, max_entries=512)
def _run(path: str, sig: tuple) -> ld.RunData:
    return ld.load_run(path)


def run(path: str) -> ld.RunData:
    """One run, re-read when any of its files changes."""
    return _run(path, ld.signature(ld.run_files(path)))


@st.cache_data(show_spinner=False, max_entries=512)
def _report(path: str, name: str, sig: tuple) -> ld.Report:
    return ld.load_report(path, name)


def report(path: str, name: str) -> ld.Report:
    """One METRICS file."""
    return _report(path, name, ld.signature([path]))


@st.cache_data(show_spinner="Reading ground truth…", max_entries=16)
def _dataset(path: str, name: str, sig: tuple) -> dsl.DatasetSummary:
    return dsl.load_dataset(path, name)


def dataset(path: str, name: str) -> dsl.DatasetSummary:
    """Summary of one ground-truth json."""
    return _dataset(path, name, ld.signature([path]))


@st.cache_data(show_spinner="Checking the format…", max_entries=16)
def _gt_problem(path: str, name: str, sig: tuple) -> str | None:
    return dsl.check_gt_file(path, name)


def gt_problem(path: str, name: str) -> str | None:
    """What ovformer.ytvis.io rejects in a ground-truth file (None = valid)."""
    return _gt_problem(path, name, ld.signature([path]))


@st.cache_resource(show_spinner=False)
def warm_up_library() -> threading.Thread:
    """Import ovformer's RLE/render modules in the background, once per server.

    The results browser needs them (video and mask codecs); importing them while the user looks at
    the first page makes the results browser open at once.
    """
    def load() -> None:
        import ovformer.render  # noqa: F401
        import ovformer.ytvis.rle  # noqa: F401

    t = threading.Thread(target=load, name="ovformer-import", daemon=True)
    t.start()
    return t


# Results files can be large; keep only a few parsed ones.
@st.cache_data(show_spinner="Reading results…", max_entries=4)
def _results(path: str, sig: tuple) -> dsl.ResultsIndex:
    return dsl.load_results(path)


def results(path: str) -> dsl.ResultsIndex:
    """A results json grouped by video."""
    return _results(path, ld.signature([path]))


def load_with_progress(items: list[str], load: Callable[[str], T], what: str) -> list[T]:
    """Load items one by one under a progress bar, removed when done."""
    if not items:
        return []
    bar = st.progress(0.0, text=f"Loading {what}…")
    out = []
    for i, item in enumerate(items):
        out.append(load(item))
        bar.progress((i + 1) / len(items), text=f"Loading {what}… {i + 1}/{len(items)}")
    bar.empty()
    return out


def show_warnings(warnings: list[str], limit: int = 8) -> None:
    """One st.warning listing the problems (the first few), so bad files are visible but not fatal."""
    if not warnings:
        return
    lines = [f"- {w}" for w in warnings[:limit]]
    if len(warnings) > limit:
        lines.append(f"- … and {len(warnings) - limit} more")
    noun = "problem" if len(warnings) == 1 else "problems"
    st.warning(f"{len(warnings)} {noun} while reading; everything else is shown.\n\n" + "\n".join(lines),
               icon="⚠️")


def pct(v: float | None) -> str:
    """A fraction as a percent string; undefined (-1 / None) as 'n/a'."""
    return "n/a" if v is None else f"{v * 100:.1f}"
