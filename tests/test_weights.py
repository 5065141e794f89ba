"""Weights registry and Google Drive download, with urllib mocked (never the network)."""

from __future__ import annotations

import email.message
import hashlib
import io
import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

import ovformer.weights as weights
from ovformer.weights import (
    WeightsDownloadError,
    WeightsNotFoundError,
    download_weights,
    get_weights_entry,
    list_pretrained,
    ovformer_home,
    resolve_weights,
    weights_path,
)

PAYLOAD = b"\x80\x02fake-detectron2-checkpoint" * 5000


class FakeResponse(io.BytesIO):
    """What urllib.request.urlopen returns, enough for the download code."""

    def __init__(self, body: bytes, content_type: str = "application/octet-stream", cookies: dict | None = None):
        super().__init__(body)
        self.headers = email.message.Message()
        self.headers["Content-Type"] = content_type
        self.headers["Content-Length"] = str(len(body))
        for k, v in (cookies or {}).items():
            self.headers["Set-Cookie"] = f"{k}={v}; Path=/; Secure"


class FakeServer:
    """Answers urlopen calls from a list of responses and records the requests."""

    def __init__(self, *responses: FakeResponse | Exception):
        self.responses = list(responses)
        self.requests: list[urllib.request.Request] = []

    def __call__(self, req: urllib.request.Request, timeout: float | None = None) -> FakeResponse:
        self.requests.append(req)
        item = self.responses.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OVFORMER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("OVFORMER_OFFLINE", raising=False)
    monkeypatch.setattr(urllib.request, "urlopen", FakeServer())  # any unplanned call fails
    return tmp_path / "home"


def serve(monkeypatch: pytest.MonkeyPatch, *responses: FakeResponse | Exception) -> FakeServer:
    server = FakeServer(*responses)
    monkeypatch.setattr(urllib.request, "urlopen", server)
    return server


def test_registry_entries() -> None:
    entries = {e.name: e for e in list_pretrained()}
    assert set(entries) == {"r50-lvvis", "swinb-lvvis", "r50-lvis", "swinb-lvis"}
    assert entries["r50-lvvis"].gdrive_id == "1-zfEwdglPeVHzlc5Ky_HJlZtMgGXAy1S"
    assert entries["swinb-lvvis"].gdrive_id == "107BNsu9eTr5e70B4oj28jgHKBjYTWNWp"
    assert entries["r50-lvis"].gdrive_id == "1-tMcjp8xIYr9E5r5JYOESGajXtMAs33y"
    assert entries["swinb-lvis"].gdrive_id == "102qxZlu05yXILfghhrwjxv-tL3MlcYu7"
    assert {e.name: e.min_size_test for e in entries.values()} == {
        "r50-lvvis": 360, "r50-lvis": 360, "swinb-lvvis": 480, "swinb-lvis": 480,
    }
    assert all(e.preset == e.name and e.size is None and e.sha256 is None for e in entries.values())
    with pytest.raises(KeyError, match="r50-lvvis"):
        get_weights_entry("r101-lvvis")


def test_home_from_env_and_default(monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> None:
    assert ovformer_home() == isolated_home
    assert weights_path("r50-lvvis") == isolated_home / "weights" / "ovformer_r50_lvvis.pth"
    monkeypatch.delenv("OVFORMER_HOME")
    assert ovformer_home() == Path.home() / ".cache" / "ovformer"


def test_plain_paths(tmp_path: Path) -> None:
    ckpt = tmp_path / "model_final.pth"
    ckpt.write_bytes(b"x")
    assert resolve_weights(str(ckpt), download=True) == ckpt
    with pytest.raises(WeightsNotFoundError, match="Checkpoint file not found"):
        resolve_weights(tmp_path / "missing.pth", download=True)


def test_missing_without_download_explains_what_to_do(isolated_home: Path) -> None:
    with pytest.raises(WeightsNotFoundError) as err:
        resolve_weights("r50-lvvis", download=False)
    msg = str(err.value)
    assert str(isolated_home / "weights" / "ovformer_r50_lvvis.pth") in msg
    assert "ovformer weights download r50-lvvis" in msg
    assert "--untrained" in msg
    assert "https://drive.google.com/file/d/1-zfEwdglPeVHzlc5Ky_HJlZtMgGXAy1S/view" in msg


def test_offline_env_forbids_download(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVFORMER_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match="OVFORMER_OFFLINE"):
        resolve_weights("swinb-lvis", download=True)


def test_download_records_hash_shows_progress_then_hits_cache(monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> None:
    updates: list[int] = []

    class RecordingBar:
        def __init__(self, total=None, **kwargs):
            self.total = total

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n: int) -> None:
            updates.append(n)

    monkeypatch.setattr(weights, "tqdm", RecordingBar)
    monkeypatch.setattr(weights, "_CHUNK", 4096)
    server = serve(monkeypatch, FakeResponse(PAYLOAD))
    path = resolve_weights("r50-lvvis", download=True)
    assert path == isolated_home / "weights" / "ovformer_r50_lvvis.pth"
    assert path.read_bytes() == PAYLOAD
    assert not list(path.parent.glob("*.part"))
    assert sum(updates) == len(PAYLOAD) and len(updates) > 1
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(server.requests[0].full_url).query)
    assert query["id"] == ["1-zfEwdglPeVHzlc5Ky_HJlZtMgGXAy1S"]

    known = json.loads((isolated_home / "weights" / "known_hashes.json").read_text())
    assert known["r50-lvvis"] == {
        "gdrive_id": "1-zfEwdglPeVHzlc5Ky_HJlZtMgGXAy1S",
        "size": len(PAYLOAD),
        "sha256": hashlib.sha256(PAYLOAD).hexdigest(),
    }
    entry = get_weights_entry("r50-lvvis")
    assert entry.size == len(PAYLOAD) and entry.sha256 == hashlib.sha256(PAYLOAD).hexdigest()

    serve(monkeypatch)  # cache hit: any network call would fail
    assert resolve_weights("r50-lvvis", download=True) == path
    assert download_weights("r50-lvvis") == path


