"""A local stand-in for Google Drive and the Hugging Face Hub, on 127.0.0.1, for download tests.

The production download code runs unchanged against it (see ``ovformer.download``):

- gdown is given the stand-in as its HTTP proxy; it sends ``CONNECT drive.google.com:443``,
  which the stand-in answers itself with a certificate for the Drive hosts signed by a CA made
  here (gdown's ``verify`` is that CA), then serves ``/uc?id=...`` and ``/embeddedfolderview``
  like Drive: files with ``Content-Disposition``, an HTML quota page, or a connection cut
  mid-file.
- huggingface_hub is given ``http://127.0.0.1:PORT/hub`` as its endpoint and gets HEAD/GET
  ``/{repo}/resolve/{revision}/{file}`` with the hub's headers (X-Repo-Commit, X-Linked-Etag).

``StandinHosts.env_value`` is the value of ``OVFORMER_DOWNLOAD_STANDIN`` for a subprocess (the
app); ``StandinHosts.hosts`` the :class:`~ovformer.download.DownloadHosts` for in-process use.
Every request is recorded in ``requests`` so a test can check what was asked for.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import html
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

from ovformer.download import DownloadHosts

DRIVE_HOSTS = ("drive.google.com", "docs.google.com", "drive.usercontent.google.com")
REPO_COMMIT = "0123456789abcdef0123456789abcdef01234567"
QUOTA_PAGE = (
    "<html><head><title>Google Drive - Quota exceeded</title></head><body>"
    '<p class="uc-error-caption">Sorry, you can\'t view or download this file at this time.</p>'
    '<p class="uc-error-subcaption">Too many users have viewed or downloaded this file recently. '
    "Please try accessing the file again later.</p></body></html>"
)


@dataclass
class Seen:
    """One request the stand-in answered: ``host`` is the Drive host of a tunnel, or ``127.0.0.1``."""

    method: str
    host: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)


def make_tls(folder: Path) -> tuple[Path, Path, Path]:
    """A test CA and a certificate for the Drive hosts signed by it: (ca.pem, cert.pem, key.pem)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key, cert, key = (folder / n for n in ("ca.pem", "ca.key", "cert.pem", "key.pem"))
    ext = folder / "san.cnf"
    ext.write_text("subjectAltName=" + ",".join(f"DNS:{h}" for h in DRIVE_HOSTS) + "\n")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
        "-subj", "/CN=ovformer test CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    csr = folder / "cert.csr"
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=drive.google.com")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-out", str(cert),
        "-days", "2", "-extfile", str(ext))
    return ca, cert, key


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def _host(self) -> str:
        return getattr(self, "tunnel_host", "127.0.0.1")

    def _record(self) -> Seen:
        seen = Seen(self.command, self._host(), self.path, dict(self.headers.items()))
        self.server.standin.requests.append(seen)
        return seen

    def do_CONNECT(self) -> None:  # noqa: N802 (http.server's naming)
        self._record()
        host = self.path.rsplit(":", 1)[0]
        if host not in DRIVE_HOSTS:
            self.send_error(403, "the stand-in only tunnels to the Drive hosts")
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        tls = self.server.tls.wrap_socket(self.connection, server_side=True)
        self.connection = tls
        self.rfile = tls.makefile("rb", -1)
        self.wfile = tls.makefile("wb")  # buffered: writes whole; http.server flushes after each request
        self.tunnel_host = host
        self.close_connection = False  # the next request arrives inside the tunnel

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET(head=True)

    def do_GET(self, head: bool = False) -> None:  # noqa: N802
        seen = self._record()
        standin = self.server.standin
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        if seen.host in DRIVE_HOSTS and url.path in ("/uc", "/download") and "id" in query:
            file_id = query["id"][0]
            mode = standin.modes.get(file_id, "ok")
            if mode in ("quota", "page"):  # the quota page, or a page of the test's own (an interstitial)
                page = QUOTA_PAGE if mode == "quota" else standin.pages[file_id]
                return self._send(200, page.encode(), {"Content-Type": "text/html; charset=utf-8"})
            if file_id not in standin.drive_files:
                return self._send(404, b"<html>not found</html>", {"Content-Type": "text/html"})
            name, body = standin.drive_files[file_id]
            headers = {"Content-Type": "application/octet-stream",
                       "Content-Disposition": f'attachment; filename="{name}"'}
            return self._send_file(body, headers, mode, file_id, head)
        if seen.host in DRIVE_HOSTS and url.path == "/embeddedfolderview" and "id" in query:
            folder = standin.drive_folders.get(query["id"][0])
            if folder is None:
                return self._send(404, b"<html>not found</html>", {"Content-Type": "text/html"})
            return self._send(200, _folder_page(*folder).encode(), {"Content-Type": "text/html; charset=utf-8"})
        parts = url.path.split("/")
        if seen.host == "127.0.0.1" and len(parts) >= 7 and parts[1] == "hub" and parts[4] == "resolve":
            key = ("/".join(parts[2:4]), parts[5], "/".join(parts[6:]))
            if key not in standin.hub_files:
                return self._send(404, b"", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": REPO_COMMIT}, head)
            body = standin.hub_files[key]
            digest = hashlib.sha256(body).hexdigest()
            headers = {"Content-Type": "application/octet-stream", "X-Repo-Commit": REPO_COMMIT,
                       "X-Linked-Etag": f'"{digest}"', "ETag": f'"{digest}"', "X-Linked-Size": str(len(body))}
            return self._send_file(body, headers, standin.modes.get(key[2], "ok"), key[2], head)
        self._send(404, b"unknown path", {"Content-Type": "text/plain"})

    def _send(self, status: int, body: bytes, headers: dict[str, str], head: bool = False) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _send_file(self, body: bytes, headers: dict[str, str], mode: str, key: str, head: bool) -> None:
        start = 0
        if (rng := self.headers.get("Range", "")).startswith("bytes="):
            start = int(rng[len("bytes="):].split("-")[0])
        standin = self.server.standin
        drop = mode == "drop" or (mode == "drop-once" and key not in standin.dropped)
        self.send_response(206 if start else 200)
        for k, v in headers.items():
            self.send_header(k, v)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if head:
            return
        end = start + (len(body) - start) // 2 if drop else len(body)  # a drop: half the bytes, then goodbye
        rate = standin.rates.get(key)
        step = max(1, int(rate / 20)) if rate else len(body) or 1  # throttled: 20 writes a second
        for at in range(start, end, step):
            self.wfile.write(body[at:min(at + step, end)])
            if rate:
                self.wfile.flush()
                time.sleep(0.05)
        if drop:
            standin.dropped.add(key)
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass  # a connection we cut on purpose
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.close()  # the tunnel's socket; the server only closes the raw one


def _folder_page(title: str, entries: dict[str, str]) -> str:
    """Drive's embeddable folder view: one flip-entry per file (file id -> name)."""
    rows = "".join(
        f'<div class="flip-entry" id="entry-{fid}"><div class="flip-entry-info">'
        f'<a href="https://drive.google.com/file/d/{fid}/view?usp=drive_web" target="_blank">'
        f'<div class="flip-entry-title">{html.escape(name)}</div></a></div></div>'
        for fid, name in entries.items())
    return f"<html><head><title>{html.escape(title)}</title></head><body><div class='flip-entries'>{rows}</div></body></html>"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    standin: "StandinHosts"
    tls: ssl.SSLContext


class StandinHosts:
    """The stand-in server. Put content in ``drive_files`` (file id -> (name, bytes)),
    ``drive_folders`` (folder id -> (title, {file id: name})) and ``hub_files``
    ((repo_id, revision, filename) -> bytes); ``modes`` (a Drive file id or a hub filename ->
    ``"ok"``, ``"quota"``, ``"page"`` (the HTML in ``pages[file id]``), ``"drop"`` (always cut
    mid-file) or ``"drop-once"``) changes the answer; ``rates`` (same keys -> bytes per second)
    slows a file down so that a test can watch its progress."""

    def __init__(self, tls_dir: Path) -> None:
        self.ca, cert, key = make_tls(tls_dir)
        self.drive_files: dict[str, tuple[str, bytes]] = {}
        self.drive_folders: dict[str, tuple[str, dict[str, str]]] = {}
        self.hub_files: dict[tuple[str, str, str], bytes] = {}
        self.modes: dict[object, str] = {}
        self.pages: dict[str, str] = {}
        self.dropped: set[object] = set()
        self.rates: dict[object, float] = {}
        self.requests: list[Seen] = []
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.standin = self
        self._server.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._server.tls.load_cert_chain(cert, key)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def env_value(self) -> str:
        """``OVFORMER_DOWNLOAD_STANDIN`` pointing at this server."""
        return f"{self.url}?ca={self.ca}"

    @property
    def hosts(self) -> DownloadHosts:
        return DownloadHosts.from_standin(self.env_value)

    def __enter__(self) -> "StandinHosts":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


_LOCAL = ("127.0.0.1", "::1", "localhost")


@contextlib.contextmanager
def only_loopback() -> Iterator[list[object]]:
    """Refuse (and list) every connection or name lookup that is not for 127.0.0.1 while inside.

    The yielded list collects the refused addresses; a test asserts it stays empty.
    """
    refused: list[object] = []
    real_connect, real_connect_ex, real_getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def local(address: object) -> bool:
        return not isinstance(address, tuple) or address[0] in _LOCAL

    def connect(self: socket.socket, address: object) -> None:
        if not local(address):
            refused.append(address)
            raise OSError(errno.ENETUNREACH, f"test: no network outside 127.0.0.1 ({address})")
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: object) -> int:
        if not local(address):
            refused.append(address)
            return errno.ENETUNREACH
        return real_connect_ex(self, address)

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        if host is not None and (host.decode() if isinstance(host, bytes) else host) not in _LOCAL:
            refused.append(host)
            raise socket.gaierror(socket.EAI_NONAME, f"test: no name lookups outside 127.0.0.1 ({host})")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
    try:
        yield refused
    finally:
        socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = real_connect, real_connect_ex, real_getaddrinfo


