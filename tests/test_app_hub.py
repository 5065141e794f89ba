"""The model hub of the app without a browser: the weights banner, the model picker, Download.

Downloads go to the local stand-in for Google Drive and the Hugging Face Hub
(tests/standin_hosts.py) through the production code; what differs from production is said
there (:class:`~tests.standin_hosts.ModelFiles`): the hosts (``use_download_hosts``), and the
served files are small (a tiny checkpoint with its architecture record, a tiny CLIP that
open_clip builds under the ViT-B/32 name). Every connection outside 127.0.0.1 is refused and
the refusals are asserted empty.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.hub import ModelHub, ModelSpec, PredictorCache
from ovformer.download import use_download_hosts
from ovformer.weights import weights_path
from tests.standin_hosts import (ModelFiles, StandinHosts, leftovers, make_model_files, only_loopback,
                                 serve_model_files, tiny_clip_as_openai)


@pytest.fixture(scope="module")
def files() -> ModelFiles:
    return make_model_files()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> StandinHosts:
    with StandinHosts(tmp_path_factory.mktemp("tls")) as s:
        yield s


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty OVFORMER_HOME and hub cache, the hub offline as in the app."""
    import huggingface_hub.constants as hub

    monkeypatch.setenv("OVFORMER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("OVFORMER_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "home" / "hf" / "hub"))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    return tmp_path / "home"


@pytest.fixture
def standin(server: StandinHosts, files: ModelFiles, home: Path, monkeypatch: pytest.MonkeyPatch) -> StandinHosts:
    for var in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    serve_model_files(server, files)
    with use_download_hosts(server.hosts), tiny_clip_as_openai(), only_loopback() as refused:
        yield server
    assert refused == [], f"connections outside 127.0.0.1 were attempted: {refused}"


def test_banner_lists_every_file_with_size_state_and_place(home: Path) -> None:
    hub = ModelHub(ModelSpec("r50-lvvis"))
    banner = hub.banner()
    assert "No model weights" in banner and "`r50-lvvis` + OpenAI ViT-B/32 needs 3 more file(s)" in banner
    rows = [line for line in banner.splitlines() if line.startswith("| ") and "✖" in line]
    assert len(rows) == 3 and all("✖&nbsp;missing" in r and "not known yet" in r for r in rows)
    assert str(weights_path("r50-lvvis")) in banner and str(home / "weights" / "detpro-lvis") in banner
    assert str(home / "hf" / "hub" / "models--timm--vit_base_patch32_clip_224.openai") in banner
    assert "Press **Download**" in banner and "ovformer weights download r50-lvvis" in banner
    note = hub.startup_note()
    assert note is not None and "press Download" in note and "\n" not in note
    # random weights need no file: the loud warning, no table, nothing to download
    untrained = ModelHub(ModelSpec("tiny", None, True, "tiny-random"))
    assert "UNTRAINED" in untrained.banner() and "|" not in untrained.banner()
    assert untrained.startup_note() is None and untrained.missing_files() == []


def test_picker_offers_releases_and_finetuned_runs(home: Path, tmp_path: Path) -> None:
    runs = tmp_path / "data" / "runs"
    (runs / "good").mkdir(parents=True)
    (runs / "good" / "model_final.pth").write_bytes(b"weights")
    (runs / "good" / "settings.json").write_text(json.dumps({"preset": "tiny", "clip": "tiny-random"}))
    (runs / "openai-clip").mkdir()
    (runs / "openai-clip" / "model_final.pth").write_bytes(b"weights")
    (runs / "openai-clip" / "settings.json").write_text(json.dumps({"preset": "tiny", "clip": "openai"}))
    (runs / "unfinished").mkdir()  # no model_final.pth: not offered
    (runs / "unfinished" / "settings.json").write_text("{}")

    class Loaded:  # what the banner reads of a predictor
        untrained, weights_label = False, None

    loaded: list[ModelSpec] = []
    hub = ModelHub(ModelSpec("tiny", None, True, "tiny-random"),
                   PredictorCache(lambda spec: loaded.append(spec) or Loaded()), runs_root=runs)
    by_key = {c.key: c for c in hub.choices()}
    keys = list(by_key)  # the startup model (neither a release nor a run), the releases, the runs
    assert keys[:5] == ["spec:tiny (UNTRAINED, random weights)", "r50-lvvis", "swinb-lvvis", "r50-lvis", "swinb-lvis"]
    assert sorted(keys[5:]) == ["run:good", "run:openai-clip"]
    assert by_key["r50-lvvis"].label == "r50-lvvis (R50, LV-VIS) — missing: checkpoint, prompts, CLIP"
    assert by_key["run:good"].label == "good (fine-tuned run) — present"
    assert by_key["run:openai-clip"].label == "openai-clip (fine-tuned run) — missing: prompts, CLIP"
    assert by_key["run:good"].spec == ModelSpec("tiny", str(runs / "good" / "model_final.pth"), False, "tiny-random")
    assert hub.current_key() == "spec:tiny (UNTRAINED, random weights)"

    # a run whose files are here loads at once; a released model that is missing becomes current, unloaded
    assert hub.select("run:good").startswith("✔") and loaded == [by_key["run:good"].spec]
    assert hub.current_key() == "run:good" and "model_final.pth" in hub.banner()
    msg = hub.select("r50-lvvis")
    assert "3 file(s) missing" in msg and loaded == [by_key["run:good"].spec]
    assert hub.spec == ModelSpec("r50-lvvis") and "No model weights" in hub.banner()
    with pytest.raises(KeyError):
        hub.select("run:../../etc")


