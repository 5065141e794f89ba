"""What a model needs on disk, and getting it in one go.

A released model (``"r50-lvvis"``, ...) needs three things: its OVFormer checkpoint (Google
Drive), the CLIP ViT-B/32 weights (Hugging Face Hub) and DetPro's prompt files (a Drive
folder). :func:`required_files` lists them with their state, without any network access;
:func:`download_required` fetches the missing ones with progress reports, and
:func:`start_download` runs that in a background thread whose :class:`DownloadJob` a page can
poll (and find again after a reload).

Example:
    >>> for f in required_files("r50-lvvis"):  # doctest: +SKIP
    ...     print(f.kind, f.state, f.path)
    >>> download_required("r50-lvvis", progress=print)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

from .download import DownloadProgress, ProgressCallback, fetch_drive_file, list_drive_folder
from .weights import (DETPRO_LVIS, Progress, WeightsDownloadError, WeightsNotFoundError, _cookies_file, _hashes_file,
                      _prompt_records, _read_known, _record_known, downloads_forbidden, get_prompts_entry,
                      get_weights_entry, list_pretrained, prompt_problems, prompts_dir, weights_path)

__all__ = ["DownloadJob", "RequiredFile", "download_job", "download_required", "progress_callback",
           "required_files", "start_download"]


@contextlib.contextmanager
def progress_callback(progress: Progress, label: str) -> Iterator[ProgressCallback | None]:
    """The callback for ``progress``: True draws a terminal bar per file, False none, a callable is used as is."""
    if callable(progress):
        yield progress
        return
    if not progress:
        yield None
        return
    from tqdm.auto import tqdm

    bars: dict[tuple[int, str], Any] = {}

    def draw(p: DownloadProgress) -> None:
        bar = bars.get((p.file_index, p.path))
        if bar is None:
            for old in bars.values():
                old.close()
            bar = bars[(p.file_index, p.path)] = tqdm(total=p.total, unit="B", unit_scale=True, unit_divisor=1024,
                                                      desc=f"[{p.file_index}/{p.file_count}] {Path(p.path).name}")
        bar.total = p.total
        bar.n = p.done
        bar.refresh()

    try:
        yield draw
    finally:
        for bar in bars.values():
            bar.close()


# --- fetching registry entries ---------------------------------------------------------------


def fetch_checkpoint(name: str, *, force: bool = False, progress: Progress = True, file_index: int = 1,
                     file_count: int = 1) -> Path:
    """Download a registered checkpoint (what :func:`ovformer.weights.download_weights` runs)."""
    entry = get_weights_entry(name)
    path = weights_path(name)
    if path.is_file() and not force:
        return path
    with progress_callback(progress, name) as callback:
        size, digest = fetch_drive_file(
            entry.gdrive_id, path, label=f"OVFormer weights '{name}'", expected=(entry.size, entry.sha256),
            by_hand=f"or download {entry.url} by hand and save it as {path}",
            record_hint=f"If the release really changed, delete the '{name}' entry of {_hashes_file()} and download again.",
            cookies_file=_cookies_file(), progress=callback, file_index=file_index, file_count=file_count)
    if entry.sha256 is None:
        _record_known(name, {"gdrive_id": entry.gdrive_id, "size": size, "sha256": digest})
    return path


def fetch_prompts(name: str = DETPRO_LVIS, *, force: bool = False, progress: Progress = True, first_index: int = 1,
                  file_count: int | None = None) -> Path:
    """Download the missing files of a prompt set (what :func:`ovformer.weights.download_prompts` runs)."""
    entry = get_prompts_entry(name)
    folder, records = prompts_dir(name), _prompt_records(entry)
    wanted = list(entry.filenames) if force else list(prompt_problems(entry))
    if not wanted:
        return folder
    by_hand = f"or download the files by hand from {entry.url} into {folder}"
    listing = list_drive_folder(entry.gdrive_folder_id, label=f"'{name}'", by_hand=by_hand, cookies_file=_cookies_file())
    if absent := [f for f in wanted if f not in listing]:
        raise WeightsDownloadError(
            f"The Google Drive folder of '{name}' does not list {', '.join(absent)} "
            f"(it lists: {', '.join(sorted(listing)) or 'nothing readable'}).\n  {by_hand}")
    count = file_count or len(wanted)
    with progress_callback(progress, name) as callback:
        for i, filename in enumerate(wanted):
            key, rec = f"{name}/{filename}", records[filename]
            size, digest = fetch_drive_file(
                listing[filename], folder / filename, label=f"DetPro prompt file '{key}'",
                expected=(rec.get("size"), rec.get("sha256")), by_hand=by_hand,
                record_hint=f"If the release really changed, delete the '{key}' entry of {_hashes_file()} and download again.",
                cookies_file=_cookies_file(), progress=callback, file_index=first_index + i, file_count=count)
            if rec.get("sha256") is None:
                _record_known(key, {"gdrive_folder_id": entry.gdrive_folder_id, "gdrive_id": listing[filename],
                                    "size": size, "sha256": digest})
    return folder


# --- what a model needs ----------------------------------------------------------------------


@dataclass(frozen=True)
class RequiredFile:
    """One file (or file set) a model needs.

    Attributes:
        kind: ``"checkpoint"``, ``"clip"`` or ``"prompts"``.
        name: registry name (``"r50-lvvis"``, ``"clip-openai"``, ``"detpro-lvis"``) or the path given.
        description: what it is, for people.
        path: where it lives (a folder for a prompt set; the hub cache folder for missing CLIP weights).
        size: bytes when known (recorded at the first download), None otherwise.
        present: usable as it is.
        state: ``"present"``, ``"missing"``, ``"damaged (...)"`` or ``"2/5 files"``.
        downloadable: the registry knows where to fetch it.
        url: where a person can fetch it by hand ("" when unknown).
        files: how many files it stands for (5 for the DetPro set).
    """

    kind: str
    name: str
    description: str
    path: Path
    size: int | None
    present: bool
    state: str
    downloadable: bool
    url: str = ""
    files: int = 1


def _checkpoint_file(model: str) -> RequiredFile:
    if model in {e.name for e in list_pretrained()}:
        entry, path = get_weights_entry(model), weights_path(model)
        state = "missing"
        if path.is_file():
            damaged = entry.size is not None and path.stat().st_size != entry.size
            state = f"damaged ({path.stat().st_size} bytes, expected {entry.size})" if damaged else "present"
        return RequiredFile("checkpoint", model, f"OVFormer checkpoint {model} ({entry.backbone}, trained on "
                            f"{entry.trained_on})", path, entry.size, state == "present", state, True, entry.url)
    path = Path(model).expanduser()
    present = path.is_file()
    return RequiredFile("checkpoint", model, f"OVFormer checkpoint {path.name}", path,
                        path.stat().st_size if present else None, present, "present" if present else "missing", False)


def _clip_file(clip: str, cache_dir: str | None) -> RequiredFile | None:
    from .clip_weights import clip_weights_path, get_clip_entry, hub_cache_dir

    if clip in ("random", "tiny-random"):
        return None  # seeded in code, nothing on disk
    try:
        entry = get_clip_entry(clip)
    except KeyError:
        path = Path(clip).expanduser()
        present = path.is_file()
        return RequiredFile("clip", clip, f"CLIP weights {path.name}", path, path.stat().st_size if present else None,
                            present, "present" if present else "missing", False)
    rec = _read_known().get(entry.name, {})
    size = rec.get("size") if rec.get("repo_id") == entry.repo_id else None
    path = clip_weights_path(entry.name, cache_dir=cache_dir)
    where = path or hub_cache_dir(cache_dir) / f"models--{entry.repo_id.replace('/', '--')}"
    return RequiredFile("clip", entry.name, entry.description, where, size if path is None else path.stat().st_size,
                        path is not None, "present" if path else "missing", True, entry.url)


def _prompts_file(name: str) -> RequiredFile:
    entry, folder = get_prompts_entry(name), prompts_dir(name)
    problems = prompt_problems(entry)
    sizes = [r.get("size") for r in _prompt_records(entry).values()]
    have = len(entry.filenames) - len(problems)
    if not problems:
        state = "present"
    elif have == 0:
        state = "missing"
    else:
        state = f"{have}/{len(entry.filenames)} files"
    return RequiredFile("prompts", name, f"DetPro prompts for new class names ({len(entry.filenames)} files)", folder,
                        sum(sizes) if None not in sizes else None, not problems, state, True, entry.url,
                        len(entry.filenames))


def required_files(model_name: str, *, clip: str = "openai", cache_dir: str | None = None) -> list[RequiredFile]:
    """The files ``model_name`` needs, with their state; no network access.

    Args:
        model_name: a released name (``"r50-lvvis"``) or a checkpoint path (a fine-tuned run).
        clip: the CLIP spec the model runs with (``"openai"``; ``"random"``/``"tiny-random"``
            need no file and no DetPro prompts).
        cache_dir: the hub cache for CLIP (default huggingface_hub's).

    Returns:
        Checkpoint, then DetPro prompts, then CLIP (what applies).
    """
    files = [_checkpoint_file(model_name)]
    if clip not in ("random", "tiny-random"):
        files.append(_prompts_file(DETPRO_LVIS))
    if (clip_file := _clip_file(clip, cache_dir)) is not None:
        files.append(clip_file)
    return files


def _missing_report(model_name: str, missing: list[RequiredFile], why: str) -> str:
    lines = [f"Model '{model_name}' is missing {len(missing)} file(s) and {why}:"]
    lines += [f"  {f.description}: {f.state}, goes to {f.path}" for f in missing]
    lines.append(f"  download them: ovformer weights download {model_name}")
    return "\n".join(lines)


def download_required(model_name: str, *, progress: Progress | None = None, offline: bool = False,
                      clip: str = "openai", cache_dir: str | None = None) -> list[RequiredFile]:
    """Fetch every file ``model_name`` needs that is missing, then return :func:`required_files`.

    Args:
        model_name: a released name, or a checkpoint path (only its CLIP and prompts can be fetched).
        progress: a callback receiving :class:`~ovformer.download.DownloadProgress` (bytes done,
            total, rate, ETA, file i of n), True for terminal bars, None/False for nothing.
        offline: forbid any download (so does ``OVFORMER_OFFLINE``): raise when a file is missing.
        clip, cache_dir: as in :func:`required_files`.

    Raises:
        WeightsNotFoundError: offline with files missing, or a missing file nobody can fetch
            (a fine-tuned checkpoint); the message names each file and where it goes.
        WeightsDownloadError: a download failed; ``reason`` is ``"network"``, ``"quota"``,
            ``"disk-full"``, ``"verification"`` or ``"other"``. Finished files stay; no file
            that looks complete is left half-written.
    """
    files = required_files(model_name, clip=clip, cache_dir=cache_dir)
    missing = [f for f in files if not f.present]
    if not missing:
        return files
    if offline or downloads_forbidden():
        why = "downloads are forbidden (--offline)" if offline else "OVFORMER_OFFLINE is set"
        raise WeightsNotFoundError(_missing_report(model_name, missing, why))
    if stuck := [f for f in missing if not f.downloadable]:
        raise WeightsNotFoundError(_missing_report(model_name, stuck, "they have no download source"))
    count = sum(f.files if f.kind != "prompts" else len(prompt_problems(get_prompts_entry(f.name))) for f in missing)
    index = 1
    for f in missing:
        if f.kind == "checkpoint":
            fetch_checkpoint(f.name, force=True, progress=progress or False, file_index=index, file_count=count)
            index += 1
        elif f.kind == "prompts":
            todo = len(prompt_problems(get_prompts_entry(f.name)))
            fetch_prompts(f.name, progress=progress or False, first_index=index, file_count=count)
            index += todo
        else:
            from .clip_weights import download_clip_weights
            download_clip_weights(f.name, cache_dir=cache_dir, force=True, progress=progress or False,
                                  file_index=index, file_count=count)
            index += 1
    return required_files(model_name, clip=clip, cache_dir=cache_dir)


# --- background jobs -------------------------------------------------------------------------


@dataclass
class DownloadJob:
    """A :func:`download_required` run in a background thread; poll :meth:`snapshot`.

    Attributes:
        model_name: the model whose files are fetched.
        state: ``"running"``, ``"done"`` or ``"failed"``.
        progress: the latest report (None before the first byte).
        error: the failure's message; ``reason`` its kind (see WeightsDownloadError).
        files: the model's files when the job ended.
    """

    model_name: str
    state: str = "running"
    progress: DownloadProgress | None = None
    error: str | None = None
    reason: str | None = None
    files: list[RequiredFile] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    def snapshot(self) -> "DownloadJob":
        """A copy that no longer changes, for rendering."""
        return replace(self, files=list(self.files))

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ends (or ``timeout``); True when it has ended."""
        return self._done.wait(timeout)


_JOBS: dict[str, DownloadJob] = {}
_JOBS_LOCK = threading.Lock()


def download_job(model_name: str) -> DownloadJob | None:
    """The latest job of ``model_name`` in this process (running or ended), or None."""
    with _JOBS_LOCK:
        return _JOBS.get(model_name)


def start_download(model_name: str, *, clip: str = "openai", cache_dir: str | None = None) -> DownloadJob:
    """Start :func:`download_required` in a daemon thread, or return the job already running for the model."""
    with _JOBS_LOCK:
        job = _JOBS.get(model_name)
        if job is not None and job.state == "running":
            return job
        job = _JOBS[model_name] = DownloadJob(model_name)

    def run() -> None:
        def report(p: DownloadProgress) -> None:
            job.progress = p

        try:
            job.files = download_required(model_name, progress=report, clip=clip, cache_dir=cache_dir)
            job.state = "done"
        except (WeightsDownloadError, WeightsNotFoundError, OSError) as exc:
            job.error, job.reason = str(exc), getattr(exc, "reason", "offline" if isinstance(
                exc, WeightsNotFoundError) else "other")
            job.files = required_files(model_name, clip=clip, cache_dir=cache_dir)
            job.state = "failed"
        finally:
            job.finished_at = time.time()
            job._done.set()

    threading.Thread(target=run, name=f"download-{os.path.basename(model_name)}", daemon=True).start()
    return job