# --- a whole first run: the files a released model needs, small enough for a test ----------------


@dataclass
class ModelFiles:
    """What the stand-in serves for ``r50-lvvis`` at the production ids: the checkpoint (Drive file),
    DetPro's prompt folder (Drive folder) and the CLIP weights (hub file), made small:

    - checkpoint: the ``tiny`` preset in the official layout (1196 LV-VIS classifier rows, as the
      release) plus the architecture record this project writes (``"ovformer": {"config": ...}``),
      so that the file loads under the released name without an R50's 170 MB;
    - CLIP: open_clip's state dict of the seeded ``tiny-random`` architecture as
      ``open_clip_model.safetensors`` (14 MB instead of ViT-B/32's 600 MB); it loads through
      ``load_clip("openai")`` when :func:`tiny_clip_as_openai` gives open_clip's
      ``ViT-B-32-quickgelu`` config that architecture;
    - prompts: five (8, 64) contexts, the width of that CLIP's text tower, so DetPro applies.
    """

    checkpoint: bytes
    clip: bytes
    prompts: dict[str, tuple[str, bytes]]  # Drive file id -> (name, bytes)
    checkpoint_id: str
    folder_id: str
    clip_key: tuple[str, str, str]  # (repo_id, revision, filename) as in the CLIP registry


