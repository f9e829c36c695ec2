"""Runs stored submissions: the queue's consumer, callbacks and retention.

* A loop claims queued submissions (oldest first) while fewer than
  ``dispatcher_concurrency`` run, and runs each on a worker; ``notify()`` wakes it
  at once after an insert, and it also polls every second (other replicas).
* :meth:`Dispatcher.run` is also what ``wait=true`` uses, so both paths share
  one way of running a submission and storing its result.
* When no worker takes a job within ``dispatch_wait_seconds`` the submission goes
  back to the queue (it was never sent, so re-running it is safe).
* ``callback_url`` gets Judge0's PUT (the default fields, base64) through
  :mod:`~tvm.pyroshell.outbound` (which decides where it may go). As under
  Judge0, only a connection failure or a timeout is tried again, up to
  ``callback_max_tries`` times with exponential backoff; any HTTP answer ends
  the delivery. The delivery state is stored, and deliveries still pending at a
  restart are sent again.
* Finished submissions older than ``retention_hours`` are deleted hourly.
* Every claim is a lease (:mod:`tvm.pyroshell.leases`): renewed while the
  submission runs, taken over by another replica (or this one after a restart)
  when it expires, so an interrupted execution runs again, at most
  ``max_attempts`` times in all, and its result is stored once. A job whose
  worker went away mid-run is run again the same way.
* On SQLite the dispatcher first takes the database's one-gateway lock
  (:mod:`tvm.pyroshell.replica`).
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

from tvm.api import ExecutionResponse
from tvm.compat import judge0_result as results
from tvm.compat.judge0_status import Status
from tvm.config.catalog import Catalog
from tvm.config.settings import Settings
from tvm.errors import CapacityError, DestinationRefused, TVMError, Unreachable
from tvm.pyroshell.leases import Claim, Leases
from tvm.pyroshell.outbound import OutboundPolicy
from tvm.pyroshell.replica import SingleGateway, replica_id
from tvm.pyroshell.store import CALLBACK_DONE, CALLBACK_FAILED, QUEUED, Store
from tvm.pyroshell.workers import Lost, WorkerPool
from tvm.utils import metrics
from tvm.utils.web import new_request_id

log = logging.getLogger("tvm.gateway.dispatcher")


def interrupted_message(attempts: int, reason: str) -> str:
    return (f"this submission was interrupted {attempts} time(s) ({reason}); it is not run "
            "again (max_attempts)")  # fmt: skip


JANITOR_SECONDS = 3600.0
POLL_SECONDS = 1.0


def outcome_of(response: ExecutionResponse | Lost) -> str:
    return "internal_error" if isinstance(response, Lost) else response.status


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        pool: WorkerPool,
        catalog: Catalog,
        outbound: OutboundPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.outbound = outbound or OutboundPolicy.from_settings(settings)
        self.store = store
        self.pool = pool
        self.catalog = catalog
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[Any]] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self.leases = Leases(
            store, replica_id(settings), settings.lease_seconds, settings.max_attempts
        )
        self._single = SingleGateway(store.url) if store.dialect == "sqlite" else None
        self._callbacks_at = 0.0

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        if self._single is not None:
            self._single.acquire()
        released = await self.leases.release_own(everyone=self._single is not None)
        if released:
            log.warning("taking back %d submission(s) an earlier run of this gateway held",
                        released)  # fmt: skip
        self._loop_task = asyncio.create_task(self._loop(), name="dispatcher")
        self._spawn(self._janitor())
        self._spawn(self._renewer())

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
        try:  # what was cancelled is free for another replica now, not in lease_seconds
            await self.leases.release_own()
        except Exception:
            log.exception("could not release this gateway's leases; they expire by themselves")
        if self._single is not None:
            self._single.release()

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
                claims = await self.leases.claim(free)
                for claim in claims:
                    task = asyncio.create_task(self._run_claimed(claim))
                    self._running.add(task)
                    task.add_done_callback(self._running.discard)
                await self._orphaned_callbacks()
                metrics.SUBMISSIONS_RUNNING.set(len(self._running))
                metrics.QUEUE_DEPTH.set(await self.store.count((QUEUED,)))
                if claims and len(claims) == free:
                    continue
            except Exception:  # the loop must survive a database hiccup
                log.exception("dispatcher round failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)

    async def _run_claimed(self, claim: Claim) -> None:
        try:
            if claim.exhausted:
                message = interrupted_message(claim.row["attempts"], "its gateway stopped")
                await self._store_result(claim.row, results.internal_error(message))
            else:
                await self.run(claim.row)
        finally:
            self.notify()  # a slot is free

    async def _orphaned_callbacks(self) -> None:
        """Now and then: deliver callbacks a dead replica (or an earlier run) left."""
        if time.monotonic() - self._callbacks_at < self.settings.lease_seconds / 3:
            return
        self._callbacks_at = time.monotonic()
        for row in await self.leases.claim_callbacks():
            self._spawn(self._callback(row))

    async def _renewer(self) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_seconds / 3)
            try:
                await self.leases.renew()
            except Exception:  # a missed renewal is retried; the lease outlasts two
                log.exception("lease renewal failed")

    async def run(self, row: dict[str, Any]) -> dict[str, Any] | None:
        """Run one Processing submission; store and return its Judge0 result (None when it
        went back to the queue because no worker was free, or another replica has it)."""
        if row.get("lease_owner") != self.leases.owner:
            taken = await self.leases.take(row)
            if taken is None:
                return None
            row = taken
        params, native = row["params"], row["native"]
        attempts = int(row["attempts"])
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
                while isinstance(response, Lost):
                    again = await self.leases.retry(row["id"])
                    if again is None:
                        break
                    attempts = again
                    log.warning("worker %s went away during submission %s; running it "
                                "again (attempt %d)", response.worker, row["token"],
                                attempts)  # fmt: skip
                    response = await self.pool.execute(native, request_id, on_send)
                outcome = outcome_of(response)
                if isinstance(response, Lost):
                    reason = f"the worker {response.worker} went away: {response.reason}"
                    runs.append(results.internal_error(interrupted_message(attempts, reason)))
                    break
                runs.append(results.one_run(response, params))
                if runs[-1]["status_id"] != Status.ACCEPTED:
                    break
            result = results.average(runs)
        except CapacityError as exc:
            if not dispatched:
                log.info("no worker free for %s; back to the queue", row["token"])
                await self.leases.requeue(row["id"])
                await asyncio.sleep(1)
                return None
            result = results.internal_error(exc.message)
        except TVMError as exc:
            result = results.internal_error(exc.message)
        except Exception as exc:  # never leave a submission in Processing
            log.exception("submission %s failed in the gateway", row["token"])
            result = results.internal_error(f"gateway error: {type(exc).__name__}: {exc}")
        result["attempts"] = attempts
        language = str(native["language"])
        metrics.EXECUTIONS.labels(language, outcome).inc()
        metrics.EXECUTION_LATENCY.labels(language).observe(time.perf_counter() - started)
        return result if await self._store_result(row, result) else None

    async def _store_result(self, row: dict[str, Any], result: dict[str, Any]) -> bool:
        """Store the result (once: only while this replica holds the row) and send the
        callback; False when another replica took the row meanwhile."""
        result.setdefault("attempts", row["attempts"])
        callback = bool(row["params"].get("callback_url"))
        if not await self.leases.finish(row["id"], result, callback=callback):
            return False
        if callback:
            stored = await self.store.get(row["token"])
            if stored is not None:
                self._spawn(self._callback(stored))
        return True

    # -- callbacks and retention -------------------------------------------------------------
    async def _callback(self, row: dict[str, Any]) -> None:
        url = row["params"]["callback_url"]
        attrs = results.attributes(row, self.catalog)
        body = json.dumps(results.render(attrs, results.DEFAULT_FIELDS, base64_encoded=True))
        delivered = await deliver(self.outbound, url, body, tries=self.settings.callback_max_tries)
        metrics.CALLBACKS.labels("delivered" if delivered else "failed").inc()
        await self.leases.callback_settled(
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
    outbound: OutboundPolicy, url: str, body: str, tries: int, sleep: Sleep = asyncio.sleep
) -> bool:
    """Judge0's callback: PUT the JSON. A connection failure or timeout is tried again,
    waiting 0.5 s, 1 s, 2 s, ... (at most 30 s) between tries; a destination the
    outbound policy refuses is never tried."""
    headers = {"Content-Type": "application/json"}
    for attempt in range(tries):
        try:
            status = await outbound.send("PUT", url, body.encode(), headers)
            log.info("callback %s answered %d", url, status)
            return True
        except DestinationRefused as exc:
            log.warning("callback %s refused: %s", url, exc.message)
            return False
        except Unreachable as exc:
            log.warning("callback %s failed (try %d of %d): %s", url, attempt + 1, tries, exc)
        if attempt + 1 < tries:
            await sleep(min(0.5 * 2**attempt, 30.0))
    return False