def test_large_file_confirm_form(monkeypatch: pytest.MonkeyPatch) -> None:
    page = (
        "<html><body>Google Drive can't scan this file for viruses."
        '<form id="download-form" action="https://drive.usercontent.google.com/download" method="get">'
        '<input type="submit" value="Download anyway">'
        '<input type="hidden" name="id" value="107BNsu9eTr5e70B4oj28jgHKBjYTWNWp">'
        '<input type="hidden" name="export" value="download">'
        '<input type="hidden" name="confirm" value="t">'
        '<input value="abc-123" name="uuid" type="hidden"></form></body></html>'
    )
    server = serve(monkeypatch, FakeResponse(page.encode(), "text/html; charset=utf-8"), FakeResponse(PAYLOAD))
    path = download_weights("swinb-lvvis", progress=False)
    assert path.read_bytes() == PAYLOAD
    second = urllib.parse.urlsplit(server.requests[1].full_url)
    assert second.netloc == "drive.usercontent.google.com"
    assert urllib.parse.parse_qs(second.query) == {
        "id": ["107BNsu9eTr5e70B4oj28jgHKBjYTWNWp"], "export": ["download"], "confirm": ["t"], "uuid": ["abc-123"],
    }


def test_large_file_confirm_cookie(monkeypatch: pytest.MonkeyPatch) -> None:
    page = FakeResponse(b"<html>virus scan warning</html>", "text/html", cookies={"download_warning_123": "Tok-9_x"})
    server = serve(monkeypatch, page, FakeResponse(PAYLOAD))
    download_weights("r50-lvis", progress=False)
    second = server.requests[1]
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(second.full_url).query)["confirm"] == ["Tok-9_x"]
    assert "download_warning_123=Tok-9_x" in second.get_header("Cookie")


