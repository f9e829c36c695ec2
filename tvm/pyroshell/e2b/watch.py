"""Directory watches for E2B's ``filesystem.Filesystem`` service: the
``WatchDir`` stream (the async SDK) and ``CreateWatcher`` /
``GetWatcherEvents`` / ``RemoveWatcher`` (the sync SDK).

Each is an inotify watch in the sandbox's agent
(:mod:`tvm.pyrovm.agent.live_watch`): events come as they happen, as E2B's
``EVENT_TYPE_CREATE`` / ``WRITE`` / ``REMOVE`` / ``RENAME`` / ``CHMOD``. A
watch ends with its directory or its sandbox; at most 16 per sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from tvm.errors import LiveOperationError
from tvm.pyrovm.live import LiveSandbox
from tvm.pyrovm.live_session import WatchEvent

MAX_PENDING = 10000  # events a watcher keeps until they are fetched
TYPES = {"create": "EVENT_TYPE_CREATE", "write": "EVENT_TYPE_WRITE",
         "remove": "EVENT_TYPE_REMOVE", "rename": "EVENT_TYPE_RENAME",
         "chmod": "EVENT_TYPE_CHMOD"}  # fmt: skip


async def watch(
    live: LiveSandbox, path: str, recursive: bool
) -> AsyncIterator[list[dict[str, Any]]]:
    """``[]`` once the watch is set up (a bad path fails before), then its
    events as they come; ends when the watch or the sandbox does."""
    stream = live.session.watch(path, recursive)
    try:
        await anext(stream)
        yield []
        async for event in stream:
            if isinstance(event, WatchEvent):
                yield [{"name": event.name, "type": TYPES[event.op]}]
    finally:
        await stream.aclose()


@dataclass
class Watcher:
    sandbox_id: str
    task: asyncio.Task[None] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)


class Watchers:
    """The sync SDK's watchers: collected in the background, fetched on request."""

    def __init__(self) -> None:
        self.watchers: dict[str, Watcher] = {}

    async def create(self, live: LiveSandbox, path: str, recursive: bool) -> str:
        stream = watch(live, path, recursive)
        await anext(stream)  # a bad path fails here, in the request
        for old in [k for k, w in self.watchers.items() if w.task and w.task.done()]:
            del self.watchers[old]  # their sandbox ended
        ident = secrets.token_hex(8)
        watcher = Watcher(live.id)

        async def collect() -> None:
            async for batch in stream:
                watcher.events = (watcher.events + batch)[-MAX_PENDING:]

        watcher.task = asyncio.create_task(collect())
        self.watchers[ident] = watcher
        return ident

    def take(self, live: LiveSandbox, ident: str) -> list[dict[str, Any]]:
        watcher = self._get(live, ident)
        events, watcher.events = watcher.events, []
        return events

    async def remove(self, live: LiveSandbox, ident: str) -> None:
        watcher = self._get(live, ident)
        del self.watchers[ident]
        if watcher.task is not None:
            watcher.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher.task

    def _get(self, live: LiveSandbox, ident: str) -> Watcher:
        watcher = self.watchers.get(ident)
        if watcher is None or watcher.sandbox_id != live.id:
            raise LiveOperationError("not_found", f"watcher {ident} not found")
        return watcher
