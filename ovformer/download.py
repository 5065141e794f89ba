"""Fetching the files of :mod:`ovformer.weights`: Google Drive through ``gdown``, the Hugging Face
Hub through ``huggingface_hub``.

Every file goes the same way: the library writes its own resumable partial file, the finished
file is staged as ``<file>.part`` (or the hub's ``.incomplete`` blob), its size and SHA-256 are
checked against ``known_hashes.json`` (recorded there by the first download), and only then is
it renamed to its final name. A failure raises :class:`~ovformer.weights.WeightsDownloadError`
whose ``reason`` says why (``"network"``, ``"quota"``, ``"disk-full"``, ``"verification"``,
``"other"``); nothing that looks complete is left behind.

Test hosts
----------
gdown has no base-URL setting: ``https://drive.google.com`` is written into its code
(``gdown/download.py::download``, ``gdown/download_folder.py::_parse_embedded_folder_view``).
What it does take is a ``proxy`` and a CA bundle (``verify``). So a stand-in for the hosts is a
local HTTP proxy that answers ``CONNECT drive.google.com:443`` itself with a certificate from a
test CA; the Hub has its own base URL (``endpoint``). One environment variable points both there::

    OVFORMER_DOWNLOAD_STANDIN="http://127.0.0.1:8123?ca=/tmp/standin/ca.pem"

- Drive requests (gdown): proxy ``http://127.0.0.1:8123``, TLS checked against ``ca.pem``;
- Hub requests (huggingface_hub): endpoint ``http://127.0.0.1:8123/hub``.

Nothing else changes: the same functions, the same gdown and huggingface_hub calls, the same
Drive URLs. :func:`use_download_hosts` does the same from Python (a registry override).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import os
import shutil
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from .weights import WeightsDownloadError

__all__ = ["STANDIN_ENV", "DownloadHosts", "DownloadProgress", "ProgressCallback", "download_hosts",
           "fetch_drive_file", "fetch_hub_file", "hub_cached_path", "hub_online", "list_drive_folder",
           "sha256_of", "use_download_hosts"]

STANDIN_ENV = "OVFORMER_DOWNLOAD_STANDIN"
DRIVE_RETRIES = 2  # gdown resumes a dropped transfer with a Range request this many times
_TIMEOUT = (20.0, 60.0)  # (connect, between bytes): a dead network fails instead of hanging
_REPORT_EVERY_S = 0.25


@dataclass(frozen=True)
class DownloadHosts:
    """Where downloads go. All None: the real hosts (production).

    Attributes:
        drive_proxy: HTTP proxy every Google Drive request goes through (gdown's ``proxy``).
        ca_bundle: CA certificates the Drive TLS is checked against (gdown's ``verify``).
        hub_endpoint: base URL of the Hugging Face Hub (``hf_hub_download(endpoint=...)``).
    """

    drive_proxy: str | None = None
    ca_bundle: str | None = None
    hub_endpoint: str | None = None

    @classmethod
    def from_standin(cls, value: str) -> "DownloadHosts":
        """Hosts from ``OVFORMER_DOWNLOAD_STANDIN``'s form ``http://HOST:PORT?ca=/path/ca.pem``."""
        parts = urllib.parse.urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{STANDIN_ENV}={value!r} is not of the form http://HOST:PORT?ca=/path/ca.pem")
        base = f"{parts.scheme}://{parts.netloc}"
        ca = urllib.parse.parse_qs(parts.query).get("ca", [None])[0]
        return cls(drive_proxy=base, ca_bundle=ca, hub_endpoint=base + "/hub")


_override: DownloadHosts | None = None


def download_hosts() -> DownloadHosts:
    """The hosts in force: :func:`use_download_hosts`, else ``$OVFORMER_DOWNLOAD_STANDIN``, else the real ones."""
    if _override is not None:
        return _override
    value = os.environ.get(STANDIN_ENV, "").strip()
    return DownloadHosts.from_standin(value) if value else DownloadHosts()


@contextlib.contextmanager
def use_download_hosts(hosts: DownloadHosts | None) -> Iterator[DownloadHosts | None]:
    """Send the downloads inside the block to ``hosts`` (tests; None: back to the environment); restores the previous ones."""
    global _override
    saved, _override = _override, hosts
    try:
        yield hosts
    finally:
        _override = saved


# --- progress -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DownloadProgress:
    """One progress report.

    Attributes:
        label: what is downloading (``"OVFormer checkpoint r50-lvvis"``).
        path: where it goes.
        done: bytes of this file so far (resumed bytes included).
        total: the file's size in bytes, None while unknown.
        rate: bytes per second over this transfer.
        eta_s: seconds left, None while unknown.
        file_index: 1-based position of this file in the job; ``file_count`` files in all.
    """

    label: str
    path: str
    done: int
    total: int | None
    rate: float
    eta_s: float | None
    file_index: int = 1
    file_count: int = 1

    @property
    def fraction(self) -> float | None:
        """done / total, None while the total is unknown."""
        return min(1.0, self.done / self.total) if self.total else None


ProgressCallback = Callable[[DownloadProgress], None]


class _Meter:
    """Turns ``(bytes so far, total)`` calls into rate-limited :class:`DownloadProgress` reports."""

    def __init__(self, callback: ProgressCallback | None, label: str, path: Path, index: int, count: int) -> None:
        self.callback, self.label, self.path, self.index, self.count = callback, label, str(path), index, count
        self.start_time = time.monotonic()
        self.start_bytes: int | None = None
        self.last_report = 0.0

    def __call__(self, done: int, total: int | None, *, final: bool = False) -> None:
        if self.callback is None:
            return
        now = time.monotonic()
        if self.start_bytes is None:
            self.start_bytes = done  # resumed bytes do not count towards the rate
        if not final and now - self.last_report < _REPORT_EVERY_S:
            return
        self.last_report = now
        elapsed = max(now - self.start_time, 1e-6)
        rate = max(done - self.start_bytes, 0) / elapsed
        eta = (total - done) / rate if total is not None and rate > 0 else None
        self.callback(DownloadProgress(self.label, self.path, done, total, rate, eta, self.index, self.count))


# --- failures -------------------------------------------------------------------------------


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]


def _reason(exc: BaseException) -> str:
    """What kind of failure ``exc`` is, from the whole chain of causes."""
    import gdown
    import requests

    chain = list(_chain(exc))
    if any(isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT) for e in chain):
        return "disk-full"
    if any(isinstance(e, gdown.FileURLRetrievalError) for e in chain):
        return "quota"
    names = {type(e).__name__ for e in chain}
    if any(isinstance(e, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError)) for e in chain) \
            or names & {"ConnectError", "ConnectTimeout", "ReadTimeout", "RemoteProtocolError", "LocalEntryNotFoundError",
                        "OfflineModeIsEnabled", "ProxyError"} \
            or any("incomplete" in str(e).lower() or "Consistency check failed" in str(e) for e in chain):
        return "network"
    return "other"


