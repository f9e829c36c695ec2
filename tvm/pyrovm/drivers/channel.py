"""How bytes reach a sandbox's agent: a :class:`Channel`.

A channel moves bytes, nothing more; :class:`~.session.AgentSession` speaks
the protocol over it. Two kinds cover every driver:

* :class:`StreamChannel` — a connected stream: the namespace driver's socket
  pair, QEMU's virtio-serial port and Firecracker's vsock (both reached
  through a Unix socket on the host);
* :class:`PipeChannel` — a child process's stdin/stdout (gVisor's runsc).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from abc import ABC, abstractmethod
from pathlib import Path

from tvm.pyrovm.agent import protocol


class Channel(ABC):
    """A byte stream to the agent. ``recv`` raises ``EOFError`` (or
    ``asyncio.IncompleteReadError``, ``OSError``) when the agent is gone."""

    @abstractmethod
    async def send(self, data: bytes) -> None: ...

    @abstractmethod
    async def recv(self, n: int) -> bytes:
        """Exactly ``n`` bytes."""

    @abstractmethod
    async def close(self) -> None:
        """Hang up; safe to call twice."""


class StreamChannel(Channel):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def over_socket(cls, sock: socket.socket) -> StreamChannel:
        return cls(*await asyncio.open_unix_connection(sock=sock))

    @classmethod
    async def to_unix_socket(cls, path: Path) -> StreamChannel:
        return cls(*await asyncio.open_unix_connection(str(path), limit=protocol.MAX_FRAME))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def recv(self, n: int) -> bytes:
        return await self.reader.readexactly(n)

    async def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()
            with contextlib.suppress(OSError, TimeoutError, RuntimeError):
                async with asyncio.timeout(0.5):
                    await self.writer.wait_closed()


class PipeChannel(Channel):
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        self.stdin = proc.stdin
        self.stdout = proc.stdout

    async def send(self, data: bytes) -> None:
        self.stdin.write(data)
        await self.stdin.drain()

    async def recv(self, n: int) -> bytes:
        return await self.stdout.readexactly(n)

    async def close(self) -> None:
        if not self.stdin.is_closing():
            self.stdin.close()
