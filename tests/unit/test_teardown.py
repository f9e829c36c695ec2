"""Teardown runs to its end when its caller is cancelled, and never raises."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tvm.pyrovm.agent.supervisor import cgroup_cpu_ns
from tvm.pyrovm.drivers import teardown


async def test_a_cancelled_teardown_still_finishes() -> None:
    steps: list[str] = []
    started = asyncio.Event()

    async def slow() -> None:
        steps.append("kill")
        started.set()
        await asyncio.sleep(0.05)
        steps.append("removed")

    caller = asyncio.create_task(teardown.finish(slow(), "sandbox x"))
    await started.wait()
    caller.cancel()  # twice, as a storm of cancellations would
    await asyncio.sleep(0)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert steps == ["kill", "removed"]


async def test_a_failing_teardown_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def broken() -> None:
        raise OSError(16, "Device or resource busy")

    with caplog.at_level(logging.ERROR, logger="tvm.pyrovm.teardown"):
        await teardown.finish(broken(), "sandbox y")
    assert "teardown of sandbox y failed" in caplog.text


def test_cgroup_cpu_counters_of_both_versions() -> None:
    assert cgroup_cpu_ns("815874602289\n") == 815874602289
    assert cgroup_cpu_ns("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n") == 1_500_000
    with pytest.raises(ValueError):
        cgroup_cpu_ns("nr_periods 0\n")