_WHY = {
    "network": "the connection failed or was cut (no network, or the host is unreachable); "
               "what arrived is kept as a .part file and the next try resumes it",
    "quota": "Google Drive answered with a web page instead of the file (download quota exceeded, "
             "or the file is no longer shared); try again later",
    "disk-full": "the disk is full",
    "other": "the download failed",
}


def _failure(exc: BaseException, label: str, by_hand: str) -> WeightsDownloadError:
    reason = _reason(exc)
    return WeightsDownloadError(f"Could not download {label}: {_WHY[reason]}.\n  cause: {exc}\n  {by_hand}", reason=reason)


def _check_free_space(folder: Path, needed: int | None, label: str) -> None:
    if not needed:
        return
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise WeightsDownloadError(f"Could not download {label}: the disk is full ({free} bytes free in "
                                   f"{folder}, the file takes {needed}).", reason="disk-full")


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(size: int, digest: str, expected: tuple[int | None, str | None], label: str, record_hint: str) -> None:
    """Raise WeightsDownloadError (reason ``"verification"``) when size/digest differ from ``expected``."""
    want_size, want_sha = expected
    problems = []
    if want_size is not None and size != want_size:
        problems.append(f"size {size} bytes, expected {want_size}")
    if want_sha is not None and digest != want_sha:
        problems.append(f"sha256 {digest}, expected {want_sha}")
    if problems:
        raise WeightsDownloadError(f"Downloaded {label} do not match the record ({'; '.join(problems)}). "
                                   f"The file was removed. {record_hint}", reason="verification")


