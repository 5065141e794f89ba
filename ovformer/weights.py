"""Registry, cache and download of the released OVFormer checkpoints and DetPro prompts.

Two kinds of entries:

- ``"checkpoint"`` (:class:`WeightsEntry`): the four official OVFormer checkpoints on Google
  Drive (ids from the official README). Each entry keeps the preprocessing its model was
  evaluated with next to the file id, so a caller never pairs weights with the wrong input
  size.
- ``"prompts"`` (:class:`PromptsEntry`): DetPro's learned prompt contexts, the files the
  released classifiers were built from (see :mod:`ovformer.detpro`). They were released as a
  Google Drive *folder*, so the entry names the folder and the files needed from it.

Files are cached in ``ovformer_home() / "weights"`` (a prompt set in a sub-folder named after
the entry). Sizes and SHA-256 digests were not published; the first successful download
records them in ``known_hashes.json`` beside the files and every later download of that
file is checked against the record.

Example:
    >>> path = resolve_weights("r50-lvvis", download=False)  # doctest: +SKIP
    >>> folder = resolve_prompts("detpro-lvis", download=False)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import urllib.parse
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

__all__ = [
    "DETPRO_LVIS", "PromptsEntry", "WeightsDownloadError", "WeightsEntry", "WeightsNotFoundError",
    "download_prompts", "download_weights", "get_prompts_entry", "get_weights_entry",
    "list_prompt_sets", "list_pretrained", "ovformer_home", "prompts_dir", "resolve_prompts",
    "resolve_weights", "weights_path",
]

_GDRIVE_UC = "https://drive.google.com/uc"
_GDRIVE_FOLDER_VIEW = "https://drive.google.com/embeddedfolderview"
_CHUNK = 1 << 20
_USER_AGENT = "ovformer-studio/0.1 (python urllib)"


class WeightsNotFoundError(FileNotFoundError):
    """A checkpoint (or prompt file) is neither on disk nor allowed to be downloaded."""


class WeightsDownloadError(RuntimeError):
    """A download failed, or the downloaded file does not match its recorded size/hash."""


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
    offline = os.environ.get("OVFORMER_OFFLINE", "").strip().lower() in ("1", "true", "yes")
    if not download or offline:
        reason = why + (" and OVFORMER_OFFLINE is set" if offline and download else "")
        raise WeightsNotFoundError(_missing_message(entry, path, reason))
    return download_weights(key, force=True)


def download_weights(name: str, *, force: bool = False, progress: bool = True) -> Path:
    """Download a registered checkpoint into the cache (``ovformer weights download NAME``).

    Writes to ``<file>.part`` and renames only after the size and SHA-256 check, so an
    interrupted download never leaves a file that looks complete. A prompt-set name
    (``"detpro-lvis"``) is handed to :func:`download_prompts` and returns its folder.

    Args:
        name: registry name.
        force: download even if the file is already cached.
        progress: show a tqdm progress bar.

    Returns:
        Path of the verified file (the folder, for a prompt set).

    Raises:
        WeightsDownloadError: network failure, Google Drive refusing the file (quota, not
            shared), or a size/hash mismatch with the recorded values.
    """
    if name in _PROMPT_SETS:
        return download_prompts(name, force=force, progress=progress)
    entry = get_weights_entry(name)
    path = _weights_dir() / entry.filename
    if path.is_file() and not force:
        return path
    size, digest = _download_verified(
        entry.gdrive_id, path, label=f"OVFormer weights '{name}'", record_key=name,
        expected=(entry.size, entry.sha256), by_hand=f"download {entry.url} by hand and save it as {path}",
        progress=progress,
    )
    if entry.sha256 is None:
        _record_known(name, {"gdrive_id": entry.gdrive_id, "size": size, "sha256": digest})
    return path


def _download_verified(file_id: str, path: Path, *, label: str, record_key: str,
                       expected: tuple[int | None, str | None], by_hand: str, progress: bool) -> tuple[int, str]:
    """Fetch a Drive file to ``path`` via ``<file>.part``, checked against ``expected`` (size, sha256)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    try:
        size, digest = _fetch_gdrive(file_id, part, desc=path.name, progress=progress)
    except OSError as exc:  # URLError, HTTPError, disk errors
        part.unlink(missing_ok=True)
        raise WeightsDownloadError(f"Could not download {label}: {exc}\n  {by_hand}") from exc
    except WeightsDownloadError:
        part.unlink(missing_ok=True)
        raise
    want_size, want_sha = expected
    problems = []
    if want_size is not None and size != want_size:
        problems.append(f"size {size} bytes, expected {want_size}")
    if want_sha is not None and digest != want_sha:
        problems.append(f"sha256 {digest}, expected {want_sha}")
    if problems:
        part.unlink(missing_ok=True)
        raise WeightsDownloadError(
            f"Downloaded {label} do not match the record ({'; '.join(problems)}). "
            f"The file was removed. If the release really changed, delete the '{record_key}' entry "
            f"of {_hashes_file()} and download again."
        )
    os.replace(part, path)
    return size, digest


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


def _prompt_problems(entry: PromptsEntry) -> dict[str, str]:
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
    folder, problems = prompts_dir(name), _prompt_problems(entry)
    if not problems:
        return folder
    offline = os.environ.get("OVFORMER_OFFLINE", "").strip().lower() in ("1", "true", "yes")
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


