"""Registry and cache of the files the released OVFormer models need.

Three kinds of entries:

- ``"checkpoint"`` (:class:`WeightsEntry`): the four official OVFormer checkpoints on Google
  Drive (ids from the official README). Each entry keeps the preprocessing its model was
  evaluated with next to the file id, so a caller never pairs weights with the wrong input
  size.
- ``"prompts"`` (:class:`PromptsEntry`): DetPro's learned prompt contexts, the files the
  released classifiers were built from (see :mod:`ovformer.detpro`). They were released as a
  Google Drive *folder*, so the entry names the folder and the files needed from it.
- ``"clip"``: OpenAI's CLIP ViT-B/32 weights, in :mod:`ovformer.clip_weights` (they live in
  the Hugging Face Hub cache, where open_clip looks for them).

Files are cached in ``ovformer_home() / "weights"`` (a prompt set in a sub-folder named after
the entry). Sizes and SHA-256 digests were not published; the first successful download
records them in ``known_hashes.json`` beside the files and every later download of that
file is checked against the record. The fetching itself is :mod:`ovformer.download` (gdown,
huggingface_hub); what a model needs, and getting it in one go, is :mod:`ovformer.model_files`.

Example:
    >>> path = resolve_weights("r50-lvvis", download=False)  # doctest: +SKIP
    >>> folder = resolve_prompts("detpro-lvis", download=False)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Union

__all__ = [
    "DETPRO_LVIS", "PromptsEntry", "WeightsDownloadError", "WeightsEntry", "WeightsNotFoundError",
    "download_prompts", "download_weights", "downloads_forbidden", "get_prompts_entry", "get_weights_entry",
    "list_prompt_sets", "list_pretrained",
    "ovformer_home", "prompt_problems", "prompts_dir", "resolve_prompts", "resolve_weights", "weights_path",
]

# what download_weights/download_prompts accept as progress: a terminal bar (True), nothing
# (False) or a callback taking ovformer.download.DownloadProgress
Progress = Union[bool, Callable[[Any], None]]


class WeightsNotFoundError(FileNotFoundError):
    """A checkpoint (or prompt file) is neither on disk nor allowed to be downloaded."""


class WeightsDownloadError(RuntimeError):
    """A download failed, or the downloaded file does not match its recorded size/hash.

    Attributes:
        reason: ``"network"`` (no network, host unreachable, connection cut), ``"quota"``
            (Google Drive sent a web page instead of the file), ``"disk-full"``,
            ``"verification"`` (size/SHA-256 differ from the record) or ``"other"``.
    """

    def __init__(self, message: str = "", *, reason: str = "other") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class WeightsEntry:
    """One released checkpoint.

    Attributes:
        name: registry name, also the model preset it needs (``ovformer.get_preset``).
        gdrive_id: Google Drive file id.
        filename: file name in the cache.
        backbone: ``"R50"`` or ``"SwinB"``.
        trained_on: ``"LVIS"`` (image) or ``"LV-VIS"`` (video).
        preset: name of the model config preset matching the checkpoint.
        min_size_test: shorter side of the frames at inference (360 R50, 480 Swin-B).
        size: expected file size in bytes, None when unknown.
        sha256: expected hex digest, None when unknown.
        kind: always ``"checkpoint"`` (prompt sets are :class:`PromptsEntry`).
    """

    name: str
    gdrive_id: str
    filename: str
    backbone: str
    trained_on: str
    preset: str
    min_size_test: int
    size: int | None = None
    sha256: str | None = None
    kind: str = "checkpoint"

    @property
    def url(self) -> str:
        """Page where a person can download the file by hand."""
        return f"https://drive.google.com/file/d/{self.gdrive_id}/view"


@dataclass(frozen=True)
class PromptsEntry:
    """A released set of learned prompt files, all in one shared Google Drive folder.

    Attributes: ``name`` (also the cache sub-folder), ``gdrive_folder_id``, ``filenames``
    (the folder's files the code needs, in load order), ``description`` (what they are, where
    they were published) and ``kind`` (always ``"prompts"``).
    """

    name: str
    gdrive_folder_id: str
    filenames: tuple[str, ...]
    description: str
    kind: str = "prompts"

    @property
    def url(self) -> str:
        """Folder page where a person can download the files by hand."""
        return f"https://drive.google.com/drive/folders/{self.gdrive_folder_id}"


_REGISTRY: dict[str, WeightsEntry] = {
    e.name: e
    for e in (
        WeightsEntry("r50-lvvis", "1-zfEwdglPeVHzlc5Ky_HJlZtMgGXAy1S", "ovformer_r50_lvvis.pth", "R50", "LV-VIS", "r50-lvvis", 360),
        WeightsEntry("swinb-lvvis", "107BNsu9eTr5e70B4oj28jgHKBjYTWNWp", "ovformer_swinb_lvvis.pth", "SwinB", "LV-VIS", "swinb-lvvis", 480),
        WeightsEntry("r50-lvis", "1-tMcjp8xIYr9E5r5JYOESGajXtMAs33y", "ovformer_r50_lvis.pth", "R50", "LVIS", "r50-lvis", 360),
        WeightsEntry("swinb-lvis", "102qxZlu05yXILfghhrwjxv-tL3MlcYu7", "ovformer_swinb_lvis.pth", "SwinB", "LVIS", "swinb-lvis", 480),
    )
}


DETPRO_LVIS = "detpro-lvis"

# dyabel/detpro README, "Tranfer experiments": "The empty prompt is provided [here](Drive
# folder)" for generating classifiers of other vocabularies. The folder's file names are not in
# the README; they are those reported in dyabel/detpro issue #42 (one per positive-IoU bucket
# of detpro.sh, "r1" instead of "endepoch6" in the name).
_PROMPT_SETS: dict[str, PromptsEntry] = {
    DETPRO_LVIS: PromptsEntry(
        DETPRO_LVIS,
        "1DSkfTO3TWrIW0k1kt67Ez-wLwXy9mVqF",
        tuple(f"fg_bg_5_{lo}_{hi}_r1_prompt.pth" for lo, hi in ((5, 6), (6, 7), (7, 8), (8, 9), (9, 10))),
        "DetPro's five learned prompt contexts for CLIP ViT-B/32, trained on LVIS base classes "
        "(positives at IoU 0.5-0.6, 0.6-0.7, 0.7-0.8, 0.8-0.9, 0.9-1.0, plus background "
        "proposals); each file is one torch.save'd (8, 512) float tensor. The 'empty prompt' "
        "Google Drive folder of the dyabel/detpro README.",
    ),
}



def ovformer_home() -> Path:
    """Root of OVFormer's cache: ``$OVFORMER_HOME``, default ``~/.cache/ovformer``."""
    return Path(os.environ.get("OVFORMER_HOME") or Path.home() / ".cache" / "ovformer").expanduser()


