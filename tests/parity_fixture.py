"""Where the official-implementation parity fixture is.

``OVFORMER_PARITY_FIXTURE`` names any fixture folder in the same format. Without it, the shared
reference folder beside the checkout is used, and failing that the copy vendored in
``tests/fixtures/ovformer_parity`` (so a bare clone checks parity too).
"""
from __future__ import annotations

import os
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_SHARED = _HERE.parents[1] / "shared" / "reference" / "ovformer_parity"
_VENDORED = _HERE / "fixtures" / "ovformer_parity"


def parity_fixture_dir() -> Path:
    if os.environ.get("OVFORMER_PARITY_FIXTURE"):
        return Path(os.environ["OVFORMER_PARITY_FIXTURE"])
    return _SHARED if (_SHARED / "expected_outputs.pt").is_file() else _VENDORED


FIXTURE = parity_fixture_dir()
