"""The host's agent session and the sandbox's own rules, over a real socket pair.

The far end is a small scripted agent (protocol frames, as the real agent
writes them); what is tested is the host side: typed replies, streamed
events, frames sent while a request is open, a conversation left out of step,
the one memory-limit rule and the once-only teardown.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tvm.config.catalog import StageLimits
from tvm.errors import AgentError
from tvm.pyrovm.agent import protocol
from tvm.pyrovm.drivers.base import HostResources, Sandbox, SandboxSpec
from tvm.pyrovm.drivers.channel import StreamChannel
from tvm.pyrovm.drivers.messages import Ping, Pong, Stage, StageReply, Stdin
from tvm.pyrovm.drivers.session import AgentSession

LIMITS = StageLimits(timeout_ms=1000, cpu_time_ms=1000, memory_mb=64, processes=8,
                     output_bytes=1000, file_size_kb=64, open_files=16)  # fmt: skip
SPEC = SandboxSpec(image="x", rootfs=Path("/x"), uid=60001)
Script = Callable[["FarEnd"], Awaitable[None]]


def result(stdout: bytes = b"", status: str = "ok", signal: str | None = None) -> dict[str, Any]:
    return {
        "type": "stage_result", "status": status, "exit_code": 0 if signal is None else None,
        "signal": signal, "stdout": base64.b64encode(stdout).decode(), "stderr": "",
        "output": base64.b64encode(stdout).decode(), "stdout_truncated": False,
        "stderr_truncated": False, "cpu_ms": 1, "wall_ms": 2, "memory_kb": 300,
    }  # fmt: skip


class FarEnd:
    """The agent's end of the socket pair."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def read(self) -> dict[str, Any]:
        header = await self.reader.readexactly(4)
        return protocol.decode_body(await self.reader.readexactly(protocol.decode_header(header)))

    async def send(self, frame: dict[str, Any]) -> None:
        self.writer.write(protocol.encode(frame))
        await self.writer.drain()

    def hang_up(self) -> None:
        self.writer.close()


async def pair(script: Script, cleanup: list[Any]) -> StreamChannel:
    """Our channel to a far end that runs ``script``."""
    ours, theirs = socket.socketpair()
    channel = await StreamChannel.over_socket(ours)
    far = FarEnd(*await asyncio.open_unix_connection(sock=theirs))
    cleanup += [channel, asyncio.create_task(script(far)), far]
    return channel


@pytest.fixture
async def cleanup() -> AsyncIterator[list[Any]]:
    held: list[Any] = []
    yield held
    for item in held:
        if isinstance(item, asyncio.Task):
            item.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await item
        elif isinstance(item, FarEnd):
            item.hang_up()
            with contextlib.suppress(OSError):
                await item.writer.wait_closed()
        else:
            await item.close()


async def test_a_stream_yields_events_takes_stdin_and_ends_with_a_typed_reply(
    cleanup: list[Any],
) -> None:
    seen: list[dict[str, Any]] = []

    async def agent(far: FarEnd) -> None:
        seen.append(await far.read())  # the stage request
        await far.send({"type": "event", "event": "stdout", "data": "b25l"})
        seen.append(await far.read())  # stdin sent mid-run
        await far.send({"type": "event", "event": "stdout", "data": "dHdv"})
        await far.send(result(b"onetwo"))

    channel = await pair(agent, cleanup)
    session = AgentSession(channel)
    request = Stage(name="run", argv=["cat"], stdin=b"", limits={})
    events = []
    async with session.stream(request, StageReply) as exchange:
        async for event in exchange:
            events.append((event.event, base64.b64decode(event.data["data"])))
            if len(events) == 1:
                await exchange.send(Stdin(b"two", eof=True))
    assert events == [("stdout", b"one"), ("stdout", b"two")]
    assert isinstance(exchange.reply, StageReply) and exchange.reply.stdout == b"onetwo"
    assert seen[0]["type"] == "stage" and seen[1] == {"type": "stdin", "data": "dHdv", "eof": True}


async def test_a_refusal_is_an_agent_error_and_the_session_goes_on(cleanup: list[Any]) -> None:
    async def agent(far: FarEnd) -> None:
        await far.read()
        await far.send({"type": "error", "message": "ValueError: empty argv"})
        await far.read()
        await far.send({"type": "pong"})

    channel = await pair(agent, cleanup)
    session = AgentSession(channel)
    with pytest.raises(AgentError, match="agent refused stage: ValueError: empty argv"):
        await session.call(Stage(name="run", argv=[], stdin=b"", limits={}), StageReply)
    assert await session.call(Ping(), Pong) == Pong()


