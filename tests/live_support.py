"""Helpers for the tests of live sandboxes against a real service."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Server, descendants, sandbox_cgroups
from tvm.config.settings import Settings
from tvm.pyrovm import drivers


def driver_unavailable(name: str) -> str:
    availability = drivers.driver_class(name).probe(Settings())
    return "" if availability.usable else f"{name}: {availability.reason}"


def live_count(service: Server) -> int:
    """Live sandboxes the service holds, in its embedded worker or its worker
    processes (-1 while it cannot say: asked again)."""
    try:
        health = httpx.get(service.url + "/health", timeout=30).json()
        if health.get("embedded"):
            return int(health["embedded"]["live"]["live"])
        workers = health["workers"]
        if not workers or not all(w["healthy"] for w in workers):
            return -1
        return sum(int(w["live"]) for w in workers)
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return -1


def wait_for_workers(
    service: Server, count: int, exclude: frozenset[str] = frozenset()
) -> list[dict[str, Any]]:
    """The gateway's view of its workers, once ``count`` of them are healthy
    with a boot tag not in ``exclude``."""
    deadline = time.monotonic() + 120
    while True:
        workers = httpx.get(service.url + "/health", timeout=30).json()["workers"]
        ready = [w for w in workers if w["healthy"] and w["boot"] and w["boot"] not in exclude]
        if len(ready) >= count:
            return workers
        assert time.monotonic() < deadline, f"workers never became healthy: {workers}"
        time.sleep(0.2)


def assert_nothing_left(service: Server) -> None:
    settings = Settings()
    low, high = settings.uid_base, settings.uid_base + settings.uid_count
    deadline = time.monotonic() + 60  # a gVisor sandbox its memory limit killed is slow to go
    while True:
        own = descendants(service.proc.pid)
        procs = [pid for pid in own if _uid_in(pid, low, high)]
        groups = [p for p in sandbox_cgroups() if int(p.name.split("-")[0]) in own]
        live = live_count(service)
        if not (procs or groups or live) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert live == 0, f"{live} live sandbox(es) left in the service"
    assert not procs, f"sandbox processes left behind: {procs}"
    assert not groups, f"sandbox cgroups left behind: {groups}"


def _uid_in(pid: int, low: int, high: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    return any(low <= int(uid) < high for uid in uids)
