"""The closed loop: re-label the held-out reviewed videos with the weights from before and after
fine-tuning, and score both against the user's corrected tracks.

Both models see the same frames, vocabulary (the held-out set's categories) and predictor
settings, which are also the ones the run's own held-out evaluation used, so "after" here
equals the last point of the run's mAP curve. The user's tracks are never touched: the
predictions go to files only. Outputs in the run folder:

- ``closed_loop.json``: ``{"before": metrics, "after": metrics, "videos": [...],
  "weights_before": label, "weights_after": label, ...}``
- ``eval/closed_loop_before.json``, ``eval/closed_loop_after.json``: METRICS files (the
  dashboard's evaluation reports read them)
- ``closed_loop/{before,after}_results.json``: the predictions (YouTube-VIS results layout)
"""
from __future__ import annotations

import json
import os
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ovformer.ytvis.dataset import find_annotation_file, load_dataset_folder

from ..hub import ModelHub, ModelSpec

LOOP_FILE = "closed_loop.json"
SUMMARY = ("AP", "AP50", "AP75")


def loop_settings(preset: str, min_size: int | None = None) -> dict[str, int]:
    """Predictor settings of the closed loop: the preset's test settings (shorter side optional)."""
    from ovformer.config import get_preset

    cfg = get_preset(preset)
    return {"min_size": int(min_size or cfg.min_size_test), "max_size": int(cfg.max_size_test),
            "clip_length": int(cfg.clip_length), "top_k": int(cfg.test_topk)}


def read_closed_loop(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(run_dir) / LOOP_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)  # a poller never reads half a file


def run_closed_loop(hub: ModelHub, run_dir: Path, record: dict,
                    on_step: Callable[[str | None], None] | None = None) -> dict[str, Any]:
    """Re-label and score the held-out set before and after; write the files; return closed_loop.json.
    ``on_step`` gets a message when a model starts and None after each video.

    Both models go through :func:`ovformer.evaluation.evaluate_dataset` (the held-out set's own
    categories as the vocabulary) with the same :class:`PredictOptions`: the predict-and-score
    the CLI (``ovformer predict --eval``) and training use.
    """
    from ovformer.evaluation import evaluate_dataset
    from ovformer.inference.predictor import PredictOptions

    folder = load_dataset_folder(record["heldout"]["dir"])
    options = PredictOptions(**record["loop"])
    out: dict[str, Any] = {"videos": [Path(v.file_names[0]).parent.name for v in folder.gt.videos],
                           "heldout": record["heldout"], "settings": record["loop"]}
    for which in ("before", "after"):
        spec = ModelSpec(**record[which]["spec"])
        if on_step:
            on_step(f"re-labelling {len(folder.gt.videos)} held-out videos with the weights {which} fine-tuning")
        with hub.lock:  # one model run at a time, and the app's predictor may be this one
            predictor = hub.predictor_for(spec)
            metrics, results = evaluate_dataset(
                predictor, folder, options=options,
                on_video=(lambda done, total: on_step(None)) if on_step else None)
        _write_json(run_dir / "closed_loop" / f"{which}_results.json", results)
        _write_json(run_dir / "eval" / f"closed_loop_{which}.json", metrics)
        out[which], out[f"weights_{which}"] = metrics, predictor.weights_label or spec.describe()
    out["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    _write_json(run_dir / LOOP_FILE, out)
    return out


@dataclass
class LoopJob:
    """A closed loop running in a thread, read by the polling page."""

    run_dir: Path
    total: int
    state: str = "running"  # running | done | error
    message: str = "waiting for the model"
    done: int = 0           # videos re-labelled (both models together)
    result: dict[str, Any] | None = None

    @property
    def finished(self) -> bool:
        return self.state != "running"


class ClosedLoopRunner:
    """One closed loop per run at a time; a second request joins the running one."""

    def __init__(self, hub: ModelHub) -> None:
        self.hub = hub
        self.jobs: dict[str, LoopJob] = {}
        self._lock = threading.Lock()

    def job(self, run_dir: Path) -> LoopJob | None:
        return self.jobs.get(str(run_dir))

    def start(self, run_dir: Path, record: dict, again: bool = True) -> LoopJob | None:
        """Start (or join) the closed loop of a run. ``again=False`` (the automatic start when
        training ends) does nothing if the loop ran already or was started by hand meanwhile:
        the run reports "finished" a moment before its process exits."""
        with self._lock:
            old = self.jobs.get(str(run_dir))
            if old is not None and not old.finished:
                return old
            if not again and (old is not None or read_closed_loop(run_dir) is not None):
                return old
            n = len(json.loads(_annotation_file(record).read_text())["videos"])
            job = LoopJob(Path(run_dir), total=2 * n)
            self.jobs[str(run_dir)] = job
        threading.Thread(target=self._run, args=(job, record), daemon=True, name="closed-loop").start()
        return job

    def _run(self, job: LoopJob, record: dict) -> None:
        def step(msg: str | None) -> None:
            if msg is None:
                job.done += 1
            else:
                job.message = msg
        try:
            job.result = run_closed_loop(self.hub, job.run_dir, record, step)
            b, a = job.result["before"]["AP"], job.result["after"]["AP"]
            job.message = f"closed loop done: AP {100 * b:.1f} before → {100 * a:.1f} after fine-tuning"
            job.state = "done"
        except Exception as e:  # shown in the page; the run folder keeps what was written
            traceback.print_exc()
            job.state, job.message = "error", f"closed loop failed: {type(e).__name__}: {e}"


def _annotation_file(record: dict) -> Path:
    return Path(find_annotation_file(record["heldout"]["dir"]))
