"""The live-sandbox manager's admission and validation (no sandbox is made)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tvm.config.catalog import load_catalog
from tvm.config.settings import Settings
from tvm.errors import CapacityError, InvalidRequest, NotFound, SandboxEnded
from tvm.pyrovm import live as live_module
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


def _fake_live(ident: str, owner: str, end_at: float, closed: str | None = None) -> Any:
    async def nothing() -> None:
        return None

    box = SimpleNamespace(destroy=nothing, spec=SimpleNamespace(uid=60000))
    session = SimpleNamespace(closed=closed, close=nothing, sandbox=box)
    return SimpleNamespace(id=ident, owner=owner, end_at=end_at, session=session)


def test_a_sandbox_that_ended_on_its_own_is_a_409_and_a_deleted_one_a_404(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(live_module, "KEPT_ENDED", 2)
    live = manager()
    now = time.monotonic()
    live.sandboxes = {
        "sb-first": _fake_live("sb-first", "", now - 2),  # ended first: forgotten (2 kept)
        "sb-old": _fake_live("sb-old", "alice", now - 1),  # its lifetime ran out
        "sb-dead": _fake_live("sb-dead", "bob", now + 600, closed="the agent hung up"),
        "sb-mine": _fake_live("sb-mine", "", now + 600),
    }

    async def reap_then_delete() -> None:
        await live.start()
        await asyncio.sleep(live_module.REAP_INTERVAL * 3)
        assert await live.kill("sb-mine")  # deleted by its owner: forgotten
        await live.close()

    asyncio.run(reap_then_delete())
    with pytest.raises(SandboxEnded, match="its lifetime ran out") as old:
        live.get("sb-old")
    assert old.value.status_code == 409 and old.value.owner == "alice"
    assert old.value.to_dict()["code"] == "ended"
    with pytest.raises(SandboxEnded, match="the agent hung up"):
        live.get("sb-dead")
    with pytest.raises(NotFound) as deleted:
        live.get("sb-mine")
    assert not isinstance(deleted.value, SandboxEnded) and deleted.value.status_code == 404
    assert list(live.ended) == ["sb-old", "sb-dead"]
    with pytest.raises(NotFound) as forgotten:
        live.get("sb-first")
    assert forgotten.value.status_code == 404