def make_model_files() -> ModelFiles:
    import io

    import safetensors.torch
    import torch

    from ovformer import clip as oclip
    from ovformer.checkpoint import to_official_state_dict
    from ovformer.clip_weights import get_clip_entry
    from ovformer.config import get_preset
    from ovformer.factory import create_model
    from ovformer.weights import get_prompts_entry, get_weights_entry

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = create_model("tiny")
        zs = torch.nn.functional.normalize(torch.randn(1196, 512), dim=1)
        contexts = [torch.randn(8, 64) * 0.02 for _ in range(5)]
    buf = io.BytesIO()
    torch.save({"model": to_official_state_dict(model.state_dict(), zs), "iteration": 10,
                "ovformer": {"config": get_preset("tiny").to_dict()}}, buf)
    clip_state = {k: v.contiguous() for k, v in oclip._seeded_random(oclip._TINY_CFG).state_dict().items()}
    prompts = {}
    for i, (name, ctx) in enumerate(zip(get_prompts_entry("detpro-lvis").filenames, contexts)):
        pbuf = io.BytesIO()
        torch.save(ctx, pbuf)
        prompts[f"promptfile{i}-abcdefghijklmnopqrstu"] = (name, pbuf.getvalue())
    entry = get_clip_entry("clip-openai")
    return ModelFiles(buf.getvalue(), safetensors.torch.save(clip_state), prompts,
                      get_weights_entry("r50-lvvis").gdrive_id, get_prompts_entry("detpro-lvis").gdrive_folder_id,
                      (entry.repo_id, entry.revision, entry.filename))


def serve_model_files(standin: StandinHosts, files: ModelFiles) -> None:
    """Fresh content for a test: ``files`` at their production ids, default modes, empty logs."""
    for table in (standin.drive_files, standin.drive_folders, standin.hub_files, standin.modes, standin.pages,
                  standin.rates):
        table.clear()
    standin.dropped.clear()
    standin.requests.clear()
    standin.drive_files[files.checkpoint_id] = ("ovformer_r50_lvvis.pth", files.checkpoint)
    standin.drive_files.update(files.prompts)
    standin.drive_folders[files.folder_id] = ("detpro prompts", {fid: name for fid, (name, _) in files.prompts.items()})
    standin.hub_files[files.clip_key] = files.clip


@contextlib.contextmanager
def tiny_clip_as_openai() -> Iterator[None]:
    """open_clip builds ``ViT-B-32-quickgelu`` (what ``load_clip("openai")`` asks for) with the
    tiny-random architecture inside the block, so the small CLIP file of :class:`ModelFiles` loads
    through the production path: the hub cache, ``open_clip.create_model(..., pretrained="openai")``."""
    import open_clip.factory

    from ovformer import clip as oclip

    configs: dict[str, Any] = open_clip.factory._MODEL_CONFIGS
    saved = configs.get("ViT-B-32-quickgelu")
    configs["ViT-B-32-quickgelu"] = dict(oclip._TINY_CFG)
    try:
        yield
    finally:
        if saved is None:
            configs.pop("ViT-B-32-quickgelu", None)
        else:
            configs["ViT-B-32-quickgelu"] = saved


def leftovers(folder: Path) -> list[str]:
    """Files under ``folder`` other than the downloader's own records (relative paths)."""
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and p.name not in ("known_hashes.json", "gdown_cookies.txt"))
