"""The live-sandbox manager's admission and validation (no sandbox is made)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tvm.config.catalog import load_catalog
from tvm.config.settings import Settings
from tvm.errors import CapacityError, InvalidRequest, NotFound
from tvm.pyrovm.live import LiveManager, LiveRequest
from tvm.pyrovm.pool import UidAllocator


class Images:
    def rootfs(self, recipe: Any) -> Path:
        return Path("/nonexistent")

    def is_built(self, recipe: Any) -> bool:
        return True


class NoDriver:
    async def start(self, spec: Any) -> Any:
        raise AssertionError("admission should have refused before a sandbox is made")


def manager(**overrides: Any) -> LiveManager:
    settings = Settings(**overrides)
    return LiveManager(settings, load_catalog(), NoDriver(), Images(), UidAllocator(60000, 4))  # type: ignore[arg-type]


def test_internet_access_is_refused() -> None:
    with pytest.raises(InvalidRequest) as refused:
        asyncio.run(manager().create(LiveRequest(internet=True)))
    assert refused.value.field == "allow_internet_access"


def test_timeout_and_memory_ranges_name_the_setting() -> None:
    with pytest.raises(InvalidRequest, match="live_max_timeout_seconds") as bad:
        asyncio.run(manager(live_max_timeout_seconds=60).create(LiveRequest(timeout=61)))
    assert bad.value.field == "timeout"
    with pytest.raises(InvalidRequest, match="between 16 and 1024") as big:
        asyncio.run(manager(live_max_memory_mb=1024).create(LiveRequest(memory_mb=4096)))
    assert big.value.field == "memory_mb"
    with pytest.raises(InvalidRequest, match="between 16 and") as none:  # not "the default"
        asyncio.run(manager().create(LiveRequest(memory_mb=0)))
    assert none.value.field == "memory_mb"


def test_unknown_template_is_not_found() -> None:
    with pytest.raises(NotFound, match="'code-interpreter-v1'"):
        manager().language_for("tensorflow-gpu")
    assert manager().language_for("base").name == "python"
    assert manager().language_for("node").name == "javascript"


def test_the_code_interpreter_gets_the_scientific_python_where_built() -> None:
    assert manager().language_for("code-interpreter-v1").version.endswith("-scientific")
    unbuilt = manager()
    unbuilt.images = type("Unbuilt", (Images,), {"is_built": lambda self, recipe: False})()
    chosen = unbuilt.language_for("code-interpreter-v1")
    assert chosen.name == "python" and not chosen.version.endswith("-scientific")


def test_caps_are_429_with_retry_after() -> None:
    full = manager(live_max_sandboxes=0)
    with pytest.raises(CapacityError, match="live_max_sandboxes=0") as busy:
        asyncio.run(full.create(LiveRequest()))
    assert busy.value.status_code == 429 and busy.value.retry_after > 0
    small = manager(live_memory_budget_mb=256)
    with pytest.raises(CapacityError, match="live_memory_budget_mb=256"):
        asyncio.run(small.create(LiveRequest(memory_mb=512)))