# --- Google Drive (gdown) -------------------------------------------------------------------


def _partials(staged: Path) -> list[Path]:
    # gdown's own partial file for output X is X + 8 random characters + ".part"
    return [p for p in staged.parent.glob(glob.escape(staged.name) + "*.part") if p != staged]


def fetch_drive_file(file_id: str, dest: Path, *, label: str, expected: tuple[int | None, str | None],
                     by_hand: str, record_hint: str, cookies_file: Path, progress: ProgressCallback | None = None,
                     file_index: int = 1, file_count: int = 1) -> tuple[int, str]:
    """Download a Google Drive file to ``dest`` through gdown; returns its (size, sha256).

    gdown writes ``<dest>.part<8 chars>.part`` while the bytes arrive (kept after a dropped
    connection; the next call resumes it with a Range request) and renames it to
    ``<dest>.part`` when complete; this function renames that to ``dest`` only after the size
    and hash check.

    Raises:
        WeightsDownloadError: with ``reason`` network / quota / disk-full / verification / other.
    """
    import gdown

    hosts = download_hosts()
    dest.parent.mkdir(parents=True, exist_ok=True)
    staged = dest.with_name(dest.name + ".part")
    _check_free_space(dest.parent, expected[0], label)
    meter = _Meter(progress, label, dest, file_index, file_count)
    hasher = hashlib.sha256()
    try:
        if not staged.is_file():  # a staged file is complete but was never verified: check it below
            gdown.download(id=file_id, output=str(staged), quiet=True, resume=True, hasher=hasher,
                           progress=lambda done, total: meter(done, total), proxy=hosts.drive_proxy,
                           verify=hosts.ca_bundle or True, use_cookies=True, cookies_file=str(cookies_file),
                           timeout=_TIMEOUT, retries=DRIVE_RETRIES)
            digest = hasher.hexdigest()
        else:
            digest = sha256_of(staged)
    except Exception as exc:  # gdown: DownloadError, FileURLRetrievalError, requests errors, OSError
        err = _failure(exc, label, by_hand)
        if err.reason != "network":  # only a cut connection leaves bytes worth resuming
            for p in _partials(staged):
                p.unlink(missing_ok=True)
        raise err from exc
    size = staged.stat().st_size
    meter(size, size, final=True)
    try:
        verify(size, digest, expected, label, record_hint)
    except WeightsDownloadError:
        staged.unlink(missing_ok=True)
        raise
    os.replace(staged, dest)
    return size, digest


def list_drive_folder(folder_id: str, *, label: str, by_hand: str, cookies_file: Path) -> dict[str, str]:
    """File name -> file id of a shared Google Drive folder (gdown's folder listing; nothing is downloaded)."""
    import gdown

    hosts = download_hosts()
    try:
        entries = gdown.download_folder(id=folder_id, skip_download=True, quiet=True, proxy=hosts.drive_proxy,
                                        verify=hosts.ca_bundle or True, use_cookies=True,
                                        cookies_file=str(cookies_file), timeout=_TIMEOUT)
    except Exception as exc:  # DownloadError (page not readable / not shared), requests errors
        raise _failure(exc, f"the Google Drive folder of {label}", by_hand) from exc
    return {Path(e.path).name: e.id for e in entries if "/" not in e.path.replace(os.sep, "/")}


# --- Hugging Face Hub -----------------------------------------------------------------------

