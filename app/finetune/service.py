"""Fine-tuning from the app: start a training run on exported datasets, follow it, load its result.

The run is a separate process (:func:`training.start_run`) so the page stays responsive and a
crash in training never takes the app down; everything the page shows is read back from the
run folder (``progress.json``, ``metrics.jsonl``), so a reloaded page, or the app restarted
while a run goes on, shows the same run. Runs live under ``<home>/runs/<name>`` and outlive the
app process (Stop still works then: it is a file in the run folder).

Held-out videos (reviewed in a project) are the closed loop's ground truth: they are snapshot
to ``RUN_DIR/heldout`` when the run starts (frozen, so later edits cannot move the goal posts),
used as the run's validation set (the mAP curve), and removed from every training dataset
that contains them, so the model is never scored on what it was trained on.
``RUN_DIR/finetune.json`` records what the app did (data, held-out set, the weights before).
"""
from __future__ import annotations

import dataclasses
import json
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..annotate.store import Store
from ..annotate.trash import Trash
from ..hub import ModelHub, ModelSpec
from .closed_loop import ClosedLoopRunner, LoopJob, loop_settings, read_closed_loop
from .data import export_videos, list_datasets, preset_of_checkpoint, snapshot_dataset

RECORD = "finetune.json"
CPU_ITERS, CPU_MAX_BATCH = 50, 2  # a CPU run the user can watch to the end in minutes


