"""The worker pool over any WorkerClient: choice, retry and what an outcome says
about a worker, with clients that are neither HTTP nor embedded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.gateway_support import gateway_settings
from tvm.api import ExecutionResponse, Job
from tvm.errors import CapacityError
from tvm.pyroshell.worker_client import Health, Lost, Refused, Unavailable
from tvm.pyroshell.workers import WorkerPool

RAN = ExecutionResponse(language="python", version="3.11.2", status="ok")


class Scripted:
    """A worker that answers each execute with the next outcome of its script."""

    def __init__(self, name: str, admitted: int, outcomes: list[Any]) -> None:
        self._name = name
        self.admitted = admitted
        self.outcomes = outcomes
        self.calls = 0
        self.listed: list[dict[str, Any]] | None = [{"worker": name}]

    @property
    def name(self) -> str:
        return self._name

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def health(self) -> Health:
        return Health(admitted=self.admitted, sandboxes=0, driver="scripted")

    async def execute(
        self, payload: dict[str, Any], request_id: str, job: Job | None
    ) -> ExecutionResponse | Refused | Lost:
        self.calls += 1
        outcome: ExecutionResponse | Refused | Lost = self.outcomes.pop(0)
        return outcome

    async def languages(self, request_id: str) -> list[dict[str, Any]]:
        if self.listed is None:
            raise Unavailable(f"{self._name} is down")
        return self.listed

    async def runtimes(self, request_id: str) -> list[dict[str, Any]]:
        return await self.languages(request_id)


async def pool_of(tmp_path: Path, *clients: Scripted, wait: float = 0.2) -> WorkerPool:
    settings = gateway_settings(tmp_path, workers=[]).model_copy(
        update={"dispatch_wait_seconds": wait}
    )
    pool = WorkerPool(settings)
    for client in clients:
        pool.add(client)
    await pool.check_all()
    return pool


async def test_a_full_worker_passes_the_job_on_and_counts_as_loaded(tmp_path: Path) -> None:
    idle = Scripted("idle", 0, [Refused("full", down=False)])
    busy = Scripted("busy", 3, [RAN])
    pool = await pool_of(tmp_path, idle, busy)
    sent: list[tuple[str, bool]] = []

    async def on_send(url: str, going: bool) -> None:
        sent.append((url, going))

    assert await pool.execute({}, "r1", on_send) == RAN
    assert sent == [("idle", True), ("idle", False), ("busy", True)]
    assert pool.workers["idle"].healthy  # full, not down
    assert pool.workers["idle"].admitted == pool.settings.max_concurrent_requests
    await pool.close()


async def test_an_unreachable_worker_is_marked_down_and_a_lost_job_is_not_resent(
    tmp_path: Path,
) -> None:
    gone = Scripted("gone", 0, [Refused("connection refused", down=True)])
    dying = Scripted("dying", 1, [Lost("dying", "reset", down=True)])
    pool = await pool_of(tmp_path, gone, dying)
    outcome = await pool.execute({}, "r1")
    assert outcome == Lost("dying", "reset", down=True)
    assert (gone.calls, dying.calls) == (1, 1)
    assert not pool.workers["gone"].healthy and pool.workers["gone"].error == "connection refused"
    assert not pool.workers["dying"].healthy
    with pytest.raises(CapacityError, match="dispatch_wait_seconds"):
        await pool.execute({}, "r2")  # nobody healthy is left
    await pool.close()


async def test_the_language_lists_come_from_the_first_worker_that_answers(tmp_path: Path) -> None:
    down = Scripted("a-down", 0, [])
    down.listed = None
    up = Scripted("b-up", 0, [])
    pool = await pool_of(tmp_path, down, up)
    assert await pool.languages("r") == [{"worker": "b-up"}]
    assert not pool.workers["a-down"].healthy
    assert await pool.runtimes("r") == [{"worker": "b-up"}]
    await pool.close()