def _weights_dir() -> Path:
    return ovformer_home() / "weights"


def _hashes_file() -> Path:
    return _weights_dir() / "known_hashes.json"


def _cookies_file() -> Path:
    return _weights_dir() / "gdown_cookies.txt"  # gdown's Drive session, kept out of ~/.cache/gdown


def downloads_forbidden() -> bool:
    """True when ``OVFORMER_OFFLINE`` (1/true/yes) forbids every download."""
    return os.environ.get("OVFORMER_OFFLINE", "").strip().lower() in ("1", "true", "yes")


def _read_known() -> dict[str, dict[str, Any]]:
    try:
        return json.loads(_hashes_file().read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {}  # a damaged record only costs the check; the next download rewrites it


def _record_known(key: str, record: dict[str, Any]) -> None:
    known = _read_known()
    known[key] = record
    path = _hashes_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.part")
    tmp.write_text(json.dumps(known, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def list_pretrained() -> list[WeightsEntry]:
    """All registered checkpoints, with sizes/hashes filled in from the local record.

    Prompt sets are listed by :func:`list_prompt_sets`; keeping them out of this list keeps
    "is this a checkpoint name?" a simple membership test.
    """
    return [get_weights_entry(name) for name in _REGISTRY]


def get_weights_entry(name: str) -> WeightsEntry:
    """The registry entry for ``name``; unknown size/hash taken from ``known_hashes.json``.

    Raises:
        KeyError: ``name`` is not registered (the message lists the known names).
    """
    if name not in _REGISTRY:
        hint = f" ('{name}' is a prompt set: see resolve_prompts)" if name in _PROMPT_SETS else ""
        raise KeyError(f"unknown OVFormer weights {name!r}{hint}; known: {', '.join(_REGISTRY)}")
    entry = _REGISTRY[name]
    rec = _read_known().get(name, {})
    if rec.get("gdrive_id") != entry.gdrive_id:
        return entry  # a record for another file id says nothing about this one
    return replace(entry, size=entry.size or rec.get("size"), sha256=entry.sha256 or rec.get("sha256"))


def weights_path(name: str) -> Path:
    """Where the cached file of a registered checkpoint lives (whether or not it exists)."""
    return _weights_dir() / get_weights_entry(name).filename


def _missing_message(entry: WeightsEntry, path: Path, why: str) -> str:
    return (
        f"OVFormer weights '{entry.name}' ({entry.backbone}, trained on {entry.trained_on}) {why}.\n"
        f"  missing file: {path}\n"
        f"  download it:  ovformer weights download {entry.name}\n"
        f"  or by hand:   {entry.url} -> save it as the file above\n"
        f"  or run without pretrained weights: --untrained"
    )


def resolve_weights(name_or_path: str | os.PathLike[str], *, download: bool) -> Path:
    """Find a checkpoint file from a registry name or a path.

    A registered name wins over a file of the same name; write ``./r50-lvvis`` for the file.

    Args:
        name_or_path: ``"r50-lvvis"``, ``"swinb-lvvis"``, ``"r50-lvis"``, ``"swinb-lvis"``
            or a path to a checkpoint.
        download: allow fetching a missing registered checkpoint from Google Drive.
            ``OVFORMER_OFFLINE=1`` in the environment forbids it regardless.

    Returns:
        Path of an existing checkpoint file.

    Raises:
        WeightsNotFoundError: the path does not exist, or the checkpoint is not cached and
            downloading is not allowed. The message says what to do.
        WeightsDownloadError: the download failed or did not verify.
    """
    key = os.fspath(name_or_path)
    if key not in _REGISTRY:
        path = Path(key).expanduser()
        if path.is_file():
            return path
        if key in _PROMPT_SETS:
            raise WeightsNotFoundError(
                f"'{key}' is a set of DetPro prompt files, not a checkpoint; "
                f"resolve it with ovformer.weights.resolve_prompts('{key}', download=...)"
            )
        raise WeightsNotFoundError(
            f"Checkpoint file not found: {path.resolve()}\n"
            f"  pass an existing .pth file, or one of the released names: {', '.join(_REGISTRY)}"
        )
    entry = get_weights_entry(key)
    path = _weights_dir() / entry.filename
    if path.is_file():
        if entry.size is None or path.stat().st_size == entry.size:
            return path  # cache hit; the full hash was checked when the file arrived
        why = f"in the cache are damaged ({path.stat().st_size} bytes, expected {entry.size})"
    else:
        why = "are not in the local cache"
    offline = downloads_forbidden()
    if not download or offline:
        reason = why + (" and OVFORMER_OFFLINE is set" if offline and download else "")
        raise WeightsNotFoundError(_missing_message(entry, path, reason))
    return download_weights(key, force=True)


def download_weights(name: str, *, force: bool = False, progress: Progress = True) -> Path:
    """Download a registered checkpoint into the cache (``ovformer weights download NAME`` fetches
    it together with everything else the model needs: :func:`ovformer.model_files.download_required`).

    gdown writes a resumable partial file; the finished file is staged as ``<file>.part`` and
    renamed only after the size and SHA-256 check, so an interrupted download never leaves a
    file that looks complete. A prompt-set name (``"detpro-lvis"``) is handed to
    :func:`download_prompts` and returns its folder.

    Args:
        name: registry name.
        force: download even if the file is already cached.
        progress: True for a terminal progress bar, False for none, or a callback receiving
            :class:`ovformer.download.DownloadProgress` reports.

    Returns:
        Path of the verified file (the folder, for a prompt set).

    Raises:
        WeightsDownloadError: network failure, Google Drive refusing the file (quota, not
            shared), a full disk, or a size/hash mismatch with the recorded values
            (``reason`` says which).
    """
    from .model_files import fetch_checkpoint

    if name in _PROMPT_SETS:
        return download_prompts(name, force=force, progress=progress)
    return fetch_checkpoint(name, force=force, progress=progress)


# --- prompt sets ----------------------------------------------------------------------------


def list_prompt_sets() -> list[PromptsEntry]:
    """All registered prompt sets (``kind == "prompts"``)."""
    return list(_PROMPT_SETS.values())


def get_prompts_entry(name: str) -> PromptsEntry:
    """The entry of a prompt set; KeyError listing the known ones for another name."""
    if name not in _PROMPT_SETS:
        raise KeyError(f"unknown prompt set {name!r}; known: {', '.join(_PROMPT_SETS)}")
    return _PROMPT_SETS[name]


def prompts_dir(name: str) -> Path:
    """The cache folder of a prompt set (whether or not its files exist)."""
    return _weights_dir() / get_prompts_entry(name).name


def _prompt_records(entry: PromptsEntry) -> dict[str, dict[str, Any]]:
    known = _read_known()
    recs = {f: known.get(f"{entry.name}/{f}", {}) for f in entry.filenames}
    # a record made for another folder id says nothing about this release
    return {f: r if r.get("gdrive_folder_id") == entry.gdrive_folder_id else {} for f, r in recs.items()}


def prompt_problems(entry: PromptsEntry) -> dict[str, str]:
    """Files of the set that are not usable in the cache: name -> "missing" / "damaged (...)"."""
    folder, problems = prompts_dir(entry.name), {}
    for filename, rec in _prompt_records(entry).items():
        path = folder / filename
        if not path.is_file():
            problems[filename] = "missing"
        elif rec.get("size") is not None and path.stat().st_size != rec["size"]:
            problems[filename] = f"damaged ({path.stat().st_size} bytes, expected {rec['size']})"
    return problems  # a present file of the recorded size had its full hash checked on arrival


def resolve_prompts(name: str = DETPRO_LVIS, *, download: bool) -> Path:
    """The cache folder of a prompt set, holding every file of ``get_prompts_entry(name).filenames``.

    Args:
        name: registered prompt set (``"detpro-lvis"``).
        download: allow fetching missing files from Google Drive; ``OVFORMER_OFFLINE=1``
            forbids it regardless.

    Raises:
        WeightsNotFoundError: a file is missing or damaged and downloading is not allowed;
            the message names each file, the download command and the folder's URL.
        WeightsDownloadError: the download failed or did not verify.
    """
    entry = get_prompts_entry(name)
    folder, problems = prompts_dir(name), prompt_problems(entry)
    if not problems:
        return folder
    offline = downloads_forbidden()
    if download and not offline:
        return download_prompts(name)
    lines = [f"DetPro prompt set '{name}' is not complete in the local cache"
             + (" and OVFORMER_OFFLINE is set." if offline and download else "."), f"  ({entry.description})"]
    lines += [f"  {problem} file: {folder / filename}" for filename, problem in problems.items()]
    lines += [f"  download them: ovformer weights download {name}",
              f"  or by hand:    {entry.url} -> save the files above into {folder}",
              "  or embed class names with the 14-template CLIP ensemble "
              "(ovformer.detpro.template_ensemble_embeddings), which only approximates the released classifiers"]
    raise WeightsNotFoundError("\n".join(lines))


def download_prompts(name: str = DETPRO_LVIS, *, force: bool = False, progress: Progress = True) -> Path:
    """Download the files of a prompt set into :func:`prompts_dir` and return that folder.

    The per-file Drive ids were never published, so the folder's public listing is read (by
    gdown) to find them; each file then takes the checkpoint path (staged ``.part``, size and
    SHA-256 checked against / recorded in ``known_hashes.json`` under ``"<set>/<file>"``).

    Raises:
        WeightsDownloadError: the folder could not be listed or lacks a needed file, or a
            file failed to download or verify.
    """
    from .model_files import fetch_prompts

    return fetch_prompts(name, force=force, progress=progress)
