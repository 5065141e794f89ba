"""Background runs for the app: `start_run(settings)` launches training in its own process.

A separate process keeps the app responsive (no GIL contention, no shared CUDA state) and
lets a crash in training leave the app alive. The app follows the run through the run
folder (`read_progress`, `read_metrics`) and stops it with `RunHandle.stop()`, which asks
for a checkpoint first (the STOP file), so the run can be resumed later.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from training.metrics import read_progress, request_stop
from training.settings import TrainSettings

SETTINGS_FILE = "settings.json"
LOG_FILE = "train.log"


@dataclass
class RunHandle:
    """A training process started by `start_run`."""

    run_dir: Path
    process: subprocess.Popen

    def poll(self) -> int | None:
        """Exit status, or None while running."""
        return self.process.poll()

    def running(self) -> bool:
        return self.process.poll() is None

    def progress(self) -> dict | None:
        """Latest `progress.json` (see `training.metrics.read_progress`)."""
        return read_progress(self.run_dir)

    def stop(self, timeout: float | None = None) -> int | None:
        """Ask the run to checkpoint and stop; wait up to ``timeout`` s (None: don't wait)."""
        request_stop(self.run_dir)
        if timeout is None:
            return None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """Terminate at once (no checkpoint)."""
        self.process.terminate()

    def wait(self, timeout: float | None = None) -> int:
        return self.process.wait(timeout)


def start_run(settings: TrainSettings, nproc: int = 1, env: dict[str, str] | None = None) -> RunHandle:
    """Start ``settings`` in a background process and return at once.

    Args:
        settings: the run; its `out` folder receives settings.json, train.log and the outputs.
        nproc: data-parallel processes (launched through torchrun when > 1).
        env: extra environment variables for the child.

    Returns:
        A `RunHandle`; stdout and stderr go to `RUN_DIR/train.log`.
    """
    run_dir = Path(settings.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / SETTINGS_FILE).write_text(json.dumps(settings.to_dict(), indent=2))
    args = ["train", "--settings", str(run_dir / SETTINGS_FILE), "--no-progress"]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "training", *args]
    else:
        cmd = [sys.executable, "-m", "training", *args]
    child_env = {**os.environ, **(env or {})}
    root = str(Path(__file__).resolve().parent.parent)  # so `-m training` resolves from anywhere
    child_env["PYTHONPATH"] = root + os.pathsep + child_env.get("PYTHONPATH", "")
    log = open(run_dir / LOG_FILE, "ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=child_env, cwd=root)
    log.close()  # the child holds its own descriptor
    return RunHandle(run_dir, proc)
