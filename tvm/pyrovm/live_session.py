"""The worker's side of a live sandbox's channel (see ``agent/live.py``).

After the one ``live`` request, the agent answers requests by ``id`` and
sends events whenever they happen; one reader task per sandbox sorts the
frames: replies to the request waiting for them, a process's events to its
:class:`ProcessRecord` (which fans them out to everyone attached), a code
cell's output to its request's queue.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from tvm.errors import AgentError, LiveOperationError, SandboxEnded
from tvm.pyrovm.agent import protocol
from tvm.pyrovm.drivers.base import Sandbox
from tvm.pyrovm.drivers.channel import Channel

log = logging.getLogger("tvm.pyrovm.live")

# Ended processes whose end an attach may still ask for.
KEPT_ENDED = 64
# Output kept for a process nobody has attached to yet; older output is dropped.
BACKLOG_BYTES = 16 << 20


@dataclass(frozen=True)
class ProcessEnd:
    exit_code: int  # negative: killed by that signal
    signal: str | None

    @property
    def status(self) -> str:
        """As a Go process state prints itself (what E2B's daemon reports)."""
        if self.signal:
            return f"signal: {self.signal.removeprefix('SIG').lower()}"
        return f"exit status {self.exit_code}"


@dataclass(frozen=True)
class Output:
    stream: str  # "stdout" | "stderr"
    data: bytes


ProcessEvent = Output | ProcessEnd


@dataclass(frozen=True)
class WatchEvent:
    name: str  # below the watched directory
    op: str  # create | write | remove | rename | chmod


@dataclass
class ProcessRecord:
    pid: int
    config: dict[str, Any]
    end: ProcessEnd | None = None
    watchers: list[asyncio.Queue[ProcessEvent]] = field(default_factory=list)
    # What came before anyone attached (its starter attaches right after the
    # start, but the first output may be read before it does).
    backlog: list[ProcessEvent] | None = field(default_factory=list)
    backlog_bytes: int = 0

    def attach(self) -> asyncio.Queue[ProcessEvent]:
        queue: asyncio.Queue[ProcessEvent] = asyncio.Queue()
        backlog, self.backlog = self.backlog, None
        if backlog is not None:  # the end too, if it came
            for event in backlog:
                queue.put_nowait(event)
        elif self.end is not None:
            queue.put_nowait(self.end)
        if self.end is None:
            self.watchers.append(queue)
        return queue

    def detach(self, queue: asyncio.Queue[ProcessEvent]) -> None:
        with contextlib.suppress(ValueError):
            self.watchers.remove(queue)

    def publish(self, event: ProcessEvent) -> None:
        if isinstance(event, ProcessEnd):
            self.end = event
        if self.backlog is not None:
            self.backlog.append(event)
            self.backlog_bytes += len(event.data) if isinstance(event, Output) else 0
            while self.backlog_bytes > BACKLOG_BYTES:
                oldest = self.backlog.pop(0)
                self.backlog_bytes -= len(oldest.data) if isinstance(oldest, Output) else 0
        for queue in self.watchers:
            queue.put_nowait(event)
        if self.end is not None:
            self.watchers.clear()


class LiveSession:
    """A live agent conversation over a started sandbox's channel.

    Live mode changes the conversation's shape (many requests open at once,
    events at any time), so it takes the sandbox's channel over from its
    :class:`~tvm.pyrovm.drivers.session.AgentSession`, which is marked as
    such and refuses any further request."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        if sandbox.session is None or sandbox.session.broken is not None:
            raise AgentError(f"{sandbox.driver} sandbox has no usable agent channel")
        self.channel: Channel = sandbox.session.channel
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.cell_output: dict[int, asyncio.Queue[Output]] = {}
        self.watch_events: dict[int, asyncio.Queue[WatchEvent | None]] = {}  # None: it ended
        self.processes: dict[int, ProcessRecord] = {}
        self.starting: dict[int, dict[str, Any]] = {}  # request id -> config
        self.write_lock = asyncio.Lock()
        self.reader: asyncio.Task[None] | None = None
        self.closed: str | None = None  # why, once the channel is gone
        self.ended_watches: set[int] = set()  # watches the agent ended on its own

    async def open(self, home: str, env: dict[str, str], limits: dict[str, int]) -> None:
        message = {"type": "live", "home": home, "env": env, "limits": limits}
        assert self.sandbox.session is not None
        self.sandbox.session.broken = "taken over by live mode"
        try:
            await self.channel.send(protocol.encode(message))
            reply = await self._read_frame()
        except (OSError, EOFError, asyncio.IncompleteReadError, protocol.ProtocolError) as exc:
            raise AgentError(f"agent did not enter live mode: {exc}") from exc
        if reply.get("type") != "ok":
            raise AgentError(f"agent refused live mode: {reply.get('message', reply)}")
        self.reader = asyncio.create_task(self._read_forever())

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.reader
        self._fail("the sandbox was closed")

    # -- requests ---------------------------------------------------------------
    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """One operation; its reply, or :class:`LiveOperationError`."""
        rid, future = await self._send(op, fields)
        try:
            return await future
        finally:
            self.pending.pop(rid, None)

    async def start_process(self, config: dict[str, Any]) -> ProcessRecord:
        rid = next(self.ids)
        self.starting[rid] = config
        try:
            reply = await self._send_as(rid, "proc_start", config)
        finally:
            self.starting.pop(rid, None)
        return self.processes[int(reply["pid"])]

    async def run_cell(self, fields: dict[str, Any]) -> AsyncIterator[Output | dict[str, Any]]:
        """A code cell's output as it comes, then its reply (a dict)."""
        rid = next(self.ids)
        queue: asyncio.Queue[Output] = asyncio.Queue()
        self.cell_output[rid] = queue
        task = asyncio.ensure_future(self._send_as(rid, "ctx_exec", fields))
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    yield getter.result()
                    continue
                getter.cancel()
                while not queue.empty():
                    yield queue.get_nowait()
                yield task.result()
                return
        finally:
            self.cell_output.pop(rid, None)
            if not task.done():
                task.cancel()

    async def watch(self, path: str, recursive: bool) -> AsyncGenerator[WatchEvent | str, None]:
        """A directory watch (by inotify in the agent): first the watched path,
        then its events as they happen; ends when the watch or the sandbox does
        (or when the caller stops iterating: the watch is then stopped)."""
        ident = next(self.ids)
        queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue()
        self.watch_events[ident] = queue
        try:
            reply = await self.request("watch_start", watch=ident, path=path, recursive=recursive)
            yield str(reply["path"])
            while (event := await queue.get()) is not None:
                yield event
        finally:
            self.watch_events.pop(ident, None)
            if not self.closed and ident not in self.ended_watches:
                # In a task of its own: it must go out even when the caller was cancelled.
                stop = asyncio.ensure_future(self.request("watch_stop", watch=ident))
                stop.add_done_callback(lambda task: task.cancelled() or task.exception())
            self.ended_watches.discard(ident)

    async def _send_as(self, rid: int, op: str, fields: dict[str, Any]) -> dict[str, Any]:
        future = await self._send(op, fields, rid)
        try:
            return await future[1]
        finally:
            self.pending.pop(rid, None)

    async def _send(
        self, op: str, fields: dict[str, Any], rid: int | None = None
    ) -> tuple[int, asyncio.Future[dict[str, Any]]]:
        if self.closed:
            raise SandboxEnded(f"the live sandbox has ended: {self.closed}")
        rid = next(self.ids) if rid is None else rid
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[rid] = future
        frame = protocol.encode({**fields, "type": "call", "id": rid, "op": op})
        try:
            async with self.write_lock:
                await self.channel.send(frame)
        except (OSError, EOFError) as exc:
            self.pending.pop(rid, None)
            raise SandboxEnded(f"the live sandbox has ended: its channel failed: {exc}") from exc
        return rid, future

    # -- the reader ---------------------------------------------------------------
    async def _read_frame(self) -> dict[str, Any]:
        header = await self.channel.recv(4)
        return protocol.decode_body(await self.channel.recv(protocol.decode_header(header)))

    async def _read_forever(self) -> None:
        why = "the agent hung up"
        try:
            while True:
                frame = await self._read_frame()
                try:
                    self._dispatch(frame)
                except (KeyError, TypeError, ValueError) as exc:
                    log.warning("live agent sent a frame out of protocol: %s: %r", exc, frame)
        except (OSError, EOFError, asyncio.IncompleteReadError, protocol.ProtocolError) as exc:
            why = f"the agent's channel ended: {exc}"
        finally:
            self._fail(why)

    def _dispatch(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "event":
            self._event(frame)
            return
        rid = int(frame.get("id") or 0)
        future = self.pending.get(rid)
        if kind == "reply" and rid in self.starting:
            # Registered before the caller hears of it: the agent sends the
            # process's events only after this reply.
            pid = int(frame["pid"])
            self.processes[pid] = ProcessRecord(pid, self.starting[rid])
            self._forget_ended()
        if future is None or future.done():
            return
        if kind == "reply":
            future.set_result(frame)
        else:
            code = str(frame.get("code", "internal"))
            future.set_exception(LiveOperationError(code, str(frame.get("message", frame))))

    def _event(self, frame: dict[str, Any]) -> None:
        if "watch" in frame:
            ident = int(frame["watch"])
            watch = self.watch_events.get(ident)
            if watch is not None and frame["kind"] == "end":
                self.ended_watches.add(ident)
                watch.put_nowait(None)
            elif watch is not None:
                watch.put_nowait(WatchEvent(str(frame["name"]), str(frame["op"])))
            return
        if "pid" in frame:
            record = self.processes.get(int(frame["pid"]))
            if record is None:
                return
            if frame["kind"] == "end":
                record.publish(ProcessEnd(int(frame["exit_code"]), frame.get("signal")))
            else:
                record.publish(Output(frame["kind"], base64.b64decode(frame["data"])))
            return
        queue = self.cell_output.get(int(frame.get("id") or 0))
        if queue is not None:
            queue.put_nowait(Output(frame["kind"], base64.b64decode(frame["data"])))

    def _forget_ended(self) -> None:
        ended = [pid for pid, rec in self.processes.items() if rec.end is not None]
        for pid in ended[: max(0, len(ended) - KEPT_ENDED)]:
            del self.processes[pid]

    def _fail(self, why: str) -> None:
        if self.closed:
            return
        self.closed = why
        for future in self.pending.values():
            if not future.done():
                future.set_exception(SandboxEnded(f"the live sandbox ended during the call: {why}"))
        for record in self.processes.values():
            if record.end is None:
                record.publish(ProcessEnd(-9, "SIGKILL"))
        for watch in self.watch_events.values():
            watch.put_nowait(None)

    def running(self) -> list[ProcessRecord]:
        return [rec for rec in self.processes.values() if rec.end is None]
