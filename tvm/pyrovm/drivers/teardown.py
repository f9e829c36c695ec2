"""Teardown that always runs to its end and never fails the caller.

A sandbox's ``destroy()`` marks it destroyed first (so that it is safe to call
twice), then kills and removes what it made. If the task running it is
cancelled half-way (a client gone, a timeout, shutdown: under load several at
once), the rest would never run and processes, cgroups or temp dirs would be
left on the host. :func:`finish` runs the teardown in a task of its own,
shielded from the caller's cancellation, waits for it to end even when
cancelled, and only then lets the cancellation through. Errors of the
teardown are logged, never raised into the request it ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("tvm.pyrovm.teardown")

# Strong references: a teardown task must not be collected while it runs.
_running: set[asyncio.Task[None]] = set()


async def _guarded(coro: Coroutine[Any, Any, None], what: str) -> None:
    try:
        await coro
    except Exception:
        log.exception("teardown of %s failed", what)


async def finish(coro: Coroutine[Any, Any, None], what: str) -> None:
    """Run ``coro`` (a teardown) to its end; see the module docstring."""
    guarded = _guarded(coro, what)
    task = asyncio.ensure_future(guarded)
    _running.add(task)

    def done(task: asyncio.Task[None]) -> None:
        _running.discard(task)
        # Cancelled before it ever ran (the loop shutting down): nothing to await.
        guarded.close()
        coro.close()

    task.add_done_callback(done)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
