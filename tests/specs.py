"""Upstream reference files (Istio's CRDs, Lima's template, ...) that tests read at
run time and never copy: ``../shared/specs`` beside the clone (as CI lays it out),
or the directory ``$TVM_SHARED_SPECS`` names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

BESIDE_CLONE = Path(__file__).resolve().parents[2] / "shared" / "specs"


def spec_path(name: str) -> Path:
    """The reference file ``name``; the test skips, saying where it looked, if absent."""
    places = [Path(os.environ["TVM_SHARED_SPECS"])] if os.environ.get("TVM_SHARED_SPECS") else []
    places.append(BESIDE_CLONE)
    for place in places:
        if (place / name).is_file():
            return place / name
    pytest.skip(f"{name} is absent (looked in {', '.join(map(str, places))})")
