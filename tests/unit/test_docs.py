"""The docs name every setting (docs/usage.md is the reference)."""

from __future__ import annotations

from pathlib import Path

from tvm.config.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_setting_is_documented() -> None:
    text = (DOCS / "usage.md").read_text()
    missing = [name for name in Settings.model_fields if f"TVM_{name.upper()}" not in text]
    assert not missing, f"add these settings to docs/usage.md: {missing}"
