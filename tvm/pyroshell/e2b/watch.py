"""Directory watches for E2B's ``filesystem.Filesystem`` service: the
``WatchDir`` stream (the async SDK) and ``CreateWatcher`` /
``GetWatcherEvents`` / ``RemoveWatcher`` (the sync SDK).

A watch polls the directory's listing in the sandbox (:data:`POLL_SECONDS`)
and reports what changed since the last look: a new entry as
``EVENT_TYPE_CREATE`` (and ``EVENT_TYPE_WRITE`` when it already has content),
a changed size or time as ``EVENT_TYPE_WRITE``, a gone one as
``EVENT_TYPE_REMOVE``. It works the same on every driver; changes made and
undone between two looks are not seen. A watch ends with its sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from tvm.errors import LiveOperationError, TVMError
from tvm.pyrovm.live import LiveSandbox

POLL_SECONDS = 0.2
DEEP = 32  # how deep a recursive watch looks
MAX_PENDING = 10000  # events a watcher keeps until they are fetched

Snapshot = dict[str, tuple[str, int, float]]


async def snapshot(live: LiveSandbox, path: str, recursive: bool) -> tuple[str, Snapshot]:
    root = await live.session.request("stat", path=path)
    if root["entry"]["type"] != "dir":
        raise LiveOperationError("invalid", f"path: {path} is not a directory")
    base = str(root["entry"]["path"]).rstrip("/") + "/"
    reply = await live.session.request("list", path=path, depth=DEEP if recursive else 1)
    found = {
        e["path"].removeprefix(base): (e["type"], int(e["size"]), float(e["mtime"]))
        for e in reply["entries"]
    }
    return base, found


def changes(before: Snapshot, after: Snapshot) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for name, (kind, size, mtime) in after.items():
        old = before.get(name)
        if old is None:
            events.append({"name": name, "type": "EVENT_TYPE_CREATE"})
            if kind == "file" and size:
                events.append({"name": name, "type": "EVENT_TYPE_WRITE"})
        elif kind == "file" and (old[1], old[2]) != (size, mtime):
            events.append({"name": name, "type": "EVENT_TYPE_WRITE"})
    events += [{"name": n, "type": "EVENT_TYPE_REMOVE"} for n in before if n not in after]
    return events


async def watch(
    live: LiveSandbox, path: str, recursive: bool
) -> AsyncIterator[list[dict[str, Any]]]:
    """The changes under ``path``, one batch per look; ends when the sandbox does."""
    _, last = await snapshot(live, path, recursive)
    yield []  # the watch is set up
    while True:
        await asyncio.sleep(POLL_SECONDS)
        try:
            _, now = await snapshot(live, path, recursive)
        except LiveOperationError:  # the directory itself went away
            now = {}
        except TVMError:
            return
        found = changes(last, now)
        last = now
        if found:
            yield found


@dataclass
class Watcher:
    sandbox_id: str
    task: asyncio.Task[None] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)


class Watchers:
    """The sync SDK's watchers: polled in the background, fetched on request."""

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
