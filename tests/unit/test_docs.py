"""The docs name every setting (docs/usage.md is the reference)."""

from __future__ import annotations

from pathlib import Path

from tvm.config.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_setting_is_documented() -> None:
    text = (DOCS / "usage.md").read_text()
    missing = [name for name in Settings.model_fields if f"TVM_{name.upper()}" not in text]
    assert not missing, f"add these settings to docs/usage.md: {missing}"


def test_the_driver_recipe_in_isolation_md_names_what_exists() -> None:
    """docs/isolation.md says which file a new VM driver is and what it calls:
    every module and function it names must be there."""
    import importlib
    import re

    text = (DOCS / "isolation.md").read_text()
    section = text[text.index("### How a driver is built") : text.index("### namespace")]
    package = DOCS.parent / "tvm" / "pyrovm"
    modules = set(re.findall(r"`((?:drivers|vm)/\w+)\.py`", section))
    assert {"drivers/channel", "drivers/session", "vm/cmdline", "vm/connect"} <= modules
    for module in modules:
        assert (package / f"{module}.py").is_file(), module
    for module, name in re.findall(r"\b(hostproc|vm\.\w+)\.(\w+)\(", section):
        target = "tvm.pyrovm.drivers.hostproc" if module == "hostproc" else f"tvm.pyrovm.{module}"
        assert hasattr(importlib.import_module(target), name), f"{target}.{name}"