_HUB_LOCK = threading.Lock()


@contextlib.contextmanager
def hub_online() -> Iterator[None]:
    """Lift huggingface_hub's offline switch (``HF_HUB_OFFLINE``) for the calls inside the block.

    The hub reads its switch from ``huggingface_hub.constants.HF_HUB_OFFLINE`` on every request
    (``utils/_http.py::hf_request_event_hook`` via ``constants.is_offline_mode``), so the
    constant is set for the block and put back after; the environment is never touched.
    Telemetry is switched off for the block too (``constants.HF_HUB_DISABLE_TELEMETRY``): with
    it on, building the user agent (``utils/_headers.py::_http_user_agent`` ->
    ``utils/_detect_agent.py::_fetch_registry``) makes a request of its own to the default hub
    host, which is neither the file asked for nor the endpoint given. The constants are
    process-wide, so hub requests of other threads made during the block are allowed too; the
    lock keeps two blocks from restoring each other's values.
    """
    from huggingface_hub import constants

    with _HUB_LOCK:
        saved = constants.HF_HUB_OFFLINE, constants.HF_HUB_DISABLE_TELEMETRY
        constants.HF_HUB_OFFLINE, constants.HF_HUB_DISABLE_TELEMETRY = False, True
        try:
            yield
        finally:
            constants.HF_HUB_OFFLINE, constants.HF_HUB_DISABLE_TELEMETRY = saved


def hub_cached_path(repo_id: str, filename: str, *, revision: str = "main", cache_dir: str | None = None) -> Path | None:
    """The cached copy of a hub file, or None; never touches the network."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir, revision=revision)
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


def _hub_bar(meter: _Meter) -> type:
    class Bar:  # what http_get needs of a tqdm_class: a context manager with update()
        def __init__(self, *args: Any, total: int | None = None, initial: int = 0, **kwargs: Any) -> None:
            self.total, self.n = total, initial

        def update(self, n: int = 1) -> None:
            self.n += n
            meter(self.n, self.total)

        def close(self) -> None:
            pass

        def __enter__(self) -> "Bar":
            return self

        def __exit__(self, *exc: Any) -> None:
            self.close()

    return Bar


def fetch_hub_file(repo_id: str, filename: str, *, label: str, expected: tuple[int | None, str | None],
                   by_hand: str, record_hint: str, revision: str = "main", cache_dir: str | None = None,
                   progress: ProgressCallback | None = None, file_index: int = 1,
                   file_count: int = 1) -> tuple[Path, int, str]:
    """Download a hub file into the hub cache with the offline switch lifted for this call only.

    huggingface_hub writes ``blobs/<etag>.incomplete`` (resumed by its retries and by the next
    call), checks the size, renames it to ``blobs/<etag>`` and links the snapshot path. For LFS
    files the etag is the SHA-256 of the content, which is checked here as well as the record.

    Returns:
        (snapshot path, size, sha256).
    """
    from huggingface_hub import constants, hf_hub_download

    hosts = download_hosts()
    meter = _Meter(progress, label, Path(cache_dir or constants.HF_HUB_CACHE), file_index, file_count)
    try:
        with hub_online():
            path = Path(hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir,
                                        endpoint=hosts.hub_endpoint, tqdm_class=_hub_bar(meter), etag_timeout=20))
    except Exception as exc:  # LocalEntryNotFoundError (unreachable), HfHubHTTPError, OSError
        raise _failure(exc, label, by_hand) from exc
    blob = path.resolve()
    size, digest = blob.stat().st_size, sha256_of(blob)
    meter(size, size, final=True)
    etag_sha = blob.name if len(blob.name) == 64 and all(c in "0123456789abcdef" for c in blob.name) else None
    try:
        verify(size, digest, (expected[0], expected[1] or etag_sha), label, record_hint)
    except WeightsDownloadError:
        blob.unlink(missing_ok=True)  # the snapshot link now dangles: the file reads as missing
        path.unlink(missing_ok=True)
        raise
    return path, size, digest
