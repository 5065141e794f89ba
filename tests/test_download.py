"""Downloads end to end against a local stand-in for Google Drive and the Hugging Face Hub.

The code under test is the production code: gdown and huggingface_hub make their usual
requests to their usual URLs (``https://drive.google.com/uc?id=...``,
``.../resolve/main/...``); only the hosts differ, through ``OVFORMER_DOWNLOAD_STANDIN`` /
``ovformer.download.use_download_hosts`` (gdown's proxy + CA bundle, the hub's endpoint), see
tests/standin_hosts.py. Every socket connection and name lookup outside 127.0.0.1 is refused
and the refusals are asserted empty, and the stand-in's log shows every request made.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
import torch

from ovformer.download import DownloadProgress, use_download_hosts
from ovformer.model_files import download_required, required_files, start_download
from ovformer.weights import WeightsDownloadError, WeightsNotFoundError, get_prompts_entry, weights_path
from tests.standin_hosts import StandinHosts, only_loopback

R50_ID = "1-zfEwdglPeVHzlc5Ky_HJlZtMgGXAy1S"
DETPRO_FOLDER = "1DSkfTO3TWrIW0k1kt67Ez-wLwXy9mVqF"
CLIP_KEY = ("timm/vit_base_patch32_clip_224.openai", "main", "open_clip_model.safetensors")
PROMPT_IDS = {f"promptfile{i}-abcdefghijklmnopqrstu": name
              for i, name in enumerate(get_prompts_entry("detpro-lvis").filenames)}


def small_checkpoint() -> bytes:
    buf = io.BytesIO()
    torch.save({"model": {"w": torch.arange(300_000, dtype=torch.float32)}}, buf)  # ~1.2 MB: several gdown chunks
    return buf.getvalue()


CKPT = small_checkpoint()
CLIP_BYTES = b"clip-weights-for-tests" * 5000
PROMPTS = {fid: f"prompt {name}".encode() * 50 for fid, name in PROMPT_IDS.items()}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> StandinHosts:
    with StandinHosts(tmp_path_factory.mktemp("tls")) as s:
        yield s


@pytest.fixture
def standin(server: StandinHosts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StandinHosts:
    """Fresh content, empty OVFORMER_HOME and hub cache, hub offline, nothing beyond 127.0.0.1."""
    import huggingface_hub.constants as hub

    server.drive_files.clear()
    server.drive_files[R50_ID] = ("ovformer_r50_lvvis.pth", CKPT)
    server.drive_files.update({fid: (PROMPT_IDS[fid], body) for fid, body in PROMPTS.items()})
    server.drive_folders.clear()
    server.drive_folders[DETPRO_FOLDER] = ("detpro prompts", {"readme-file-abcdefghijklmnopqrstuv": "README.txt",
                                                              **PROMPT_IDS})
    server.drive_files["readme-file-abcdefghijklmnopqrstuv"] = ("README.txt", b"not needed")
    server.hub_files.clear()
    server.hub_files[CLIP_KEY] = CLIP_BYTES
    server.modes.clear()
    server.pages.clear()
    server.dropped.clear()
    server.requests.clear()
    monkeypatch.setenv("OVFORMER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("OVFORMER_OFFLINE", raising=False)
    for var in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)  # as the app runs: only an explicit download lifts it
    with use_download_hosts(server.hosts), only_loopback() as refused:
        yield server
    assert refused == [], f"connections outside 127.0.0.1 were attempted: {refused}"
    assert hub.HF_HUB_OFFLINE is True


def home(tmp_path: Path) -> Path:
    return tmp_path / "home" / "weights"


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file() and p.name not in ("known_hashes.json",
                                                                                       "gdown_cookies.txt"))


def test_everything_a_model_needs_then_nothing_more(standin: StandinHosts, tmp_path: Path) -> None:
    before = required_files("r50-lvvis")
    assert [(f.kind, f.state) for f in before] == [("checkpoint", "missing"), ("prompts", "missing"), ("clip", "missing")]
    assert not standin.requests  # listing the state needs no network

    reports: list[DownloadProgress] = []
    after = download_required("r50-lvvis", progress=reports.append)
    assert [(f.kind, f.present, f.state) for f in after] == [("checkpoint", True, "present"), ("prompts", True, "present"),
                                                            ("clip", True, "present")]
    assert weights_path("r50-lvvis").read_bytes() == CKPT
    assert torch.load(weights_path("r50-lvvis"), weights_only=True)["model"]["w"].shape == (300_000,)
    folder = home(tmp_path) / "detpro-lvis"
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == {PROMPT_IDS[f]: b for f, b in PROMPTS.items()}
    assert after[2].path.read_bytes() == CLIP_BYTES and after[2].size == len(CLIP_BYTES)
    assert leftovers(home(tmp_path)) == sorted(["ovformer_r50_lvvis.pth", *PROMPT_IDS.values()])  # no .part

    # progress: 7 files (checkpoint, 5 prompts, CLIP), each ending at its full size
    assert {r.file_count for r in reports} == {7}
    finals = {r.file_index: r for r in reports if r.total is not None and r.done == r.total}
    assert sorted(finals) == list(range(1, 8))
    assert finals[1].total == len(CKPT) and finals[7].total == len(CLIP_BYTES)
    assert all(r.rate >= 0 and (r.eta_s is None or r.eta_s >= 0) for r in reports)
    assert len([r for r in reports if r.file_index == 1]) >= 2  # the checkpoint came in chunks

    # the production URLs, on the stand-in: Drive through the tunnel, the hub on its endpoint
    seen = [(r.method, r.host, r.path.split("?")[0]) for r in standin.requests]
    assert ("GET", "drive.google.com", "/uc") in seen and ("GET", "drive.google.com", "/embeddedfolderview") in seen
    assert {r.path for r in standin.requests if r.method == "CONNECT"} == {"drive.google.com:443"}
    assert ("HEAD", "127.0.0.1", "/hub/timm/vit_base_patch32_clip_224.openai/resolve/main/open_clip_model.safetensors") in seen
    assert not any("readme-file" in r.path for r in standin.requests)  # only the files needed

    known = json.loads((home(tmp_path) / "known_hashes.json").read_text())
    assert known["r50-lvvis"] == {"gdrive_id": R50_ID, "size": len(CKPT), "sha256": hashlib.sha256(CKPT).hexdigest()}
    assert known["clip-openai"]["sha256"] == hashlib.sha256(CLIP_BYTES).hexdigest()
    assert len([k for k in known if k.startswith("detpro-lvis/")]) == 5

    standin.requests.clear()
    assert all(f.present for f in download_required("r50-lvvis"))
    assert standin.requests == []


def test_quota_page_is_reported_and_leaves_nothing(standin: StandinHosts, tmp_path: Path) -> None:
    standin.modes[R50_ID] = "quota"
    with pytest.raises(WeightsDownloadError, match="web page instead of the file") as err:
        download_required("r50-lvvis")
    assert err.value.reason == "quota" and "Too many users" in str(err.value)
    assert leftovers(home(tmp_path)) == []


def test_dropped_connection_keeps_only_a_part_file_then_resumes(standin: StandinHosts, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import ovformer.download

    monkeypatch.setattr(ovformer.download, "DRIVE_RETRIES", 0)  # gdown's in-call retry is the next test
    standin.modes[R50_ID] = "drop"
    with pytest.raises(WeightsDownloadError, match="connection failed or was cut") as err:
        download_required("r50-lvvis")
    assert err.value.reason == "network"
    assert not weights_path("r50-lvvis").exists()
    (part,) = leftovers(home(tmp_path))
    kept = (home(tmp_path) / part).stat().st_size
    assert part.endswith(".part") and 0 < kept < len(CKPT)

    standin.modes[R50_ID] = "ok"
    standin.requests.clear()
    download_required("r50-lvvis")
    assert weights_path("r50-lvvis").read_bytes() == CKPT
    ranges = [r.headers.get("Range") for r in standin.requests if R50_ID in r.path]
    assert f"bytes={kept}-" in ranges  # resumed from the bytes kept, not from zero


def test_gdown_resumes_a_cut_within_the_call(standin: StandinHosts, tmp_path: Path) -> None:
    standin.modes[R50_ID] = "drop-once"
    from ovformer.weights import download_weights

    assert download_weights("r50-lvvis", progress=False).read_bytes() == CKPT
    assert any(r.headers.get("Range") for r in standin.requests if R50_ID in r.path)


def test_hub_resumes_a_cut_and_keeps_the_switch(standin: StandinHosts) -> None:
    from ovformer.clip_weights import clip_weights_path, download_clip_weights

    standin.modes[CLIP_KEY[2]] = "drop-once"
    path = download_clip_weights(progress=False)
    assert path.read_bytes() == CLIP_BYTES and clip_weights_path() == path


def test_wrong_sha256_on_redownload_is_refused(standin: StandinHosts, tmp_path: Path) -> None:
    download_required("r50-lvvis")
    weights_path("r50-lvvis").unlink()
    standin.drive_files[R50_ID] = ("ovformer_r50_lvvis.pth", CKPT[:-4] + b"EVIL")  # same size, other bytes
    with pytest.raises(WeightsDownloadError, match="do not match the record") as err:
        download_required("r50-lvvis")
    assert err.value.reason == "verification" and hashlib.sha256(CKPT).hexdigest() in str(err.value)
    assert not weights_path("r50-lvvis").exists()
    assert not [p for p in leftovers(home(tmp_path)) if p.startswith("ovformer_r50_lvvis")]


def test_wrong_sha256_of_clip_on_redownload(standin: StandinHosts, tmp_path: Path) -> None:
    from ovformer.clip_weights import clip_weights_path, download_clip_weights

    download_clip_weights(progress=False)
    known = json.loads((home(tmp_path) / "known_hashes.json").read_text())
    known["clip-openai"]["sha256"] = "0" * 64
    (home(tmp_path) / "known_hashes.json").write_text(json.dumps(known))
    with pytest.raises(WeightsDownloadError, match="do not match") as err:
        download_clip_weights(force=True, progress=False)
    assert err.value.reason == "verification" and clip_weights_path() is None


def test_disk_full_is_said_before_the_transfer(standin: StandinHosts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    download_required("r50-lvvis")
    weights_path("r50-lvvis").unlink()
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 10, 10))
    standin.requests.clear()
    with pytest.raises(WeightsDownloadError, match="disk is full") as err:
        download_required("r50-lvvis")
    assert err.value.reason == "disk-full" and standin.requests == []


def test_offline_refuses_and_names_each_file(standin: StandinHosts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from ovformer.tools.weights import main

    with pytest.raises(WeightsNotFoundError) as err:
        download_required("r50-lvvis", offline=True)
    msg = str(err.value)
    assert str(weights_path("r50-lvvis")) in msg and str(home(tmp_path) / "detpro-lvis") in msg
    assert "models--timm--vit_base_patch32_clip_224.openai" in msg and "ovformer weights download r50-lvvis" in msg
    monkeypatch.setenv("OVFORMER_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match="OVFORMER_OFFLINE"):
        download_required("r50-lvvis")
    from ovformer.clip_weights import download_clip_weights
    with pytest.raises(WeightsNotFoundError, match="OVFORMER_OFFLINE"):
        download_clip_weights()
    monkeypatch.delenv("OVFORMER_OFFLINE")
    assert main(["download", "r50-lvvis", "--offline"]) == 2
    assert "downloads are forbidden (--offline)" in capsys.readouterr().err
    assert standin.requests == [] and leftovers(home(tmp_path)) == []


def test_background_job_reports_progress_and_failure(standin: StandinHosts) -> None:
    standin.modes[R50_ID] = "quota"
    job = start_download("r50-lvvis")
    assert job.wait(60)
    assert job.state == "failed" and job.reason == "quota" and not job.files[0].present
    standin.modes[R50_ID] = "ok"
    job = start_download("r50-lvvis")
    assert start_download("r50-lvvis") is job or job.state != "running"  # a reload finds the running job
    assert job.wait(60) and job.state == "done", job.error
    snap = job.snapshot()
    assert all(f.present for f in snap.files) and snap.progress is not None and snap.progress.file_count == 7


def test_cli_through_the_environment_variable(server: StandinHosts, standin: StandinHosts,
                                              monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from ovformer.tools.weights import main

    monkeypatch.setenv("OVFORMER_DOWNLOAD_STANDIN", server.env_value)
    with use_download_hosts(None):  # type: ignore[arg-type]  # no override: the variable decides
        assert main(["download", "r50-lvvis"]) == 0
    out = capsys.readouterr().out
    assert out.count("present") == 3
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "r50-lvvis    ready" in out and "swinb-lvvis  missing: checkpoint" in out and "clip-openai" in out


def test_open_clip_finds_the_downloaded_clip_with_the_hub_offline(standin: StandinHosts) -> None:
    """The file fetched is the one open_clip asks the hub cache for in load_clip("openai")."""
    import open_clip
    from open_clip.pretrained import download_pretrained

    from ovformer.clip_weights import download_clip_weights

    path = download_clip_weights(progress=False)
    standin.requests.clear()
    found = download_pretrained(open_clip.get_pretrained_cfg("ViT-B-32-quickgelu", "openai"))  # hub offline
    assert Path(found) == path and standin.requests == []
