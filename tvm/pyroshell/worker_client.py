"""How the gateway talks to one worker: the :class:`WorkerClient` protocol.

Two implementations: :class:`~tvm.pyroshell.http_worker.HttpWorker` (a worker
process, over its native HTTP API) and
:class:`~tvm.pyroshell.embedded.EmbeddedWorker` (the engine in the gateway's
own process). The :class:`~tvm.pyroshell.workers.WorkerPool` holds any mix of
them and never asks which kind it holds: it keeps their health, chooses one
per job and retries by the outcome each call returns.

An ``execute`` call ends in one of three ways:

* an :class:`~tvm.api.ExecutionResponse`: the job ran (its program may have failed);
* :class:`Refused`: the worker did not start the job, so another may take it;
  ``down`` says whether it is unreachable (else only full);
* :class:`Lost`: the job was handed over and its worker went away: it may
  have run, so it is never sent again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from tvm.api import ExecutionResponse, Job


@dataclass(frozen=True)
class Health:
    """What a worker says about itself."""

    admitted: int  # executions it is running now
    sandboxes: int  # sandboxes it holds (warm ones too)
    driver: str  # its isolation driver
    boot: str = ""  # its process's boot tag, inside the id of every live sandbox it holds
    live: int = 0  # live sandboxes it holds


@dataclass(frozen=True)
class Refused:
    """The worker did not start the job."""

    reason: str
    down: bool  # unreachable (else: full right now)


@dataclass(frozen=True)
class Lost:
    """The job was sent and its worker went away: it may have run."""

    worker: str
    reason: str
    down: bool = False  # the connection broke (else it answered, but not with a result)


class Unavailable(Exception):
    """A worker could not answer a read-only call (health, the language lists)."""

    def __init__(self, reason: str, down: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.down = down


class WorkerClient(Protocol):
    @property
    def name(self) -> str:
        """How the worker is known: its URL, or ``embedded``."""

    @property
    def live_url(self) -> str | None:
        """Where its live sandboxes' routes are served over HTTP (None: in this process)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def health(self) -> Health:
        """Its current load; :class:`Unavailable` if it cannot say."""

    async def execute(
        self, payload: dict[str, Any], request_id: str, job: Job | None
    ) -> ExecutionResponse | Refused | Lost:
        """Run a native request (``job``: the same, already validated)."""

    async def languages(self, request_id: str) -> list[dict[str, Any]]:
        """``GET /api/v1/languages`` as the worker answers it (:class:`Unavailable`)."""

    async def runtimes(self, request_id: str) -> list[dict[str, Any]]:
        """Piston's ``GET /api/v2/runtimes`` as the worker answers it (:class:`Unavailable`)."""
