"""Runs stored submissions: the queue's consumer, callbacks and retention.

* A loop claims queued submissions (oldest first) while fewer than
  ``dispatcher_concurrency`` run, and runs each on a worker; ``notify()`` wakes it
  at once after an insert, and it also polls every second (other replicas).
* :meth:`Dispatcher.run` is also what ``wait=true`` uses, so both paths share
  one way of running a submission and storing its result.
* When no worker takes a job within ``dispatch_wait_seconds`` the submission goes
  back to the queue (it was never sent, so re-running it is safe).
* ``callback_url`` gets Judge0's PUT (the default fields, base64), tried up to
  ``callback_max_tries`` times with exponential backoff; the delivery state is
  stored, and deliveries still pending at a restart are sent again.
* Finished submissions older than ``retention_hours`` are deleted hourly.
* At start, :meth:`~tvm.pyroshell.store.Store.recover` settles what a previous
  run of the gateway left in Processing (rule in ``store.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from tvm.api import ExecutionResponse
from tvm.compat import judge0_result as results
from tvm.compat.judge0 import ACCEPTED
from tvm.config.catalog import Catalog
from tvm.config.settings import Settings
from tvm.errors import CapacityError, TVMError
from tvm.pyroshell.store import CALLBACK_DONE, CALLBACK_FAILED, QUEUED, Store
from tvm.pyroshell.workers import Lost, WorkerPool, lost_response
from tvm.utils import metrics
from tvm.utils.web import new_request_id

log = logging.getLogger("tvm.gateway.dispatcher")

RECOVERED_MESSAGE = (
    "the gateway restarted while this submission was running on a worker; whether it "
    "finished is unknown, so it was not run again (to never run it twice)"
)
JANITOR_SECONDS = 3600.0
POLL_SECONDS = 1.0


def outcome_of(response: ExecutionResponse | Lost) -> str:
    return "internal_error" if isinstance(response, Lost) else response.status


class Dispatcher:
    def __init__(
        self, settings: Settings, store: Store, pool: WorkerPool, catalog: Catalog
    ) -> None:
        self.settings = settings
        self.store = store
        self.pool = pool
        self.catalog = catalog
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[Any]] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._loop_task: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        requeued, failed = await self.store.recover(results.internal_error(RECOVERED_MESSAGE))
        if requeued or failed:
            log.warning("recovered after restart: %d requeued, %d ended as internal_error",
                        requeued, failed)  # fmt: skip
        for row in await self.store.pending_callbacks():
            self._spawn(self._callback(row))
        self._loop_task = asyncio.create_task(self._loop(), name="dispatcher")
        self._spawn(self._janitor())

    async def close(self, grace: float = 10.0) -> None:
        """Stop claiming; let running submissions finish for up to ``grace`` seconds."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._running:
            await asyncio.wait(self._running, timeout=grace)
        for task in self._running | self._background:
            task.cancel()
        await asyncio.gather(*self._running, *self._background, return_exceptions=True)

    def notify(self) -> None:
        self._wake.set()

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # -- the queue -------------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            try:
                free = self.settings.dispatcher_concurrency - len(self._running)
                rows = await self.store.claim(free)
                for row in rows:
                    task = asyncio.create_task(self._run_claimed(row))
                    self._running.add(task)
                    task.add_done_callback(self._running.discard)
                metrics.SUBMISSIONS_RUNNING.set(len(self._running))
                metrics.QUEUE_DEPTH.set(await self.store.count((QUEUED,)))
                if rows and len(rows) == free:
                    continue
            except Exception:  # the loop must survive a database hiccup
                log.exception("dispatcher round failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)

    async def _run_claimed(self, row: dict[str, Any]) -> None:
        try:
            await self.run(row)
        finally:
            self.notify()  # a slot is free

    async def run(self, row: dict[str, Any]) -> dict[str, Any] | None:
        """Run one Processing submission; store and return its Judge0 result (None when it
        went back to the queue because no worker was free)."""
        params, native = row["params"], row["native"]
        request_id = row.get("request_id") or new_request_id()
        started = time.perf_counter()
        dispatched = False  # True once some worker may have started it

        async def on_send(worker: str, sent: bool) -> None:
            nonlocal dispatched
            if sent and not dispatched:
                await self.store.mark_dispatched(row["id"], worker)
                dispatched = True
            elif not sent and not runs:
                await self.store.mark_dispatched(row["id"], None)
                dispatched = False

        runs: list[dict[str, Any]] = []
        outcome = "internal_error"
        try:
            for _ in range(int(params.get("number_of_runs", 1))):
                response = await self.pool.execute(native, request_id, on_send)
                outcome = outcome_of(response)
                if isinstance(response, Lost):
                    lost = lost_response(response, native["language"], native.get("version", ""))
                    runs.append(results.internal_error(lost.message or ""))
                    break
                runs.append(results.one_run(response, params))
                if runs[-1]["status_id"] != ACCEPTED:
                    break
            result = results.average(runs)
        except CapacityError as exc:
            if not dispatched:
                log.info("no worker free for %s; back to the queue", row["token"])
                await self.store.requeue(row["id"])
                await asyncio.sleep(1)
                return None
            result = results.internal_error(exc.message)
        except TVMError as exc:
            result = results.internal_error(exc.message)
        except Exception as exc:  # never leave a submission in Processing
            log.exception("submission %s failed in the gateway", row["token"])
            result = results.internal_error(f"gateway error: {type(exc).__name__}: {exc}")
        callback = bool(params.get("callback_url"))
        await self.store.finish(row["id"], result, callback=callback)
        language = str(native["language"])
        metrics.EXECUTIONS.labels(language, outcome).inc()
        metrics.EXECUTION_LATENCY.labels(language).observe(time.perf_counter() - started)
        if callback:
            stored = await self.store.get(row["token"])
            if stored is not None:
                self._spawn(self._callback(stored))
        return result

    # -- callbacks and retention -------------------------------------------------------------
    async def _callback(self, row: dict[str, Any]) -> None:
        url = row["params"]["callback_url"]
        attrs = results.attributes(row, self.catalog)
        body = json.dumps(results.render(attrs, results.DEFAULT_FIELDS, base64_encoded=True))
        delivered = await deliver(
            url,
            body,
            tries=self.settings.callback_max_tries,
            timeout=self.settings.callback_timeout_seconds,
        )
        metrics.CALLBACKS.labels("delivered" if delivered else "failed").inc()
        await self.store.set_callback_state(
            row["id"], CALLBACK_DONE if delivered else CALLBACK_FAILED
        )

    async def _janitor(self) -> None:
        while True:
            try:
                gone = await self.store.expire(dt.timedelta(hours=self.settings.retention_hours))
                if gone:
                    log.info("deleted %d submissions older than %g h", gone,
                             self.settings.retention_hours)  # fmt: skip
            except Exception:
                log.exception("retention sweep failed")
            await asyncio.sleep(JANITOR_SECONDS)


Sleep = Callable[[float], Awaitable[None]]


async def deliver(
    url: str, body: str, tries: int, timeout: float, sleep: Sleep = asyncio.sleep
) -> bool:
    """Judge0's callback: PUT the JSON; retry on a network error or a 5xx answer, waiting
    0.5 s, 1 s, 2 s, ... (at most 30 s) between tries."""
    headers = {"Content-Type": "application/json"}
    async with httpx.AsyncClient(timeout=timeout) as client:
        for attempt in range(tries):
            try:
                reply = await client.put(url, content=body, headers=headers)
                if reply.status_code < 500:
                    return True
                log.warning("callback %s answered %d (try %d)", url, reply.status_code, attempt + 1)
            except httpx.HTTPError as exc:
                log.warning("callback %s failed (try %d): %s", url, attempt + 1, exc)
            if attempt + 1 < tries:
                await sleep(min(0.5 * 2**attempt, 30.0))
    return False
