"""Entry point of `ovformer dashboard`: starts the Streamlit page script on 127.0.0.1.

    ovformer dashboard --runs runs --datasets datasets --reports reports --port 8501
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

PAGE_SCRIPT = Path(__file__).with_name("streamlit_app.py")
# The repository root, put on the server's PYTHONPATH: `streamlit run` only adds the page
# script's own folder, and the page imports `app.dashboard.*`.
_ROOT = Path(__file__).resolve().parents[2]


def build_parser() -> argparse.ArgumentParser:
    """Arguments of `ovformer dashboard`."""
    p = argparse.ArgumentParser(prog="ovformer dashboard",
                                description="Training runs, evaluation reports, datasets and results in a browser.")
    p.add_argument("--runs", default="runs", help="folder of training runs (RUN_DIR/metrics.jsonl, eval/*.json)")
    p.add_argument("--datasets", default="datasets", help="folder of YouTube-VIS datasets and app exports")
    p.add_argument("--reports", default="reports", help="folder of evaluation METRICS json files")
    p.add_argument("--port", type=int, default=8501, help="port on 127.0.0.1 (default 8501)")
    return p


def build_command(runs: str, datasets: str, reports: str, port: int, python: str = sys.executable) -> list[str]:
    """The `streamlit run` command line: headless, loopback only, usage statistics off.

    gatherUsageStats=false stops the browser from fetching data.streamlit.io; the file watcher
    is off because this is not a development server and polling costs CPU on big folders.
    """
    return [
        python, "-m", "streamlit", "run", str(PAGE_SCRIPT),
        "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
        "--server.address", "127.0.0.1",
        "--server.port", str(port),
        "--server.fileWatcherType", "none",
        "--theme.base", "light",
        "--client.toolbarMode", "viewer",  # no "Deploy" button on a local tool
        "--",
        "--runs", str(Path(runs).resolve()),
        "--datasets", str(Path(datasets).resolve()),
        "--reports", str(Path(reports).resolve()),
    ]


def server_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the server: repo root importable, telemetry off."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), env.get("PYTHONPATH", "")) if p)
    env["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] = "false"
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def main(argv: list[str] | None = None) -> int:
    """Run the dashboard until interrupted; returns the server's exit code."""
    args = build_parser().parse_args(argv)
    cmd = build_command(args.runs, args.datasets, args.reports, args.port)
    print(f"OVFormer dashboard on http://127.0.0.1:{args.port} (Ctrl+C to stop)", flush=True)
    try:
        return subprocess.call(cmd, env=server_env())
    except KeyboardInterrupt:  # streamlit shuts itself down on the same SIGINT
        return 0


if __name__ == "__main__":
    sys.exit(main())
