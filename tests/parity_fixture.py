"""Where the official-implementation parity fixture is.

``OVFORMER_PARITY_FIXTURE`` names any fixture folder in the same format. Without it, the shared
reference folder beside the checkout is used, and failing that the copy vendored in
``tests/fixtures/ovformer_parity`` (so a bare clone checks parity too).
"""
from __future__ import annotations

import os
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def fixture_dir(env: str, name: str) -> Path:
    """``$env`` if set, else ``../shared/reference/<name>`` beside the checkout, else the copy
    vendored in ``tests/fixtures/<name>``."""
    if os.environ.get(env):
        return Path(os.environ[env])
    shared = _HERE.parents[1] / "shared" / "reference" / name
    return shared if (shared / "expected_outputs.pt").is_file() else _HERE / "fixtures" / name


def parity_fixture_dir() -> Path:
    return fixture_dir("OVFORMER_PARITY_FIXTURE", "ovformer_parity")


FIXTURE = parity_fixture_dir()


def build_checkpoint(dest: Path) -> Path:
    """Rebuild the fixture's official-format checkpoint at ``dest`` with its own script."""
    import subprocess
    import sys
    subprocess.run([sys.executable, str(FIXTURE / "build_checkpoint.py"),
                    str(FIXTURE / "weights_packed.npz"), str(dest)], check=True,
                   capture_output=True)
    return dest


def load_parity_model(folder: Path):
    """(model in eval mode, converted checkpoint, expected outputs) for the fixture."""
    import torch

    from ovformer.checkpoint import load_into, read_checkpoint
    from ovformer.factory import create_model
    conv = read_checkpoint(build_checkpoint(folder / "model_official_format.pth"))
    model = create_model(FIXTURE / "official_config.yaml").eval()
    load_into(model, conv)
    return model, conv, torch.load(FIXTURE / "expected_outputs.pt", weights_only=True)
