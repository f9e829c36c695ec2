"""The gateway's view of its workers: discovery, health, choice and retry.

Workers come from settings: a static list of URLs (``TVM_WORKERS``) and/or a DNS
name whose addresses are the workers (``TVM_WORKERS_DNS=host:port``, as a
Kubernetes headless service gives), plus the engine in this process when the
gateway embeds one. Each is a :class:`~.worker_client.WorkerClient`; the pool
does not know which kind. Every ``health_interval_seconds`` each is asked for
its health; a job goes to the least-loaded healthy one (load: the larger of
what its health said it admitted and what this gateway has in flight there).

A job a worker refused before starting it (:class:`Refused`) goes to another
worker, and to all of them again with backoff until ``dispatch_wait_seconds``,
then :class:`~tvm.errors.CapacityError` (503, Retry-After). A job lost with its
worker (:class:`Lost`) is returned as such: the caller may run it again (a
sandbox has no effect outside itself; the gateway does, up to ``max_attempts``
starts), else the result is ``internal_error`` saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tvm.api import ExecutionResponse, Job, internal_stage
from tvm.config.settings import Settings
from tvm.errors import CapacityError
from tvm.pyroshell.discovery import resolve_workers
from tvm.pyroshell.embedded import EmbeddedWorker
from tvm.pyroshell.http_worker import HttpLink, HttpWorker
from tvm.pyroshell.worker_client import Lost, Refused, Unavailable, WorkerClient
from tvm.utils import metrics

log = logging.getLogger("tvm.gateway.workers")

# Told (worker URL, True) just before a job is sent, (worker URL, False) when that
# worker then refused it without starting it.
OnSend = Callable[[str, bool], Awaitable[None]]

__all__ = ["Lost", "OnSend", "Worker", "WorkerPool", "lost_response"]


@dataclass
class Worker:
    """One worker as the pool tracks it: its client and its last known state."""

    client: WorkerClient
    healthy: bool = False
    admitted: int = 0
    sandboxes: int = 0
    inflight: int = 0
    error: str = "not checked yet"
    checked_at: float = 0.0
    static: bool = True  # from the settings (else found through DNS)
    driver: str = ""  # the isolation driver its health reported
    boot: str = ""  # its process's boot tag (live sandbox ids carry it)
    live: int = 0  # live sandboxes it holds

    @property
    def url(self) -> str:
        return self.client.name

    @property
    def load(self) -> int:
        return max(self.admitted, self.inflight)

    def describe(self) -> dict[str, Any]:
        return {"url": self.url, "healthy": self.healthy, "driver": self.driver or None,
                "admitted": self.admitted, "sandboxes": self.sandboxes,
                "inflight": self.inflight, "boot": self.boot or None, "live": self.live,
                "error": None if self.healthy else self.error}  # fmt: skip


@dataclass
class WorkerPool:
    settings: Settings
    workers: dict[str, Worker] = field(default_factory=dict)
    transport: httpx.AsyncBaseTransport | None = None  # tests inject one
    embedded: EmbeddedWorker | None = None  # the engine in this process, if any

    def __post_init__(self) -> None:
        self.link = HttpLink(self.transport)
        self.live_link = HttpLink(self.transport, keepalive=True)  # live sandboxes' calls
        for url in self.settings.workers:
            self.add(HttpWorker(url, self.settings, self.link))
        if self.embedded is not None:
            self.add(self.embedded)
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self.retired: set[str] = set()  # boot tags of worker processes that were replaced

    def add(self, client: WorkerClient, static: bool = True) -> Worker:
        worker = self.workers[client.name] = Worker(client, static=static)
        return worker

    # -- discovery and health ----------------------------------------------------------
    async def discover(self) -> None:
        target = self.settings.workers_dns.strip()
        if not target:
            return
        try:
            found = await resolve_workers(target)
        except OSError as exc:
            log.warning("cannot resolve workers_dns %s: %s", target, exc)
            return
        for url in found - set(self.workers):
            self.add(HttpWorker(url, self.settings, self.link), static=False)
        for url, worker in list(self.workers.items()):
            if not worker.static and url not in found and worker.inflight == 0:
                del self.workers[url]

    async def check(self, worker: Worker) -> None:
        try:
            health = await worker.client.health()
        except Unavailable as exc:
            worker.healthy, worker.error = False, exc.reason
        else:
            worker.healthy, worker.error = True, ""
            worker.admitted, worker.sandboxes = health.admitted, health.sandboxes
            worker.driver, worker.live = health.driver, health.live
            if worker.boot and health.boot != worker.boot:
                self.retired.add(worker.boot)  # restarted: what it held is gone
            worker.boot = health.boot
        worker.checked_at = time.monotonic()
        metrics.WORKER_UP.labels(worker.url).set(1 if worker.healthy else 0)
        metrics.WORKER_ADMITTED.labels(worker.url).set(worker.admitted)
        metrics.WORKER_SANDBOXES.labels(worker.url).set(worker.sandboxes)

    async def check_all(self) -> None:
        await self.discover()
        await asyncio.gather(*(self.check(worker) for worker in list(self.workers.values())))
        if any(worker.healthy for worker in self.workers.values()):
            self._changed.set()

    async def start(self) -> None:
        for worker in list(self.workers.values()):
            await worker.client.start()
        await self.check_all()
        self._task = asyncio.create_task(self._health_loop(), name="worker-health")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.link.close()
        await self.live_link.close()
        for worker in list(self.workers.values()):
            await worker.client.close()

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.health_interval_seconds)
            try:
                await self.check_all()
            except Exception:  # a health round must never kill the loop
                log.exception("worker health check failed")

    def healthy(self) -> list[Worker]:
        ready = [worker for worker in self.workers.values() if worker.healthy]
        return sorted(ready, key=lambda worker: (worker.load, worker.sandboxes, worker.url))

    def by_boot(self, boot: str) -> Worker | None:
        """The worker whose process has this boot tag, if it still runs."""
        return next((w for w in self.workers.values() if w.boot and w.boot == boot), None)

    # -- calls -------------------------------------------------------------------------
    async def languages(self, request_id: str) -> list[dict[str, Any]]:
        """``GET /api/v1/languages`` from the least-loaded healthy worker."""
        return await self._read(lambda client: client.languages(request_id))

    async def runtimes(self, request_id: str) -> list[dict[str, Any]]:
        """Piston's ``GET /api/v2/runtimes`` from the least-loaded healthy worker."""
        return await self._read(lambda client: client.runtimes(request_id))

    async def _read(
        self, call: Callable[[WorkerClient], Awaitable[list[dict[str, Any]]]]
    ) -> list[dict[str, Any]]:
        for worker in self.healthy():
            try:
                return await call(worker.client)
            except Unavailable as exc:
                if exc.down:
                    worker.healthy, worker.error = False, exc.reason
        raise CapacityError("no healthy worker; retry later", retry_after=2, status_code=503)

    async def execute(
        self,
        payload: dict[str, Any],
        request_id: str,
        on_send: OnSend | None = None,
        job: Job | None = None,
    ) -> ExecutionResponse | Lost:
        """Run a native request on some worker (see the module docstring for the rules).
        ``job``: the payload already validated, which an embedded worker then uses."""
        deadline = time.monotonic() + self.settings.dispatch_wait_seconds
        refused: set[str] = set()
        pause = 0.05
        while True:
            candidates = [worker for worker in self.healthy() if worker.url not in refused]
            if not candidates:
                if time.monotonic() >= deadline:
                    metrics.REFUSED.labels("no_worker").inc()
                    raise CapacityError(
                        "no worker could take the job within dispatch_wait_seconds="
                        f"{self.settings.dispatch_wait_seconds:g}; retry later",
                        retry_after=2,
                        status_code=503,
                    )
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), pause)
                pause = min(pause * 2, 1.0)
                refused.clear()
                continue
            worker = candidates[0]
            outcome = await self._send(worker, payload, request_id, on_send, job)
            if isinstance(outcome, Refused):
                refused.add(worker.url)
                continue
            return outcome

    async def _send(
        self,
        worker: Worker,
        payload: dict[str, Any],
        request_id: str,
        on_send: OnSend | None,
        job: Job | None,
    ) -> ExecutionResponse | Refused | Lost:
        """One attempt, and what it says about the worker."""
        if on_send is not None:
            await on_send(worker.url, True)
        worker.inflight += 1
        try:
            outcome = await worker.client.execute(payload, request_id, job)
        finally:
            worker.inflight -= 1
        if isinstance(outcome, Refused):
            if outcome.down:
                worker.healthy, worker.error = False, outcome.reason
            else:  # full: as its health would say
                worker.admitted = max(worker.admitted, self.settings.max_concurrent_requests)
            if on_send is not None:
                await on_send(worker.url, False)
        elif isinstance(outcome, Lost) and outcome.down:
            worker.healthy, worker.error = False, outcome.reason
        return outcome


def lost_response(lost: Lost, language: str, version: str, attempts: int) -> ExecutionResponse:
    message = (
        f"the worker {lost.worker} went away while running this job ({lost.reason}); "
        f"it was interrupted {attempts} time(s), so it is not run again (max_attempts)"
    )
    return ExecutionResponse(
        language=language,
        version=version,
        status="internal_error",
        message=message,
        run=internal_stage(message),
    )