async def test_leaving_a_request_unanswered_closes_the_session(cleanup: list[Any]) -> None:
    async def agent(far: FarEnd) -> None:
        await far.read()
        await far.send({"type": "event", "event": "started"})
        await asyncio.sleep(60)  # the reply would come much later

    channel = await pair(agent, cleanup)
    session = AgentSession(channel)
    async with session.stream(
        Stage(name="run", argv=["x"], stdin=b"", limits={}), StageReply
    ) as ex:
        async for event in ex:
            assert event.event == "started"
            break  # the caller goes away before the reply
    # Its late reply must never be read as the next request's.
    with pytest.raises(AgentError, match="left unanswered"):
        await session.call(Ping(), Pong)


async def test_a_reply_of_the_wrong_type_or_a_dead_channel_is_an_agent_error(
    cleanup: list[Any],
) -> None:
    async def agent(far: FarEnd) -> None:
        await far.read()
        await far.send({"type": "ok"})  # not what a ping gets
        await far.read()
        far.hang_up()

    channel = await pair(agent, cleanup)
    session = AgentSession(channel)
    with pytest.raises(AgentError, match="answered ping with"):
        await session.call(Ping(), Pong)
    with pytest.raises(AgentError, match="unusable"):
        await session.call(Ping(), Pong)


class Box(Sandbox):
    """A sandbox as a driver makes one: only the driver's part is its own."""

    driver = "box"

    def __init__(self, peak_kb: int | None = None) -> None:
        super().__init__(SPEC)
        self.kills = 0
        self.peak_kb = peak_kb
        self.teardowns = 0

    def oom_kills(self) -> int:
        return self.kills

    def peak_memory_kb(self) -> int | None:
        return self.peak_kb

    def host_resources(self) -> HostResources:
        return HostResources()

    async def _teardown(self) -> None:
        self.teardowns += 1
        await asyncio.sleep(0.01)  # a second destroy() arrives meanwhile


async def box_with(agent: Script, box: Box, cleanup: list[Any]) -> Box:
    box.attach(await pair(agent, cleanup))
    return box


async def test_a_sigkill_the_memory_limit_dealt_is_memory_limit(cleanup: list[Any]) -> None:
    box = Box(peak_kb=4096)

    async def agent(far: FarEnd) -> None:
        await far.read()
        box.kills += 1  # the host cgroup's OOM killer struck during the stage
        await far.send(result(status="signal", signal="SIGKILL"))
        await far.read()
        await far.send(result(b"fine"))

    await box_with(agent, box, cleanup)
    killed = await box.run_stage("run", ["x"], b"", LIMITS)
    assert killed.status == "memory_limit" and killed.memory_kb == 4096
    fine = await box.run_stage("run", ["x"], b"", LIMITS)  # no new OOM kill
    assert fine.status == "ok" and fine.stdout == b"fine"
    await box.destroy()


async def test_a_channel_the_memory_limit_killed_is_memory_limit(cleanup: list[Any]) -> None:
    box = Box()

    async def agent(far: FarEnd) -> None:
        await far.read()
        box.kills += 1  # gVisor: the OOM killer ended the Sentry, channel and all
        far.hang_up()

    await box_with(agent, box, cleanup)
    reply = await box.run_stage("run", ["x"], b"", LIMITS)
    assert reply.status == "memory_limit" and reply.signal == "SIGKILL"
    assert reply.stdout == b"" and reply.memory_kb == LIMITS.memory_mb << 10
    await box.destroy()


async def test_a_channel_that_dies_without_an_oom_kill_is_an_agent_error(
    cleanup: list[Any],
) -> None:
    async def agent(far: FarEnd) -> None:
        await far.read()
        far.hang_up()

    box = await box_with(agent, Box(), cleanup)
    with pytest.raises(AgentError, match="agent channel failed during stage"):
        await box.run_stage("run", ["x"], b"", LIMITS)
    await box.destroy()


async def test_destroy_tears_down_exactly_once_even_when_raced(cleanup: list[Any]) -> None:
    got: list[dict[str, Any]] = []

    async def agent(far: FarEnd) -> None:
        await far.send({"type": "hello", "protocol": protocol.PROTOCOL_VERSION})
        got.append(await far.read())
        await far.send({"type": "ok"})
        await asyncio.sleep(60)

    box = await box_with(agent, Box(), cleanup)
    assert await box.ready(5) is box
    assert got == [
        {
            "type": "init", "uid": 60001, "gid": 60001, "stages": 1,
            "warm_compiler": None, "warm_limits": None, "warm_run": None,
        }
    ]  # fmt: skip
    await asyncio.gather(box.destroy(), box.destroy())
    await box.destroy()
    assert box.teardowns == 1 and box.destroyed
    with pytest.raises(AgentError):
        await box.write_files([("a", b"", 0o644)])


async def test_files_travel_as_the_agent_reads_them(cleanup: list[Any]) -> None:
    got: list[dict[str, Any]] = []

    async def agent(far: FarEnd) -> None:
        got.append(await far.read())
        await far.send({"type": "ok"})

    box = await box_with(agent, Box(), cleanup)
    await box.write_files([("a", b"x", 0o600)])
    assert got == [{"type": "files", "files": [{"path": "a", "data": "eA==", "mode": 0o600}]}]
    await box.destroy()
