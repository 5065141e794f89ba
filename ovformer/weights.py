"""Registry, cache and download of the released OVFormer checkpoints.

The four official checkpoints live on Google Drive (ids from the official README). Each
entry keeps the preprocessing its model was evaluated with next to the file id, so a
caller never pairs weights with the wrong input size.

Files are cached in ``ovformer_home() / "weights"``. Sizes and SHA-256 digests were not
published; the first successful download records them in ``known_hashes.json`` beside the
files and every later download of that name is checked against the record.

Example:
    >>> path = resolve_weights("r50-lvvis", download=False)  # doctest: +SKIP
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
    "WeightsDownloadError",
    "WeightsEntry",
    "WeightsNotFoundError",
    "download_weights",
    "get_weights_entry",
    "list_pretrained",
    "ovformer_home",
    "resolve_weights",
    "weights_path",
]

_GDRIVE_UC = "https://drive.google.com/uc"
_CHUNK = 1 << 20
_USER_AGENT = "ovformer-studio/0.1 (python urllib)"


class WeightsNotFoundError(FileNotFoundError):
    """A checkpoint is neither on disk nor allowed to be downloaded."""


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

    @property
    def url(self) -> str:
        """Page where a person can download the file by hand."""
        return f"https://drive.google.com/file/d/{self.gdrive_id}/view"


_REGISTRY: dict[str, WeightsEntry] = {
    e.name: e
    for e in (
        WeightsEntry("r50-lvvis", "1-zfEwdglPeVHzlc5Ky_HJlZtMgGXAy1S", "ovformer_r50_lvvis.pth", "R50", "LV-VIS", "r50-lvvis", 360),
        WeightsEntry("swinb-lvvis", "107BNsu9eTr5e70B4oj28jgHKBjYTWNWp", "ovformer_swinb_lvvis.pth", "SwinB", "LV-VIS", "swinb-lvvis", 480),
        WeightsEntry("r50-lvis", "1-tMcjp8xIYr9E5r5JYOESGajXtMAs33y", "ovformer_r50_lvis.pth", "R50", "LVIS", "r50-lvis", 360),
        WeightsEntry("swinb-lvis", "102qxZlu05yXILfghhrwjxv-tL3MlcYu7", "ovformer_swinb_lvis.pth", "SwinB", "LVIS", "swinb-lvis", 480),
    )
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


def _record_known(entry: WeightsEntry, size: int, sha256: str) -> None:
    known = _read_known()
    known[entry.name] = {"gdrive_id": entry.gdrive_id, "size": size, "sha256": sha256}
    path = _hashes_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.part")
    tmp.write_text(json.dumps(known, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def list_pretrained() -> list[WeightsEntry]:
    """All registered checkpoints, with sizes/hashes filled in from the local record."""
    return [get_weights_entry(name) for name in _REGISTRY]


def get_weights_entry(name: str) -> WeightsEntry:
    """The registry entry for ``name``; unknown size/hash taken from ``known_hashes.json``.

    Raises:
        KeyError: ``name`` is not registered (the message lists the known names).
    """
    if name not in _REGISTRY:
        raise KeyError(f"unknown OVFormer weights {name!r}; known: {', '.join(_REGISTRY)}")
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
    interrupted download never leaves a file that looks complete.

    Args:
        name: registry name.
        force: download even if the file is already cached.
        progress: show a tqdm progress bar.

    Returns:
        Path of the verified file.

    Raises:
        WeightsDownloadError: network failure, Google Drive refusing the file (quota, not
            shared), or a size/hash mismatch with the recorded values.
    """
    entry = get_weights_entry(name)
    path = _weights_dir() / entry.filename
    if path.is_file() and not force:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    try:
        size, digest = _fetch_gdrive(entry.gdrive_id, part, desc=entry.filename, progress=progress)
    except OSError as exc:  # URLError, HTTPError, disk errors
        part.unlink(missing_ok=True)
        raise WeightsDownloadError(
            f"Could not download OVFormer weights '{name}': {exc}\n"
            f"  download {entry.url} by hand and save it as {path}"
        ) from exc
    except WeightsDownloadError:
        part.unlink(missing_ok=True)
        raise
    problems = []
    if entry.size is not None and size != entry.size:
        problems.append(f"size {size} bytes, expected {entry.size}")
    if entry.sha256 is not None and digest != entry.sha256:
        problems.append(f"sha256 {digest}, expected {entry.sha256}")
    if problems:
        part.unlink(missing_ok=True)
        raise WeightsDownloadError(
            f"Downloaded OVFormer weights '{name}' do not match the record ({'; '.join(problems)}). "
            f"The file was removed. If the release really changed, delete the '{name}' entry "
            f"of {_hashes_file()} and download again."
        )
    os.replace(part, path)
    if entry.sha256 is None:
        _record_known(entry, size, digest)
    return path


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
