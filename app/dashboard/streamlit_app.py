"""Streamlit page script of `ovformer dashboard` (started by app/dashboard/main.py).

Usage: streamlit run streamlit_app.py -- --runs DIR --datasets DIR --reports DIR
"""

from __future__ import annotations

import sys

import streamlit as st

from app.dashboard.cache import _discover, list_runs, warm_up_library
from app.dashboard.loaders import Folders, parse_folders
from app.dashboard.page_data import datasets_page, results_page
from app.dashboard.page_runs import reports_page, training_page


def _sidebar(folders: Folders) -> None:
    with st.sidebar:
        st.caption(f"runs: `{folders.runs}`  \ndatasets: `{folders.datasets}`  \nreports: `{folders.reports}`")
        if st.button("Rescan folders", key="rescan"):
            _discover.clear()
            list_runs.clear()


def main() -> None:
    """Build the navigation; each page reads only what it shows."""
    folders = parse_folders(sys.argv[1:])
    st.set_page_config(page_title="OVFormer dashboard", layout="wide")

    # Named closures: st.Page needs a distinct callable per page.
    def training() -> None:
        training_page(folders)

    def reports() -> None:
        reports_page(folders)

    def datasets() -> None:
        datasets_page(folders)

    def results() -> None:
        results_page(folders)

    pages = [
        st.Page(training, title="Training runs", url_path="training", default=True),
        st.Page(reports, title="Evaluation reports", url_path="reports"),
        st.Page(datasets, title="Datasets", url_path="datasets"),
        st.Page(results, title="Results browser", url_path="results"),
    ]
    page = st.navigation(pages)
    _sidebar(folders)
    page.run()
    warm_up_library()  # after the page is sent, so the import does not delay the first paint


main()
