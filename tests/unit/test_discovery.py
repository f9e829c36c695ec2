"""Workers by DNS name: every address is a worker; the pool follows the answers."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.gateway_support import gateway_settings
from tvm.pyroshell import workers as workers_module
from tvm.pyroshell.discovery import resolve_workers, split_target
from tvm.pyroshell.workers import WorkerPool


def test_targets() -> None:
    assert split_target("worker:8081") == ("worker", 8081)
    assert split_target("worker") == ("worker", 8080)
    assert split_target("[::1]:9000") == ("::1", 9000)
    assert split_target("::1") == ("::1", 8080)


async def test_a_name_resolves_to_one_url_per_address() -> None:
    found = await resolve_workers("localhost:18123")
    assert "http://127.0.0.1:18123" in found
    assert found <= {"http://127.0.0.1:18123", "http://[::1]:18123"}
    with pytest.raises(OSError):
        await resolve_workers("no-such-host.invalid:8080")


async def test_the_pool_follows_the_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = [{"http://192.0.2.1:8080", "http://192.0.2.2:8080"}, {"http://192.0.2.2:8080"}]

    async def resolve(target: str) -> set[str]:
        assert target == "worker:8080"
        if not answers:
            raise socket.gaierror("temporary failure")
        return answers.pop(0)

    monkeypatch.setattr(workers_module, "resolve_workers", resolve)
    pool = WorkerPool(gateway_settings(tmp_path, workers=[], workers_dns="worker:8080"))
    await pool.discover()  # two replicas
    assert set(pool.workers) == {"http://192.0.2.1:8080", "http://192.0.2.2:8080"}
    await pool.discover()  # scaled down to one
    assert set(pool.workers) == {"http://192.0.2.2:8080"}
    await pool.discover()  # DNS hiccup: keep what was known
    assert set(pool.workers) == {"http://192.0.2.2:8080"}
