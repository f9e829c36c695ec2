"""The gateway's view of its workers: discovery, health, choice, and the one call.

Workers come from settings: a static list of URLs (``TVM_WORKERS``) and/or a DNS
name whose addresses are the workers (``TVM_WORKERS_DNS=host:port``, as a
Kubernetes headless service gives). Every ``health_interval_seconds`` each is
asked ``GET /health``; a job goes to the least-loaded healthy one (load: the
larger of what its health said it admitted and what this gateway has in flight
there).

The internal contract is the worker's native ``POST /api/v1/execute`` with
``X-Request-ID``. Each call opens its own connection (no keep-alive), so a
failure can be placed exactly:

* refused before the job started (connection refused or reset while
  connecting or sending, 429, or 503 with Retry-After): another worker is
  tried, and all of them again with backoff until ``dispatch_wait_seconds``,
  then :class:`~tvm.errors.CapacityError` (503, Retry-After);
* lost after the request was sent (the connection broke while waiting for the
  answer, or no answer within ``worker_timeout_seconds``): :class:`Lost`. The
  caller may run it again (a sandbox has no effect outside itself; the gateway
  does, up to ``max_attempts`` starts), else the result is ``internal_error``
  saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tvm.api import ExecutionResponse, Job, internal_stage
from tvm.config.settings import Settings
from tvm.errors import CapacityError, ImageNotBuilt, RequestError, TVMError
from tvm.pyroshell.discovery import resolve_workers
from tvm.pyroshell.embedded import URL as EMBEDDED
from tvm.pyroshell.embedded import EmbeddedWorker
from tvm.utils import metrics
from tvm.utils.web import REQUEST_ID_HEADER

log = logging.getLogger("tvm.gateway.workers")

# Told (worker URL, True) just before a job is sent, (worker URL, False) when that
# worker then refused it without starting it.
OnSend = Callable[[str, bool], Awaitable[None]]

# Failures that leave no doubt the worker never got the whole request.
NOT_STARTED = (httpx.ConnectError, httpx.ConnectTimeout, httpx.WriteError, httpx.PoolTimeout)


@dataclass
class Worker:
    url: str
    healthy: bool = False
    admitted: int = 0
    sandboxes: int = 0
    inflight: int = 0
    error: str = "not checked yet"
    checked_at: float = 0.0
    static: bool = True
    driver: str = ""  # the isolation driver its health reported

    @property
    def load(self) -> int:
        return max(self.admitted, self.inflight)

    def describe(self) -> dict[str, Any]:
        return {"url": self.url, "healthy": self.healthy, "driver": self.driver or None,
                "admitted": self.admitted, "sandboxes": self.sandboxes,
                "inflight": self.inflight,
                "error": None if self.healthy else self.error}  # fmt: skip


@dataclass
class Lost:
    """The job was sent and its worker went away: it may have run."""

    worker: str
    reason: str


class _WithTimeout:
    """The shared client, with this use's timeout applied to every request."""

    def __init__(self, client: httpx.AsyncClient, timeout: float) -> None:
        self._client, self._timeout = client, timeout

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self._client.get(url, timeout=self._timeout, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self._client.post(url, timeout=self._timeout, **kwargs)


@dataclass
class WorkerPool:
    settings: Settings
    workers: dict[str, Worker] = field(default_factory=dict)
    transport: httpx.AsyncBaseTransport | None = None  # tests inject one
    embedded: EmbeddedWorker | None = None  # the engine in this process, if any

    def __post_init__(self) -> None:
        for url in self.settings.workers:
            url = url.rstrip("/")
            self.workers[url] = Worker(url)
        if self.embedded is not None:
            self.workers[EMBEDDED] = Worker(EMBEDDED)
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._http: httpx.AsyncClient | None = None

    @contextlib.asynccontextmanager
    async def _client(self, timeout: float) -> AsyncIterator[httpx.AsyncClient]:
        """The pool's one HTTP client (building one costs tens of milliseconds).

        No keep-alive: every request opens its own loopback connection, so a
        connect error always means the worker never saw the job, and a read error
        always means it died during it (a stale pooled connection would blur that).
        """
        if self._http is None:
            limits = httpx.Limits(max_keepalive_connections=0)
            self._http = httpx.AsyncClient(limits=limits, transport=self.transport)
        yield _WithTimeout(self._http, timeout)  # type: ignore[misc]

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
            self.workers[url] = Worker(url, static=False)
        for url, worker in list(self.workers.items()):
            if not worker.static and url not in found and worker.inflight == 0:
                del self.workers[url]

    async def check(self, worker: Worker) -> None:
        if worker.url == EMBEDDED and self.embedded is not None:
            state = self.embedded.health()
            worker.healthy, worker.error = True, ""
            worker.admitted = state["admitted"]
            worker.driver = state["driver"]
            worker.sandboxes = int(state["sandboxes"].get("sandboxes", 0))
            worker.checked_at = time.monotonic()
            return
        try:
            async with self._client(timeout=3) as client:
                reply = await client.get(f"{worker.url}/health")
            body = reply.json() if reply.status_code == 200 else {}
            worker.healthy = reply.status_code == 200
            worker.error = "" if worker.healthy else f"/health answered {reply.status_code}"
            worker.admitted = int(body.get("admitted", 0))
            worker.driver = str(body.get("driver") or "")
            boxes = body.get("sandboxes", {})
            worker.sandboxes = int(boxes.get("sandboxes", 0)) if isinstance(boxes, dict) else 0
        except (httpx.HTTPError, ValueError) as exc:
            worker.healthy, worker.error = False, f"{type(exc).__name__}: {exc}"
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
        if self.embedded is not None:
            await self.embedded.start()
        await self.check_all()
        self._task = asyncio.create_task(self._health_loop(), name="worker-health")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self.embedded is not None:
            await self.embedded.close()

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

    # -- calls -------------------------------------------------------------------------
    async def get_json(self, path: str, request_id: str) -> Any:
        """A read-only call (languages, runtimes) to the least-loaded healthy worker."""
        for worker in self.healthy():
            if worker.url == EMBEDDED and self.embedded is not None:
                return self.embedded.get_json(path)
            try:
                async with self._client(timeout=10) as client:
                    reply = await client.get(
                        f"{worker.url}{path}", headers={REQUEST_ID_HEADER: request_id}
                    )
                if reply.status_code == 200:
                    return reply.json()
            except (httpx.HTTPError, ValueError) as exc:
                worker.healthy, worker.error = False, str(exc)
        raise CapacityError("no healthy worker; retry later", retry_after=2, status_code=503)

    async def execute(
        self,
        payload: dict[str, Any],
        request_id: str,
        on_send: OnSend | None = None,
        job: Job | None = None,
    ) -> ExecutionResponse | Lost:
        """Run a native request on some worker (see the module docstring for the rules).
        ``job``: the payload already validated, which the embedded worker then uses."""
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
            if outcome is None:
                refused.add(worker.url)
                continue
            return outcome

    async def _send(
        self,
        worker: Worker,
        payload: dict[str, Any],
        request_id: str,
        on_send: OnSend | None,
        job: Job | None = None,
    ) -> ExecutionResponse | Lost | None:
        """One attempt; None when the worker refused before starting the job."""
        if on_send is not None:
            await on_send(worker.url, True)
        refused = await self._post(worker, payload, request_id, job)
        if refused is None and on_send is not None:
            await on_send(worker.url, False)
        return refused

    async def _post(
        self, worker: Worker, payload: dict[str, Any], request_id: str, job: Job | None = None
    ) -> ExecutionResponse | Lost | None:
        if worker.url == EMBEDDED and self.embedded is not None:
            worker.inflight += 1
            try:
                answer = await self.embedded.execute(payload, request_id, job)
            finally:
                worker.inflight -= 1
            if answer is None:  # full: as a worker's 429
                worker.admitted = max(worker.admitted, self.settings.max_concurrent_requests)
            return answer
        worker.inflight += 1
        try:
            async with self._client(timeout=self.settings.worker_timeout_seconds) as client:
                reply = await client.post(
                    f"{worker.url}/api/v1/execute",
                    json=payload,
                    headers={REQUEST_ID_HEADER: request_id},
                )
        except (
            httpx.ConnectError,
            httpx.ConnectTimeout,
            httpx.WriteError,
            httpx.PoolTimeout,
        ) as exc:
            worker.healthy, worker.error = False, f"{type(exc).__name__}: {exc}"
            log.warning("worker %s refused the job before it started: %s", worker.url, exc)
            return None
        except httpx.HTTPError as exc:
            worker.healthy, worker.error = False, f"{type(exc).__name__}: {exc}"
            log.error("worker %s went away during a job: %s", worker.url, exc)
            return Lost(worker.url, f"{type(exc).__name__}: {exc}".rstrip(": "))
        finally:
            worker.inflight -= 1
        if reply.status_code == 200:
            try:
                return ExecutionResponse.model_validate(reply.json())
            except ValueError as exc:
                return Lost(worker.url, f"unreadable answer: {exc}")
        if reply.status_code == 429 or (
            reply.status_code == 503 and "retry-after" in reply.headers
        ):
            worker.admitted = max(worker.admitted, self.settings.max_concurrent_requests)
            return None
        if reply.status_code >= 500 and reply.status_code != 503:
            return Lost(worker.url, f"it answered {reply.status_code}: {reply.text[:200]}")
        raise _worker_error(reply)


def _worker_error(reply: httpx.Response) -> TVMError:
    """A worker's non-capacity error, as the same error from the gateway."""
    try:
        message = str(reply.json().get("message", reply.text))
    except ValueError:
        message = reply.text or f"worker answered {reply.status_code}"
    if reply.status_code == 503:
        return ImageNotBuilt(message)
    error = RequestError(message)
    error.status_code = reply.status_code
    return error


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
