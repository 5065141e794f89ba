"""Weights registry, cache and the download paths of checkpoints and prompt sets.

Downloads run the production code (gdown) against the local stand-in of tests/standin_hosts.py;
see tests/test_download.py for the whole-model path, CLIP and the failure modes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

import ovformer.weights as weights
from ovformer.download import use_download_hosts
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
from tests.standin_hosts import StandinHosts, only_loopback

PAYLOAD = b"\x80\x02fake-detectron2-checkpoint" * 5000
R50_ID = "1-zfEwdglPeVHzlc5Ky_HJlZtMgGXAy1S"
DETPRO_FOLDER = "1DSkfTO3TWrIW0k1kt67Ez-wLwXy9mVqF"
DETPRO_FILES = [f"fg_bg_5_{a}_{b}_r1_prompt.pth" for a, b in ((5, 6), (6, 7), (7, 8), (8, 9), (9, 10))]
FILE_IDS = [f"file{i}-abcdefghijklmnopqrstuvwxyz" for i in range(6)]  # Drive ids have 25+ characters


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> StandinHosts:
    with StandinHosts(tmp_path_factory.mktemp("tls")) as s:
        yield s


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OVFORMER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("OVFORMER_OFFLINE", raising=False)
    monkeypatch.delenv("OVFORMER_DOWNLOAD_STANDIN", raising=False)
    with only_loopback() as refused:
        yield tmp_path / "home"
    assert refused == []  # nothing here may leave 127.0.0.1


@pytest.fixture
def standin(server: StandinHosts, monkeypatch: pytest.MonkeyPatch) -> StandinHosts:
    for store in (server.drive_files, server.drive_folders, server.hub_files, server.modes, server.dropped,
                  server.pages):
        store.clear()
    server.requests.clear()
    for var in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    with use_download_hosts(server.hosts):
        yield server


def drive_requests(standin: StandinHosts) -> list[str]:
    return [r.path for r in standin.requests if r.method == "GET"]


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


def test_download_records_hash_reports_progress_then_hits_cache(standin: StandinHosts, isolated_home: Path) -> None:
    standin.drive_files[R50_ID] = ("ovformer_r50_lvvis.pth", PAYLOAD)
    reports = []
    path = download_weights("r50-lvvis", progress=reports.append)
    assert path == isolated_home / "weights" / "ovformer_r50_lvvis.pth"
    assert path.read_bytes() == PAYLOAD
    assert not list(path.parent.glob("*.part"))
    assert reports[-1].done == reports[-1].total == len(PAYLOAD)
    assert drive_requests(standin) == [f"/uc?id={R50_ID}"]  # gdown's own Drive URL

    known = json.loads((isolated_home / "weights" / "known_hashes.json").read_text())
    assert known["r50-lvvis"] == {"gdrive_id": R50_ID, "size": len(PAYLOAD), "sha256": hashlib.sha256(PAYLOAD).hexdigest()}
    entry = get_weights_entry("r50-lvvis")
    assert entry.size == len(PAYLOAD) and entry.sha256 == hashlib.sha256(PAYLOAD).hexdigest()

    standin.requests.clear()  # cache hit: no request
    assert resolve_weights("r50-lvvis", download=True) == path
    assert download_weights("r50-lvvis") == path
    assert standin.requests == []


def test_large_file_confirm_form_is_followed_by_gdown(standin: StandinHosts) -> None:
    # Drive's "can't scan for viruses" page: a form to drive.usercontent.google.com
    swinb = "107BNsu9eTr5e70B4oj28jgHKBjYTWNWp"
    page = ('<html><body>Google Drive can\'t scan this file for viruses.'
            '<form id="download-form" action="https://drive.usercontent.google.com/download" method="get">'
            '<input type="submit" value="Download anyway">'
            f'<input type="hidden" name="id" value="{swinb}-big">'
            '<input type="hidden" name="export" value="download">'
            '<input type="hidden" name="confirm" value="t"></form></body></html>')
    standin.drive_files[f"{swinb}-big"] = ("ovformer_swinb_lvvis.pth", PAYLOAD)
    standin.modes[swinb] = "page"
    standin.pages[swinb] = page
    assert download_weights("swinb-lvvis", progress=False).read_bytes() == PAYLOAD
    hosts = [(r.host, r.path.split("?")[0]) for r in standin.requests if r.method == "GET"]
    assert hosts == [("drive.google.com", "/uc"), ("drive.usercontent.google.com", "/download")]


def test_damaged_cache_is_reported_or_redownloaded(standin: StandinHosts) -> None:
    standin.drive_files[R50_ID] = ("ovformer_r50_lvvis.pth", PAYLOAD)
    path = download_weights("r50-lvvis", progress=False)
    path.write_bytes(PAYLOAD[:100])  # truncated by some other tool
    with pytest.raises(WeightsNotFoundError, match="damaged"):
        resolve_weights("r50-lvvis", download=False)
    assert resolve_weights("r50-lvvis", download=True).read_bytes() == PAYLOAD


def test_unreachable_host_names_the_file(standin: StandinHosts, isolated_home: Path) -> None:
    with use_download_hosts(weights_hosts_nowhere()):
        with pytest.raises(WeightsDownloadError, match="by hand") as err:
            download_weights("swinb-lvis", progress=False)
    assert err.value.reason == "network"
    assert str(isolated_home / "weights" / "ovformer_swinb_lvis.pth") in str(err.value)
    assert not [p for p in (isolated_home / "weights").glob("*") if p.name.endswith(".pth")]


def weights_hosts_nowhere():
    from ovformer.download import DownloadHosts

    return DownloadHosts(drive_proxy="http://127.0.0.1:9", ca_bundle=None, hub_endpoint="http://127.0.0.1:9/hub")

# --- DetPro prompt set (a shared Drive folder) ------------------------------------------------

DETPRO_FOLDER = "1DSkfTO3TWrIW0k1kt67Ez-wLwXy9mVqF"
DETPRO_FILES = [f"fg_bg_5_{a}_{b}_r1_prompt.pth" for a, b in ((5, 6), (6, 7), (7, 8), (8, 9), (9, 10))]


def serve_prompts(standin: StandinHosts, bodies: list[bytes], names: list[str] | None = None) -> None:
    names = ["README.txt"] + DETPRO_FILES if names is None else names
    standin.drive_folders[DETPRO_FOLDER] = ("empty prompt", dict(zip(FILE_IDS, names)))
    for fid, name in zip(FILE_IDS, names):
        body = bodies[DETPRO_FILES.index(name)] if name in DETPRO_FILES else b"readme"
        standin.drive_files[fid] = (name, body)


def test_prompt_set_listed_apart_from_checkpoints() -> None:
    assert "detpro-lvis" not in {e.name for e in list_pretrained()}  # api.load_model's name test
    (entry,) = weights.list_prompt_sets()
    assert (entry.name, entry.kind, entry.gdrive_folder_id) == ("detpro-lvis", "prompts", DETPRO_FOLDER)
    with pytest.raises(WeightsNotFoundError, match="resolve_prompts"):
        resolve_weights("detpro-lvis", download=True)


def test_prompt_set_download_records_each_file_then_hits_cache(standin: StandinHosts, isolated_home: Path) -> None:
    bodies = [f"prompt-{i}".encode() * 100 for i in range(5)]
    serve_prompts(standin, bodies)
    folder = weights.resolve_prompts("detpro-lvis", download=True)
    assert folder == isolated_home / "weights" / "detpro-lvis"
    assert [(folder / f).read_bytes() for f in DETPRO_FILES] == bodies
    assert drive_requests(standin)[0] == f"/embeddedfolderview?id={DETPRO_FOLDER}"
    ids = [p.split("id=")[1] for p in drive_requests(standin)[1:]]
    assert ids == FILE_IDS[1:]  # README.txt (file0) is not fetched
    known = json.loads((isolated_home / "weights" / "known_hashes.json").read_text())
    assert known["detpro-lvis/" + DETPRO_FILES[0]] == {
        "gdrive_folder_id": DETPRO_FOLDER, "gdrive_id": FILE_IDS[1],
        "size": len(bodies[0]), "sha256": hashlib.sha256(bodies[0]).hexdigest(),
    }
    standin.requests.clear()  # cached: no request
    assert weights.resolve_prompts("detpro-lvis", download=True) == folder
    assert download_weights("detpro-lvis") == folder
    assert standin.requests == []

    (folder / DETPRO_FILES[3]).unlink()  # only the missing file is fetched again, and checked
    standin.drive_files[FILE_IDS[4]] = (DETPRO_FILES[3], b"changed upstream")
    with pytest.raises(WeightsDownloadError, match="do not match"):
        weights.resolve_prompts("detpro-lvis", download=True)
    assert [p.split("id=")[1] for p in drive_requests(standin)[1:]] == [FILE_IDS[4]]
    assert not (folder / DETPRO_FILES[3]).exists() and not list(folder.glob("*.part"))


def test_prompt_set_folder_problems(standin: StandinHosts, isolated_home: Path) -> None:
    serve_prompts(standin, [b"x"] * 5, names=DETPRO_FILES[:2])
    with pytest.raises(WeightsDownloadError, match="does not list fg_bg_5_7_8_r1_prompt.pth") as err:
        weights.download_prompts("detpro-lvis", progress=False)
    assert f"https://drive.google.com/drive/folders/{DETPRO_FOLDER}" in str(err.value)
    standin.drive_folders.clear()  # the folder page is gone (no longer shared)
    with pytest.raises(WeightsDownloadError, match="by hand") as err:
        weights.download_prompts("detpro-lvis", progress=False)
    assert str(isolated_home / "weights" / "detpro-lvis") in str(err.value)


def test_cli_lists_and_downloads_the_prompt_set(standin: StandinHosts, capsys: pytest.CaptureFixture[str],
                                                 isolated_home: Path) -> None:
    from ovformer.tools.weights import main

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "detpro-lvis" in out and "0/5 files" in out and str(isolated_home / "weights" / "detpro-lvis") in out
    serve_prompts(standin, [b"ctx"] * 5)
    assert main(["download", "detpro-lvis"]) == 0
    assert capsys.readouterr().out.strip() == str(isolated_home / "weights" / "detpro-lvis")
    assert main(["list"]) == 0
    assert "detpro-lvis  5 files from a Drive folder    cached" in capsys.readouterr().out
    assert main(["download", "detpro-lvis", "--offline"]) == 0  # nothing missing: nothing to refuse