def machine_limits() -> dict[str, Any]:
    """The most a run may ask of this machine (checked before anything is written or started):
    iterations and batch within what its CPU or GPUs finish, sizes within the model's test
    range, and the disk space a run's snapshot and checkpoints need."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus:
        return {"iters": 200_000, "batch": 16 * gpus, "min_size": 1333, "lr": 1.0, "gpus": gpus}
    return {"iters": 2_000, "batch": 4, "min_size": 800, "lr": 1.0, "gpus": 0}


MIN_FREE_GB = 2.0  # free disk space a run needs to start (snapshot, checkpoints, logs)
MAX_NAME = 64


class FineTuneError(ValueError):
    """A wrong choice in the page; the message is shown as is and nothing was started."""


@dataclass
class StartRequest:
    """What the Fine-tune tab asks for (None and 0 take the preset recipe's value)."""

    datasets: list[str]                       # dataset folder names under the datasets root
    project: int | None = None                # project of the held-out videos
    heldout_videos: list[int] = field(default_factory=list)
    heldout_dataset: str | None = None        # or a whole held-out dataset (folder name)
    iters: int = CPU_ITERS
    batch: int = CPU_MAX_BATCH
    lr: float | None = None
    min_size: int | None = None               # training shorter side
    eval_every: int = 0                       # held-out mAP every N iterations (0: at the end)
    loop_min_size: int | None = None          # shorter side for the closed loop and the mAP curve
    auto_loop: bool = True                    # run the closed loop as soon as training finishes
    name: str = ""


@dataclass
class RunView:
    """One run as the page shows it, read from its folder (and the live process if ours)."""

    name: str
    state: str                      # starting | running | evaluating | finished | stopped | failed
    progress: dict[str, Any]
    metrics: list[dict[str, Any]]
    record: dict[str, Any]
    final: Path | None              # model_final.pth once finished
    error: str = ""
    log_tail: str = ""
    loop: LoopJob | None = None     # closed loop in progress (or just ended)
    loop_result: dict[str, Any] | None = None
    stop_requested: bool = False


class FineTuner:
    """Starts and follows the app's training runs (one at a time: they use the whole machine)."""

    def __init__(self, home: Path, datasets_root: Path, store: Store, hub: ModelHub,
                 may_change_model: Callable[[str], bool] | None = None, accounts: bool = False,
                 trash: Trash | None = None) -> None:
        self.runs_root = Path(home) / "runs"
        self.datasets_root = Path(datasets_root)
        self.store, self.hub = store, hub
        self.may_change_model = may_change_model or (lambda user: True)
        self.accounts = accounts  # --users: each user's own runs and datasets; else everyone is ""
        self.loops = ClosedLoopRunner(hub)
        self.trash = trash or Trash(store)  # a deleted run waits there until its page is left
        self.handles: dict[str, Any] = {}  # run name -> training.RunHandle started by this app
        self._lock = threading.Lock()

    # -- what there is to choose (each user's own: "" is the single local user) ---------------------
    def runs_root_of(self, user: str = "") -> Path:
        return self.runs_root if not user else self.runs_root / "users" / user

    def datasets_root_of(self, user: str = "") -> Path:
        return self.datasets_root if not user else self.datasets_root / "users" / user

    def datasets(self, user: str = "") -> list[str]:
        return list_datasets(self.datasets_root_of(user))

    def runs(self, user: str = "") -> list[str]:
        """The user's run folders, newest first."""
        root = self.runs_root_of(user)
        if not root.is_dir():
            return []
        runs = [d for d in root.iterdir() if (d / RECORD).is_file() or (d / "settings.json").is_file()]
        return [d.name for d in sorted(runs, key=lambda d: -d.stat().st_mtime)]

    def reviewed_videos(self, project_id: int | None, user: str = "") -> list[tuple[str, int]]:
        if not project_id or not self.store.owns_project(user, project_id):
            return []
        return [(f"{v.name} ({len(self.store.tracks(v.id))} tracks)", v.id)
                for v in self.store.videos(int(project_id)) if v.reviewed]

    def run_dir(self, name: str | None, user: str = "") -> Path:
        if not name or name not in self.runs(user):  # only the user's listed names: no path from the page
            raise FineTuneError("choose one of your runs")
        return self.runs_root_of(user) / name

    def active(self) -> str | None:
        """The run going now, whoever started it (one at a time: it uses the whole machine)."""
        return next((n for n, h in self.handles.items() if h.running()), None)

    def active_of(self, user: str = "") -> str | None:
        """The name of the run going now when it is ``user``'s (None otherwise)."""
        a = self.active()
        return Path(a).name if a and Path(a).parent == self.runs_root_of(user) else None

    def delete_run(self, name: str | None, user: str = "", page: str = "") -> str:
        """Move the user's run to the trash: ``page`` can undo it until it is left."""
        d = self.run_dir(name, user)
        h = self.handles.get(str(d))
        if h is not None and h.running():
            raise FineTuneError(f"run **{name}** is still going: stop it first")
        try:
            self.trash.move_path(user, page, "run", d)
        except OSError as e:
            raise FineTuneError(f"could not delete run **{name}** ({e}); nothing was deleted") from None
        self.handles.pop(str(d), None)
        return f"run **{name}** deleted (**↶ Undo delete** brings it back until you leave this page)"

    def check_settings(self, req: StartRequest) -> None:
        """Refuse settings beyond the machine's means, before anything is written."""
        lim = machine_limits()
        checks = [("iterations", req.iters, 1, lim["iters"]), ("batch", req.batch, 1, lim["batch"]),
                  ("training shorter side", req.min_size or 0, 0, lim["min_size"]),
                  ("closed-loop shorter side", req.loop_min_size or 0, 0, lim["min_size"]),
                  ("evaluation period", req.eval_every or 0, 0, lim["iters"]),
                  ("learning rate", req.lr or 0, 0, lim["lr"])]
        where = f"{lim['gpus']} GPU(s)" if lim["gpus"] else "the CPU"
        for what, value, lo, hi in checks:
            try:
                ok_ = lo <= float(value) <= hi
            except (TypeError, ValueError, OverflowError):
                ok_ = False
            if not ok_:
                raise FineTuneError(f"{what} must be between {lo} and {hi:g} on this machine ({where}); got {value}")
        if len(req.name or "") > MAX_NAME:
            raise FineTuneError(f"a run name may have at most {MAX_NAME} characters")
        if len(req.datasets or []) > 100 or len(req.heldout_videos or []) > 1000:
            raise FineTuneError("too many datasets or held-out videos chosen")
        free = shutil.disk_usage(self.runs_root.parent if self.runs_root.parent.exists() else Path.cwd()).free
        if free < MIN_FREE_GB * 2**30:
            raise FineTuneError(f"the server's disk has {free / 2**30:.1f} GB free; a run needs {MIN_FREE_GB:g} GB "
                                "(delete old runs or exports)")

    # -- what the run starts from -------------------------------------------------------------------
    def model_setup(self) -> tuple[str, str | None, str]:
        """(preset, init, clip) for training from the app's current weights. Untrained weights
        have no file: ``init`` is then ``"@current"`` and :meth:`start` saves them."""
        spec = self.hub.spec
        clip = spec.clip or "openai"
        if spec.untrained:
            return spec.preset, "@current", clip
        if spec.weights:
            try:
                found = preset_of_checkpoint(spec.weights, Path(spec.weights).stat().st_mtime)
            except Exception:  # unreadable here: the run itself will say why, the page must load
                found = None
            return found or spec.preset, spec.weights, clip
        return spec.preset, spec.preset, clip  # a released name is also its preset's name

    def defaults(self) -> dict[str, Any]:
        """Settings shown before the user changes them: the preset recipe, shortened on CPU."""
        import torch

        from ovformer.config import ModelConfig, get_preset

        try:
            cfg = get_preset(self.model_setup()[0])
        except ValueError:  # a preset name the registry lacks: show the released recipe
            cfg = ModelConfig()
        r = cfg.train
        gpu = torch.cuda.is_available()
        iters = r.max_iter if gpu else min(r.max_iter, CPU_ITERS)
        batch = r.ims_per_batch if gpu else min(r.ims_per_batch, CPU_MAX_BATCH)
        note = ("GPU: the preset's released recipe." if gpu else
                f"CPU only: {iters} iterations at batch {batch} (the recipe is {r.max_iter} at batch "
                f"{r.ims_per_batch} on GPUs), enough to see the loop work, not to learn much.")
        note += f" Recipe: lr {r.base_lr:g}, shorter side {'/'.join(map(str, r.min_size_train))}."
        return {"iters": iters, "batch": batch, "lr": r.base_lr, "min_size": int(r.min_size_train[0]),
                "eval_every": max(1, iters // 4), "loop_min_size": cfg.min_size_test, "note": note}

    # -- start, stop, load ------------------------------------------------------------------------
    def start(self, req: StartRequest, user: str = "") -> str:
        """Check the request, prepare the data and start the run; returns its name."""
        self.check_settings(req)
        with self._lock:
            if active := self.active():
                mine = Path(active).parent == self.runs_root_of(user)
                raise FineTuneError((f"run **{Path(active).name}** is" if mine else "another user's run is")
                                    + " still going: stop it or wait for it (one run at a time)")
            known = self.datasets(user)
            chosen = [d for d in dict.fromkeys(req.datasets or []) if d]
            if not chosen:
                raise FineTuneError("choose at least one exported dataset (Annotate → Export → Dataset writes one)")
            if unknown := [d for d in chosen if d not in known]:
                raise FineTuneError(f"no dataset named {', '.join(unknown)} (press ↻ to refresh the list)")
            if req.heldout_videos and req.heldout_dataset:
                raise FineTuneError("choose held-out videos or a held-out dataset, not both")
            if req.heldout_dataset and req.heldout_dataset in chosen:
                raise FineTuneError("the held-out dataset is also a training dataset: it would not be held out")
            if req.heldout_dataset and req.heldout_dataset not in known:
                raise FineTuneError(f"no dataset named {req.heldout_dataset}")
            if req.heldout_videos and not self.store.owns_project(user, req.project):
                raise FineTuneError("the held-out videos must belong to the chosen project")
            videos = [self.store.video(int(v)) for v in req.heldout_videos]
            if any(v is None or v.project_id != req.project for v in videos):
                raise FineTuneError("the held-out videos must belong to the chosen project")
            if not_rev := [v.name for v in videos if not v.reviewed]:
                raise FineTuneError(f"held-out videos must be reviewed (ground truth): {', '.join(not_rev)}")
            if videos and not any(self.store.tracks(v.id) for v in videos):
                raise FineTuneError("the held-out videos have no tracks: nothing to score against")
            preset, init, clip = self.model_setup()
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", req.name or "").strip("._") or time.strftime("ft-%Y%m%d-%H%M%S")
            run_dir = self.runs_root_of(user) / name
            if run_dir.exists():
                raise FineTuneError(f"a run named {name} exists already: choose another name")
            run_dir.mkdir(parents=True)
            try:
                return self._start(req, run_dir, chosen, videos, preset, init, clip, user)
            except OSError as e:
                shutil.rmtree(run_dir, ignore_errors=True)  # nothing half-made stays listed
                from ..annotate.media import disk_full
                if disk_full(e):
                    raise FineTuneError("the server's disk is full: the run was not started") from None
                raise
            except Exception:
                shutil.rmtree(run_dir, ignore_errors=True)
                raise

    def _start(self, req: StartRequest, run_dir: Path, chosen: list[str], videos: list, preset: str,
               init: str | None, clip: str, user: str = "") -> str:
        from training import TrainSettings, start_run

        heldout: dict[str, Any] = {"kind": None}
        val: Path | None = None
        if videos:
            val = run_dir / "heldout"
            names = export_videos(self.store, int(req.project), [v.id for v in videos], val)
            heldout = {"kind": "videos", "project": int(req.project),
                       "project_name": self.store.project_name(int(req.project)), "videos": names, "dir": str(val)}
        elif req.heldout_dataset:
            val = snapshot_dataset(self.datasets_root_of(user) / req.heldout_dataset, set(),
                                   run_dir / "heldout")[0]
            heldout = {"kind": "dataset", "dataset": req.heldout_dataset, "dir": str(val)}
        train_data, excluded = [], {}
        for d in chosen:  # a snapshot: a later export of the same project never changes a run's data
            path, dropped = snapshot_dataset(self.datasets_root_of(user) / d, set(heldout.get("videos", [])),
                                             run_dir / "data" / d)
            if dropped:
                excluded[d] = dropped
            if json.loads((path / "annotations.json").read_text())["videos"]:
                train_data.append(str(path))
        if not train_data:
            raise FineTuneError("after removing the held-out videos no training video is left")
        if init == "@current":  # random weights exist only in memory: save what the run starts from
            from ovformer.checkpoint import save_checkpoint
            from ovformer.inference.predictor import OVFormerVideoPredictor

            with self.hub.lock:
                predictor = self.hub.get()
                if not isinstance(predictor, OVFormerVideoPredictor):  # a VideoPredictor need not hold a model
                    raise FineTuneError("the loaded predictor has no model weights to start training from")
                save_checkpoint(run_dir / "init_weights.pth", predictor.model, iteration=0)
            init = str(run_dir / "init_weights.pth")
        loop = loop_settings(preset, req.loop_min_size)
        iters = max(1, int(req.iters))
        settings = TrainSettings(
            data=train_data, out=str(run_dir), preset=preset, init=init, clip=clip, iters=iters,
            batch=max(1, int(req.batch)), lr=req.lr or None,
            min_sizes=(int(req.min_size),) if req.min_size else None,
            val=str(val) if val else None, eval_period=int(req.eval_every or 0) if val else 0,
            eval_min_size=loop["min_size"],  # the curve's last point is then the closed loop's "after"
            log_period=max(1, min(20, iters // 50)))  # short runs log every iteration: a curve, not 2 dots
        record = {"name": run_dir.name, "owner": user, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                  "datasets": chosen,
                  "train_data": train_data, "excluded": excluded, "heldout": heldout, "preset": preset,
                  "clip": clip, "init": init, "loop": loop, "auto_loop": bool(req.auto_loop),
                  "before": {"spec": dataclasses.asdict(self.hub.spec), "label": self.hub.label()},
                  "after": {"spec": dataclasses.asdict(ModelSpec(preset, str(run_dir / "model_final.pth"),
                                                                 False, clip))}}
        (run_dir / RECORD).write_text(json.dumps(record, indent=1))
        handle = start_run(settings)
        self.handles[str(run_dir)] = handle
        threading.Thread(target=self._watch, args=(run_dir, handle, record), daemon=True,
                         name=f"finetune-{run_dir.name}").start()
        return run_dir.name

    def _watch(self, run_dir: Path, handle: Any, record: dict) -> None:
        """When the run ends well, start the closed loop without waiting for a page to ask."""
        handle.wait()
        if record["auto_loop"] and record["heldout"]["kind"] and (run_dir / "model_final.pth").is_file():
            try:
                self.loops.start(run_dir, record, again=False)
            except Exception as e:  # e.g. the held-out set vanished: the page must stop waiting
                self.loops.jobs[str(run_dir)] = LoopJob(run_dir, 0, "error", f"closed loop failed to start: {e}")

    def stop(self, name: str, user: str = "") -> str:
        """Ask the user's run to checkpoint and stop (works for a run started by an earlier app too)."""
        from training import request_stop

        request_stop(self.run_dir(name, user))
        return f"stop requested: **{name}** saves a checkpoint and stops after this iteration"

    def load_final(self, name: str, user: str = "") -> str:
        """Make the app pre-label with the run's final weights (an admin's call with ``--users``:
        every session pre-labels with them); returns their label."""
        if not self.may_change_model(user):
            raise FineTuneError("only an admin may change the model everyone pre-labels with "
                                "(`ovformer users admin NAME`)")
        view = self.view(name, user)
        if view.final is None:
            raise FineTuneError(f"run **{name}** has no final checkpoint yet ({view.state})")
        self.hub.load(ModelSpec(**view.record["after"]["spec"]))
        return self.hub.label()

    def closed_loop(self, name: str, user: str = "") -> LoopJob:
        view = self.view(name, user)
        if view.final is None:
            raise FineTuneError(f"run **{name}** has no final checkpoint yet ({view.state})")
        if not view.record.get("heldout", {}).get("kind"):
            raise FineTuneError("this run has no held-out videos or dataset: nothing to compare on")
        job = self.loops.start(self.run_dir(name, user), view.record)  # joins a running one, else (re)runs
        assert job is not None
        return job

    # -- reading a run back -------------------------------------------------------------------------
    def view(self, name: str, user: str = "") -> RunView:
        from training import read_metrics, read_progress
        from training.metrics import STOP_FILE

        d = self.run_dir(name, user)
        record = json.loads((d / RECORD).read_text()) if (d / RECORD).is_file() else _cli_record(d)
        progress = read_progress(d) or {"state": "starting", "iteration": 0}
        state, error = str(progress.get("state", "starting")), str(progress.get("error", "") or "")
        h = self.handles.get(str(d))
        if h is not None and not h.running() and state in ("starting", "running", "evaluating"):
            state, error = "failed", error or f"the training process exited with code {h.poll()}"
        log = d / "train.log"
        tail = ("\n".join(log.read_text(errors="replace").splitlines()[-15:])
                if state == "failed" and log.is_file() else "")
        final = d / "model_final.pth"
        return RunView(name, state, progress, read_metrics(d), record, final if final.is_file() else None, error,
                       tail, self.loops.job(d), read_closed_loop(d), (d / STOP_FILE).exists())

    def shutdown(self) -> None:
        """Kill our runs now (tests; a normal app exit leaves runs going, see the module doc)."""
        for h in self.handles.values():
            if h.running():
                h.kill()


def _cli_record(run_dir: Path) -> dict[str, Any]:
    """A run started elsewhere (``ovformer train --out <home>/runs/x``): no held-out set, but its
    final weights can still be loaded, with the preset and CLIP its settings name."""
    try:
        st = json.loads((run_dir / "settings.json").read_text())
    except (OSError, ValueError):
        st = {}
    spec = ModelSpec(st.get("preset") or "r50-lvvis", str(run_dir / "model_final.pth"), False, st.get("clip"))
    return {"name": run_dir.name, "heldout": {"kind": None}, "after": {"spec": dataclasses.asdict(spec)}}