def test_download_then_load_then_the_banner_says_so(standin: StandinHosts, files: ModelFiles, home: Path) -> None:
    hub = ModelHub(ModelSpec("r50-lvvis"))
    assert hub.download_view().state == "idle" and standin.requests == []  # nothing asked, nothing sent
    standin.rates[files.checkpoint_id] = 20_000_000  # ~3 s: progress reports to watch
    view = hub.start_download()
    assert view.state == "downloading"
    again = hub.start_download()  # a second press (or another page) joins the running job
    assert again.state in ("downloading", "loading", "ready") and hub._task is not None
    seen = []
    while not hub.wait_download(0.05):
        seen.append(hub.download_view())
    texts = [v.text for v in seen if v.state == "downloading" and v.fraction is not None]
    assert texts and any("Downloading file 1 of 7" in t and "MB/s" in t for t in texts), texts[:3]
    final = hub.download_view()
    assert final.state == "ready", final
    assert "loaded r50-lvvis" in final.text

    assert hub.loaded and hub.missing_files() == []
    from ovformer.inference.runtime import describe_runtime, fastest_dtype
    runs = describe_runtime("cpu", fastest_dtype("cpu"))  # the app's default: --dtype auto
    assert hub.banner() == f"### Model weights: `r50-lvvis` + OpenAI ViT-B/32 (loaded)\n\nRuns on {runs}."
    assert hub.headline_name() == "r50-lvvis + OpenAI ViT-B/32" and hub.startup_note() is None
    predictor = hub.get()
    assert predictor.detpro_context is not None and predictor.detpro_context.shape == (5, 8, 64)  # prompts used
    assert predictor.classifier is not None and len(predictor.classifier.vocabulary) == 1196  # the LV-VIS rows
    assert leftovers(home / "weights") == sorted(["ovformer_r50_lvvis.pth",
                                                  *(f"detpro-lvis/{n}" for n, _ in files.prompts.values())])
    hosts = {(r.method, r.host) for r in standin.requests}
    assert hosts <= {("CONNECT", "127.0.0.1"), ("GET", "drive.google.com"), ("HEAD", "127.0.0.1"), ("GET", "127.0.0.1")}
    assert {r.path for r in standin.requests if r.method == "CONNECT"} == {"drive.google.com:443"}


@pytest.mark.parametrize("mode, reason, words", [
    ("quota", "quota", "download quota exceeded"),
    ("drop", "network", "no network"),
])
def test_failed_download_says_why_and_keeps_nothing_complete(standin: StandinHosts, files: ModelFiles, home: Path,
                                                             mode: str, reason: str, words: str) -> None:
    standin.modes[files.checkpoint_id] = mode
    hub = ModelHub(ModelSpec("r50-lvvis"))
    hub.start_download()
    assert hub.wait_download(120)
    view = hub.download_view()
    assert view.state == "failed" and view.reason == reason and words in view.text, view
    assert "Nothing that looks complete was kept" in view.text and view.error
    assert not weights_path("r50-lvvis").exists() and not hub.loaded
    assert all(p.endswith(".part") for p in leftovers(home / "weights")), leftovers(home / "weights")
    assert "No model weights" in hub.banner()

    # the next press, with the host back, finishes the job (a cut transfer resumes its .part file)
    standin.modes.clear()
    hub.start_download()
    assert hub.wait_download(120) and hub.download_view().state == "ready"
    assert leftovers(home / "weights") and not any(p.endswith(".part") for p in leftovers(home / "weights"))


def test_disk_full_is_said(standin: StandinHosts, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ovformer.weights

    monkeypatch.setattr(ovformer.weights, "get_weights_entry", _with_size(ovformer.weights.get_weights_entry))
    import ovformer.model_files
    monkeypatch.setattr(ovformer.model_files, "get_weights_entry", _with_size(ovformer.model_files.get_weights_entry))
    import shutil
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 10, 10))
    hub = ModelHub(ModelSpec("r50-lvvis"))
    hub.start_download()
    assert hub.wait_download(60)
    view = hub.download_view()
    assert view.state == "failed" and view.reason == "disk-full" and "the disk is full" in view.text
    assert leftovers(home / "weights") == []


def _with_size(real):
    from dataclasses import replace

    def entry(name: str):  # a size known from an earlier download: checked against the free space
        e = real(name)
        return replace(e, size=e.size or 50_000_000)
    return entry


def test_banner_says_where_and_in_which_dtype_the_model_runs(home: Path) -> None:
    """The app's --device/--dtype reach the banner: resolved before loading, the loaded
    predictor's own after."""
    from app.main import parse_args

    args = parse_args(["--dtype", "fp32", "--device", "cpu"])
    assert (args.device, args.dtype) == ("cpu", "fp32")
    assert (parse_args([]).device, parse_args([]).dtype) == ("auto", "auto")

    class Loaded:
        untrained, device, dtype = False, "cuda:0", "fp16"

    hub = ModelHub(ModelSpec("tiny", None, True, "tiny-random"), PredictorCache(lambda spec: Loaded(), "cpu", "fp32"))
    assert hub.cache.runtime(hub.spec) == "cpu, fp32 (exact)"
    hub.get()  # loaded: the predictor says where it runs
    assert "Runs on cuda:0, fp16 (masks agree with fp32 on >= 99% of pixels" in hub.banner()