def download_prompts(name: str = DETPRO_LVIS, *, force: bool = False, progress: bool = True) -> Path:
    """Download the files of a prompt set into :func:`prompts_dir` and return that folder.

    The per-file Drive ids were never published, so the folder's public listing is read to
    find them; each file then takes the checkpoint path (``.part``, size and SHA-256 checked
    against / recorded in ``known_hashes.json`` under ``"<set>/<file>"``).

    Raises:
        WeightsDownloadError: the folder could not be listed or lacks a needed file, or a
            file failed to download or verify.
    """
    entry = get_prompts_entry(name)
    folder, records = prompts_dir(name), _prompt_records(entry)
    wanted = list(entry.filenames) if force else list(_prompt_problems(entry))
    if not wanted:
        return folder
    by_hand = f"download the files by hand from {entry.url} into {folder}"
    try:
        listing = _list_gdrive_folder(entry.gdrive_folder_id)
    except OSError as exc:
        raise WeightsDownloadError(f"Could not list the Google Drive folder of '{name}': {exc}\n  {by_hand}") from exc
    if absent := [f for f in wanted if f not in listing]:
        raise WeightsDownloadError(
            f"The Google Drive folder of '{name}' does not list {', '.join(absent)} "
            f"(it lists: {', '.join(sorted(listing)) or 'nothing readable'}).\n  {by_hand}")
    for filename in wanted:
        key, rec = f"{name}/{filename}", records[filename]
        size, digest = _download_verified(
            listing[filename], folder / filename, label=f"DetPro prompt file '{key}'", record_key=key,
            expected=(rec.get("size"), rec.get("sha256")), by_hand=by_hand, progress=progress)
        if rec.get("sha256") is None:
            _record_known(key, {"gdrive_folder_id": entry.gdrive_folder_id, "gdrive_id": listing[filename],
                                "size": size, "sha256": digest})
    return folder


def _list_gdrive_folder(folder_id: str) -> dict[str, str]:
    """File name -> file id of a publicly shared Drive folder, read from its embeddable listing."""
    with _open(f"{_GDRIVE_FOLDER_VIEW}?" + urllib.parse.urlencode({"id": folder_id}), {}) as resp:
        page = resp.read().decode("utf-8", "replace")
    files: dict[str, str] = {}
    # Entries look like <div class="flip-entry" id="entry-FILEID"> ... <div class="flip-entry-title">
    # NAME</div>; splitting per entry keeps a title from pairing with another entry's id.
    for chunk in page.split('id="entry-')[1:]:
        file_id = chunk.split('"', 1)[0]
        title = re.search(r'class="flip-entry-title"[^>]*>([^<]*)<', chunk)
        if title and re.fullmatch(r"[0-9A-Za-z_-]+", file_id):
            files[html.unescape(title.group(1)).strip()] = file_id
    return files


def _open(url: str, cookies: dict[str, str]) -> Any:
    headers = {"User-Agent": _USER_AGENT}
    if cookies:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60)


def _is_html(resp: Any) -> bool:
    return "text/html" in (resp.headers.get("Content-Type") or "")


def _collect_cookies(resp: Any, cookies: dict[str, str]) -> None:
    for header in resp.headers.get_all("Set-Cookie") or []:
        name, _, value = header.split(";", 1)[0].partition("=")
        if name.strip():
            cookies[name.strip()] = value.strip()


def _confirm_url(page: str, file_id: str, cookies: dict[str, str]) -> str | None:
    """The real download URL behind Google Drive's "can't scan for viruses" page."""
    # Current page: a form posting id/export/confirm/uuid to drive.usercontent.google.com.
    form = re.search(r'<form([^>]*id="download-form"[^>]*)>(.*?)</form>', page, re.S)
    action = re.search(r'action="([^"]+)"', form.group(1)) if form else None
    if form and action:
        fields = {}
        for tag in re.findall(r"<input([^>]*)>", form.group(2)):
            attrs = dict(re.findall(r'(\w+)="([^"]*)"', tag))  # attribute order varies
            if attrs.get("type") == "hidden" and "name" in attrs:
                fields[attrs["name"]] = html.unescape(attrs.get("value", ""))
        return html.unescape(action.group(1)) + "?" + urllib.parse.urlencode(fields)
    # Older pages: a link or cookie carrying a confirm token.
    link = re.search(r'href="(/uc\?export=download[^"]+)"', page)
    if link:
        return "https://drive.google.com" + html.unescape(link.group(1))
    token = next((v for k, v in cookies.items() if k.startswith("download_warning")), None)
    token = token or (m.group(1) if (m := re.search(r"confirm=([0-9A-Za-z_-]+)", page)) else None)
    if token:
        return f"{_GDRIVE_UC}?" + urllib.parse.urlencode({"export": "download", "confirm": token, "id": file_id})
    return None


def _fetch_gdrive(file_id: str, dest: Path, *, desc: str, progress: bool) -> tuple[int, str]:
    """Stream a Google Drive file to ``dest``; returns (size, sha256)."""
    cookies: dict[str, str] = {}
    resp = _open(f"{_GDRIVE_UC}?" + urllib.parse.urlencode({"export": "download", "id": file_id}), cookies)
    if _is_html(resp):  # large files: an interstitial page first
        with resp:
            _collect_cookies(resp, cookies)
            page = resp.read().decode("utf-8", "replace")
        url = _confirm_url(page, file_id, cookies)
        if url is None:
            raise WeightsDownloadError(
                "Google Drive answered with a web page instead of the file (download quota "
                "exceeded or file no longer shared); try again later or download it by hand."
            )
        resp = _open(url, cookies)
        if _is_html(resp):
            resp.close()
            raise WeightsDownloadError("Google Drive still answered with a web page after the confirmation step.")
    sha, size = hashlib.sha256(), 0
    with resp, open(dest, "wb") as out:
        total = int(resp.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, disable=not progress) as bar:
            while chunk := resp.read(_CHUNK):
                out.write(chunk)
                sha.update(chunk)
                size += len(chunk)
                bar.update(len(chunk))
    return size, sha.hexdigest()