def test_checksum_mismatch_removes_file(monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> None:
    wdir = isolated_home / "weights"
    wdir.mkdir(parents=True)
    record = {"gdrive_id": "1-zfEwdglPeVHzlc5Ky_HJlZtMgGXAy1S", "size": len(PAYLOAD), "sha256": "0" * 64}
    (wdir / "known_hashes.json").write_text(json.dumps({"r50-lvvis": record}))
    serve(monkeypatch, FakeResponse(PAYLOAD))
    with pytest.raises(WeightsDownloadError, match="do not match"):
        resolve_weights("r50-lvvis", download=True)
    assert not (wdir / "ovformer_r50_lvvis.pth").exists()
    assert not list(wdir.glob("*.part"))


def test_damaged_cache_is_reported_or_redownloaded(monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> None:
    serve(monkeypatch, FakeResponse(PAYLOAD))
    path = download_weights("r50-lvvis", progress=False)
    path.write_bytes(PAYLOAD[:100])  # truncated by some other tool
    with pytest.raises(WeightsNotFoundError, match="damaged"):
        resolve_weights("r50-lvvis", download=False)
    serve(monkeypatch, FakeResponse(PAYLOAD))
    assert resolve_weights("r50-lvvis", download=True).read_bytes() == PAYLOAD


def test_drive_refusal_and_network_errors(monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> None:
    serve(monkeypatch, FakeResponse(b"<html>Quota exceeded</html>", "text/html"))
    with pytest.raises(WeightsDownloadError, match="web page"):
        download_weights("swinb-lvis", progress=False)
    serve(monkeypatch, urllib.error.URLError("no route to host"))
    with pytest.raises(WeightsDownloadError, match="by hand") as err:
        download_weights("swinb-lvis", progress=False)
    assert str(isolated_home / "weights" / "ovformer_swinb_lvis.pth") in str(err.value)
    assert not list((isolated_home / "weights").glob("*"))


# --- DetPro prompt set (a shared Drive folder) ------------------------------------------------

DETPRO_FOLDER = "1DSkfTO3TWrIW0k1kt67Ez-wLwXy9mVqF"
DETPRO_FILES = [f"fg_bg_5_{a}_{b}_r1_prompt.pth" for a, b in ((5, 6), (6, 7), (7, 8), (8, 9), (9, 10))]


def folder_page(names: list[str]) -> FakeResponse:
    """Drive's embeddable folder listing, one flip-entry per file (ids: file0, file1, ...)."""
    entries = "".join(
        f'<div class="flip-entry" id="entry-file{i}" tabindex="0" role="link"><div class="flip-entry-info">'
        f'<a href="https://drive.google.com/file/d/file{i}/view?usp=drive_web" target="_blank">'
        f'<div class="flip-entry-title">{name}</div></a></div></div>'
        for i, name in enumerate(names)
    )
    return FakeResponse(f"<html><body><div class='flip-entries'>{entries}</div></body></html>".encode(), "text/html")


def test_prompt_set_listed_apart_from_checkpoints() -> None:
    assert "detpro-lvis" not in {e.name for e in list_pretrained()}  # api.load_model's name test
    (entry,) = weights.list_prompt_sets()
    assert (entry.name, entry.kind, entry.gdrive_folder_id) == ("detpro-lvis", "prompts", DETPRO_FOLDER)
    with pytest.raises(WeightsNotFoundError, match="resolve_prompts"):
        resolve_weights("detpro-lvis", download=True)


def test_prompt_set_download_records_each_file_then_hits_cache(monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> None:
    bodies = [f"prompt-{i}".encode() * 100 for i in range(5)]
    server = serve(monkeypatch, folder_page(["README.txt"] + DETPRO_FILES), *map(FakeResponse, bodies))
    folder = weights.resolve_prompts("detpro-lvis", download=True)
    assert folder == isolated_home / "weights" / "detpro-lvis"
    assert [(folder / f).read_bytes() for f in DETPRO_FILES] == bodies
    listing = urllib.parse.urlsplit(server.requests[0].full_url)
    assert listing.path == "/embeddedfolderview" and urllib.parse.parse_qs(listing.query)["id"] == [DETPRO_FOLDER]
    ids = [urllib.parse.parse_qs(urllib.parse.urlsplit(r.full_url).query)["id"][0] for r in server.requests[1:]]
    assert ids == ["file1", "file2", "file3", "file4", "file5"]  # README.txt (file0) is not fetched
    known = json.loads((isolated_home / "weights" / "known_hashes.json").read_text())
    assert known["detpro-lvis/" + DETPRO_FILES[0]] == {
        "gdrive_folder_id": DETPRO_FOLDER, "gdrive_id": "file1",
        "size": len(bodies[0]), "sha256": hashlib.sha256(bodies[0]).hexdigest(),
    }
    serve(monkeypatch)  # cached: any network call would fail
    assert weights.resolve_prompts("detpro-lvis", download=True) == folder
    assert download_weights("detpro-lvis") == folder  # what `ovformer weights download` calls

    (folder / DETPRO_FILES[3]).unlink()  # only the missing file is fetched again, and checked
    serve(monkeypatch, folder_page(DETPRO_FILES), FakeResponse(b"changed upstream"))
    with pytest.raises(WeightsDownloadError, match="do not match"):
        weights.resolve_prompts("detpro-lvis", download=True)
    assert not (folder / DETPRO_FILES[3]).exists() and not list(folder.glob("*.part"))


def test_prompt_set_folder_problems(monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> None:
    serve(monkeypatch, folder_page(DETPRO_FILES[:2]))
    with pytest.raises(WeightsDownloadError, match="does not list fg_bg_5_7_8_r1_prompt.pth") as err:
        weights.download_prompts("detpro-lvis", progress=False)
    assert f"https://drive.google.com/drive/folders/{DETPRO_FOLDER}" in str(err.value)
    serve(monkeypatch, urllib.error.URLError("no route to host"))
    with pytest.raises(WeightsDownloadError, match="by hand") as err:
        weights.download_prompts("detpro-lvis", progress=False)
    assert str(isolated_home / "weights" / "detpro-lvis") in str(err.value)


def test_cli_lists_and_downloads_the_prompt_set(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                                 isolated_home: Path) -> None:
    from ovformer.tools.weights import main

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "detpro-lvis" in out and "0/5 files" in out and str(isolated_home / "weights" / "detpro-lvis") in out
    serve(monkeypatch, folder_page(DETPRO_FILES), *(FakeResponse(b"ctx") for _ in DETPRO_FILES))
    assert main(["download", "detpro-lvis"]) == 0
    assert capsys.readouterr().out.strip() == str(isolated_home / "weights" / "detpro-lvis")
    assert main(["list"]) == 0
    assert "detpro-lvis  5 files from a Drive folder    cached" in capsys.readouterr().out
