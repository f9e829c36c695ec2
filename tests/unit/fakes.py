"""A fake driver for unit tests of the layers above the drivers (never proof a feature works)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any

from tvm.config.settings import Settings
from tvm.pyrovm.drivers.base import Availability, Driver, HostResources, Sandbox, SandboxSpec
from tvm.pyrovm.drivers.channel import Channel

Behaviour = Callable[[dict[str, Any], "FakeSandbox"], dict[str, Any]]


def stage_reply(
    stdout: bytes = b"",
    status: str = "ok",
    exit_code: int | None = 0,
    signal: str | None = None,
    stderr: bytes = b"",
) -> dict[str, Any]:
    return {
        "type": "stage_result", "status": status, "exit_code": exit_code, "signal": signal,
        "stdout": base64.b64encode(stdout).decode(), "stderr": base64.b64encode(stderr).decode(),
        "output": base64.b64encode(stdout + stderr).decode(), "stdout_truncated": False,
        "stderr_truncated": False, "cpu_ms": 1, "wall_ms": 2, "memory_kb": 3,
    }  # fmt: skip


def echo_behaviour(message: dict[str, Any], sandbox: FakeSandbox) -> dict[str, Any]:
    """compile: ok unless a file contains 'SYNTAX'; run: prints stdin + args."""
    if message["name"] == "compile":
        bad = any(b"SYNTAX" in data for data in sandbox.files.values())
        return stage_reply(
            stderr=b"error" if bad else b"",
            status="runtime_error" if bad else "ok",
            exit_code=1 if bad else 0,
        )
    stdin = base64.b64decode(message["stdin"])
    return stage_reply(stdin + " ".join(message["argv"][2:]).encode())


class FakeAgent(Channel):
    """A channel whose far end is a fake agent: it decodes each request frame
    and answers with the behaviour's reply (as the real agent would, in wire form)."""

    def __init__(self, sandbox: FakeSandbox) -> None:
        self.sandbox = sandbox
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()
        self._buf = b""

    async def send(self, data: bytes) -> None:
        from tvm.pyrovm.agent import protocol

        box = self.sandbox
        message = protocol.decode_body(data[4:])
        box.requests.append(message)
        kind = message["type"]
        if kind == "files":
            for item in message["files"]:
                box.files[item["path"]] = base64.b64decode(item["data"])
            reply: dict[str, Any] = {"type": "ok"}
        elif kind == "stage":
            for item in message.get("files", []):
                box.files[item["path"]] = base64.b64decode(item["data"])
            if box.gate is not None:
                await box.gate.wait()
            reply = box.behaviour(message, box)
        elif kind == "archive":
            reply = {"type": "archive", "data": base64.b64encode(b"tar").decode()}
        else:
            reply = {"type": "ok"}
        await self.replies.put(protocol.encode(reply))

    async def recv(self, n: int) -> bytes:
        while len(self._buf) < n:
            self._buf += await self.replies.get()
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    async def close(self) -> None:
        pass


class FakeSandbox(Sandbox):
    driver = "fake"

    def __init__(self, spec: SandboxSpec, behaviour: Behaviour, gate: asyncio.Event | None) -> None:
        super().__init__(spec)
        self.behaviour = behaviour
        self.gate = gate
        self.files: dict[str, bytes] = {}
        self.requests: list[dict[str, Any]] = []
        self.teardowns = 0
        self.attach(FakeAgent(self))

    def host_resources(self) -> HostResources:
        return HostResources()

    async def _teardown(self) -> None:
        self.teardowns += 1


class FakeDriver(Driver):
    name = "fake"

    def __init__(
        self, behaviour: Behaviour = echo_behaviour, gate: asyncio.Event | None = None
    ) -> None:
        super().__init__(Settings())
        self.behaviour = behaviour
        self.gate = gate
        self.started: list[FakeSandbox] = []

    @classmethod
    def probe(cls, settings: Settings) -> Availability:
        return Availability(True, "fake")

    async def start(self, spec: SandboxSpec) -> Sandbox:
        sandbox = FakeSandbox(spec, self.behaviour, self.gate)
        self.started.append(sandbox)
        return sandbox
