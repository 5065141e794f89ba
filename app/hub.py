"""The model hub: which weights the app pre-labels with, loaded once and shared by all sessions.

It also knows what the chosen model needs on disk (:func:`ovformer.model_files.required_files`:
checkpoint, DetPro prompts, CLIP), offers the released models and the fine-tuned runs in one
picker (:meth:`ModelHub.choices`), and fetches missing files on request in a background job
(:meth:`ModelHub.start_download`) whose state any page can poll, so a reloaded page finds it;
nothing is downloaded unless asked. The app process stays offline otherwise: the library lifts
the hub's offline switch for the download call only.

Specs and the cache of loaded predictors are in :mod:`app.predictors`.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .predictors import ModelSpec, PredictorCache  # noqa: F401 (the hub's public names too)

if TYPE_CHECKING:  # the protocol only: importing the predictor module loads torch
    from ovformer.inference.predictor import VideoPredictor
    from ovformer.model_files import DownloadJob, RequiredFile


CLIP_NAMES = {"openai": "OpenAI ViT-B/32", "random": "seeded random ViT-B/32 CLIP", "tiny-random": "tiny seeded random CLIP"}

WHY = {  # a failed download's reason (WeightsDownloadError.reason) -> the headline a person reads
    "network": "no network: the download host could not be reached, or the connection was cut",
    "quota": "Google Drive sent a web page instead of the file (download quota exceeded, or the file "
             "is no longer shared); try again later",
    "disk-full": "the disk is full",
    "verification": "a downloaded file does not match its recorded size and SHA-256, so it was removed",
    "offline": "downloads are switched off on this machine (OVFORMER_OFFLINE)",
    "load": "the files are here but the model did not load",
    "other": "the download failed",
}
KEPT = ("Nothing that looks complete was kept: a cut transfer stays as a .part file, which the next "
        "Download resumes.")


def clip_name(spec: str | None) -> str:
    """``"openai"`` -> ``"OpenAI ViT-B/32"``; a path -> its file name."""
    spec = spec or "openai"
    return CLIP_NAMES.get(spec, Path(spec).name)


def human_bytes(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def human_seconds(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(round(s))
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


@dataclass(frozen=True)
class ModelChoice:
    """One entry of the model picker: a released model or a fine-tuned run, with its files."""

    key: str
    spec: ModelSpec
    title: str
    files: tuple[RequiredFile, ...]

    @property
    def missing(self) -> list[RequiredFile]:
        return [f for f in self.files if not f.present]

    @property
    def label(self) -> str:
        if not self.missing:
            return f"{self.title} — present"
        return f"{self.title} — missing: {', '.join(_kind(f) for f in self.missing)}"


def _kind(f: RequiredFile) -> str:
    return {"checkpoint": "checkpoint", "clip": "CLIP", "prompts": "prompts"}.get(f.kind, f.kind)


@dataclass(frozen=True)
class DownloadView:
    """What the page shows of the download: ``state`` idle / downloading / loading / ready / failed."""

    state: str = "idle"
    model: str = ""
    fraction: float | None = None
    text: str = ""
    reason: str | None = None
    error: str | None = None

    @property
    def running(self) -> bool:
        return self.state in ("downloading", "loading")


@dataclass
class _Task:
    """A download started from the page, then the load of the model it was for."""

    spec: ModelSpec
    job: DownloadJob
    phase: str = "downloading"  # downloading / loading / ready / failed
    error: str | None = None
    reason: str | None = None
    done: threading.Event = field(default_factory=threading.Event)


class ModelHub:
    """The app's current weights: loaded lazily, swapped on request, described in the banner.

    ``lock`` serialises model runs (pre-label, closed loop, saving weights): one forward pass
    at a time keeps memory bounded on a CPU machine. ``runs_root`` is where the fine-tuned runs
    live (``DATA/runs``); their ``model_final.pth`` files are offered in :meth:`choices`.
    """

    def __init__(self, spec: ModelSpec, cache: PredictorCache | None = None, runs_root: Path | None = None) -> None:
        self.spec = spec
        self.cache = cache or PredictorCache()
        self.runs_root = Path(runs_root) if runs_root else None
        self.lock = threading.Lock()
        self.startup = spec  # offered in the picker when it is neither a release nor a run
        self._task: _Task | None = None
        self._task_lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self.cache.peek(self.spec) is not None

    def get(self) -> VideoPredictor:
        """The current predictor (loaded on first use)."""
        return self.cache.get(self.spec)

    def predictor_for(self, spec: ModelSpec) -> VideoPredictor:
        """A predictor for ``spec`` without swapping the app's weights (the closed loop's
        before/after models). Callers hold :attr:`lock` while they run it."""
        return self.cache.get(spec)

    def load(self, spec: ModelSpec) -> VideoPredictor:
        """Swap the app's weights (e.g. to a fine-tuned checkpoint) and load them now, so the
        banner is right at once and a bad file fails here rather than in the next pre-label."""
        with self.lock:  # never under a running pre-label
            predictor = self.cache.get(spec)  # raises before anything changed
            self.spec = spec
            return predictor

    def untrained(self) -> bool:
        p = self.cache.peek(self.spec)
        return p.untrained if p is not None else self.spec.untrained

    def label(self) -> str:
        p = self.cache.peek(self.spec)
        return (p.weights_label or self.spec.describe()) if p is not None else self.spec.describe()

    # -- files on disk ---------------------------------------------------------------------------
    def files(self, spec: ModelSpec | None = None) -> list[RequiredFile]:
        """What ``spec`` (default the current one) needs on disk, with each file's state; no network."""
        from ovformer.model_files import required_files

        spec = spec or self.spec
        try:
            files = required_files(spec.weights or spec.preset, clip=spec.clip or "openai")
        except (KeyError, ValueError, OSError):  # an unknown name: the load itself will say why
            return []
        return [f for f in files if not (spec.untrained and f.kind == "checkpoint")]

    def missing_files(self, spec: ModelSpec | None = None) -> list[RequiredFile]:
        spec = spec or self.spec
        if self.cache.peek(spec) is not None:
            return []
        return [f for f in self.files(spec) if not f.present]

    def missing_weights(self) -> str | None:
        """Why the configured weights cannot load, without loading them (None when they can, as
        far as a cheap check tells): a new user learns it from the banner, not a failed run."""
        missing = self.missing_files()
        if not missing:
            return None
        lines = [f"{f.description}: {f.state}, goes to {f.path}" for f in missing]
        return "\n".join(lines)

    # -- the picker -------------------------------------------------------------------------------
    def choices(self) -> list[ModelChoice]:
        """The released models, then the fine-tuned runs (newest first), each with its files; the
        startup model first when it is neither (e.g. ``--untrained`` or ``--weights FILE``)."""
        from ovformer.weights import list_pretrained

        out = []
        clip = None if self.startup.clip in ("random", "tiny-random") else self.startup.clip  # e.g. --clip FILE
        for e in list_pretrained():
            spec = ModelSpec(e.name, None, False, clip)
            out.append(ModelChoice(e.name, spec, f"{e.name} ({e.backbone}, {e.trained_on})", tuple(self.files(spec))))
        for run_dir in self._runs():
            st = _read_json(run_dir / "settings.json")
            spec = ModelSpec(st.get("preset") or "r50-lvvis", str(run_dir / "model_final.pth"), False, st.get("clip"))
            out.append(ModelChoice(f"run:{run_dir.name}", spec, f"{run_dir.name} (fine-tuned run)", tuple(self.files(spec))))
        specs = {c.spec for c in out}
        for extra in dict.fromkeys((self.startup, self.spec)):
            if extra not in specs:
                out.insert(0, ModelChoice(f"spec:{extra.describe()}", extra, extra.describe(), tuple(self.files(extra))))
                specs.add(extra)
        return out

    def current_key(self) -> str | None:
        return next((c.key for c in self.choices() if c.spec == self.spec), None)

    def _runs(self) -> list[Path]:
        if self.runs_root is None or not self.runs_root.is_dir():
            return []
        found = [p.parent for p in self.runs_root.glob("*/model_final.pth") if p.is_file()]
        return sorted(found, key=lambda d: -(d / "model_final.pth").stat().st_mtime)

    def select(self, key: str) -> str:
        """Make the picker's choice ``key`` the current model; returns a status line.

        A model whose files are all here is loaded now (a bad file fails here, the current model
        stays); one with missing files becomes current unloaded, and the banner lists them with
        the Download button."""
        choice = next((c for c in self.choices() if c.key == key), None)
        if choice is None:
            raise KeyError(f"no model {key!r} in the picker")
        if choice.missing:
            with self.lock:
                self.spec = choice.spec
            return f"{choice.title}: {len(choice.missing)} file(s) missing — press Download to fetch them"
        self.load(choice.spec)
        return f"✔ pre-labelling now uses {self.headline_name()}"

    # -- downloading ----------------------------------------------------------------------------
    def start_download(self) -> DownloadView:
        """Fetch what the current model is missing in the background, then load it.

        Returns at once; poll :meth:`download_view`. A download already running is joined."""
        from ovformer.model_files import start_download

        spec = self.spec
        with self._task_lock:
            task = self._task
            if task is not None and task.phase in ("downloading", "loading"):
                return self.download_view()
            if not self.missing_files(spec):
                return self.download_view()
            job = start_download(spec.weights or spec.preset, clip=spec.clip or "openai")
            task = self._task = _Task(spec, job)
        threading.Thread(target=self._finish, args=(task,), daemon=True, name="weights-download").start()
        return self.download_view()

    def _finish(self, task: _Task) -> None:
        task.job.wait()
        try:
            if task.job.state != "done":
                task.error, task.reason, task.phase = task.job.error, task.job.reason or "other", "failed"
                return
            task.phase = "loading"
            try:
                self.cache.get(task.spec)
            except Exception as e:  # noqa: BLE001 - any load failure is shown on the page
                task.error, task.reason, task.phase = f"{type(e).__name__}: {e}", "load", "failed"
                return
            task.phase = "ready"
        finally:
            task.done.set()

    def wait_download(self, timeout: float | None = None) -> bool:
        """Block until the page's download (and the load after it) ended; True when it has."""
        task = self._task
        return task is None or task.done.wait(timeout)

    def download_view(self) -> DownloadView:
        """The download's state for the page (a reload asks again and finds a running one)."""
        task = self._task
        if task is None:
            return DownloadView()
        name = task.spec.weights or task.spec.preset
        if task.phase == "downloading":
            snap = task.job.snapshot()
            p = snap.progress
            if p is None:
                return DownloadView("downloading", name, None, "Starting the download…")
            label = p.label.replace("'", "")
            bits = [f"{human_bytes(p.done)} of {human_bytes(p.total)}" if p.total else human_bytes(p.done)]
            bits.append(f"{human_bytes(p.rate)}/s")
            if p.eta_s is not None:
                bits.append(f"about {human_seconds(p.eta_s)} left")
            text = f"Downloading file {p.file_index} of {p.file_count}: {label} — {' · '.join(bits)}"
            return DownloadView("downloading", name, p.fraction, text)
        if task.phase == "loading":
            return DownloadView("loading", name, 1.0, f"Downloaded; loading {name}…")
        if task.phase == "ready":
            took = (task.job.finished_at or task.job.started_at) - task.job.started_at
            return DownloadView("ready", name, 1.0, f"✔ Downloaded in {human_seconds(took)} and loaded {name}.")
        reason = task.reason or "other"
        why = WHY.get(reason, WHY["other"])
        text = f"✖ Download of {name} failed: {why}. " + (KEPT if reason != "load" else "")
        return DownloadView("failed", name, None, text.strip(), reason, task.error)

    # -- words for people ---------------------------------------------------------------------
    def headline_name(self) -> str:
        """``"r50-lvvis + OpenAI ViT-B/32"``: the checkpoint (release name or file) and the CLIP."""
        what = self.spec.weights or self.spec.preset
        return f"{what} + {clip_name(self.spec.clip)}"

    def startup_note(self) -> str | None:
        """One line for the terminal when the model's files are missing (None otherwise)."""
        missing = self.missing_files()
        if not missing:
            return None
        what = ", ".join(_kind(f) for f in missing)
        if all(f.downloadable for f in missing):
            return (f"Model weights for {self.spec.weights or self.spec.preset} are not on this machine ({what}): "
                    "open the page and press Download in the banner at the top (nothing is downloaded before).")
        return f"Model files missing ({what}): the banner at the top of the page says where each one goes."

    def banner(self) -> str:
        """Markdown for the always-visible weights banner."""
        missing = self.missing_files()
        if missing:
            return self._missing_banner(missing)
        state = "loaded" if self.loaded else "loads on the first pre-label run"
        runs = f"Runs on {self.cache.runtime(self.spec)}."
        if self.untrained():
            return (f"### ⚠️ UNTRAINED MODEL — weights are RANDOM: `{self.label()}` ({state}). "
                    f"Pre-labels are noise; use them only to try the editor.\n\n{runs}")
        return f"### Model weights: {self._md_headline()} ({state})\n\n{runs}"

    def _md_headline(self) -> str:
        return f"`{self.spec.weights or self.spec.preset}` + {clip_name(self.spec.clip)}"

    def _missing_banner(self, missing: list[RequiredFile]) -> str:
        name = self.spec.weights or self.spec.preset
        rows = ["| state | file | size | where |", "| --- | --- | --- | --- |"]
        for f in self.files():
            state = "✔&nbsp;present" if f.present else f"✖&nbsp;{f.state}"
            size = human_bytes(f.size) if f.size is not None else "not known yet"
            rows.append(f"| {state} | {f.description} | {size} | `{f.path}` |")
        head = (f"### ⚠️ No model weights: `{name}` + {clip_name(self.spec.clip)} needs "
                f"{len(missing)} more file(s). Pre-labelling cannot run yet; you can still import, "
                "edit and export labels.")
        if all(f.downloadable for f in missing):
            how = ("Press **Download** to fetch what is missing (Google Drive and the Hugging Face Hub; "
                   "nothing is downloaded until you press it), or from a terminal: "
                   f"`ovformer weights download {name}`.")
        else:
            how = "Some files have no download source: put them where the table says, or pick another model."
        if self.spec.untrained:
            head = f"### ⚠️ UNTRAINED MODEL `{self.label()}` needs {len(missing)} more file(s)."
        tryit = ("Or restart with `ovformer app --preset tiny --untrained --clip tiny-random` to try the flow "
                 "on random weights.")
        return "\n".join([head, "", *rows, "", how, tryit])


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
