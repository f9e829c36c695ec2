"""Reaching a VM's agent from the host: connect with retry, hybrid vsock.

A VMM creates the agent's host-side Unix socket some time after it starts,
and (vsock) refuses connections until the guest listens; both are retried
here until a deadline, giving up early when the VMM has exited.

Hybrid vsock is how Firecracker (and Cloud Hypervisor) expose a guest's vsock
port on the host: connect to the VMM's Unix socket, write ``CONNECT <port>\\n``,
read ``OK <host port>\\n``; the bytes after that line are the guest's.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from tvm.errors import SandboxError
from tvm.pyrovm.drivers.channel import StreamChannel


class NotYet(Exception):
    """The agent's socket does not answer yet: try again."""


async def connect_with_retry(
    attempt: Callable[[], Awaitable[StreamChannel]],
    *,
    timeout: float,
    exited: Callable[[], Awaitable[str | None]],
    what: str,
    delay: float = 0.005,
    max_delay: float = 0.1,
) -> StreamChannel:
    """``attempt()`` until it returns a channel; it raises ``OSError`` or
    :class:`NotYet` while the VM is not ready. ``exited()`` says why the VMM
    is gone (None while it runs); ``what`` names the socket in errors."""
    deadline = time.monotonic() + timeout
    while True:
        gone = await exited()
        if gone is not None:
            raise SandboxError(f"{what}: the VMM exited early; {gone}")
        try:
            return await attempt()
        except (OSError, NotYet) as exc:
            if time.monotonic() > deadline:
                raise SandboxError(f"{what} never answered: {exc}") from exc
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_delay)


async def unix_socket(path: Path) -> StreamChannel:
    """One attempt at a VMM's plain Unix socket (QEMU's chardev)."""
    return await StreamChannel.to_unix_socket(path)


async def hybrid_vsock(path: Path, port: int, answer_timeout: float = 2.0) -> StreamChannel:
    """One attempt at guest vsock ``port`` through the VMM's Unix socket ``path``."""
    channel = await StreamChannel.to_unix_socket(path)
    try:
        await channel.send(f"CONNECT {port}\n".encode())
        line = await asyncio.wait_for(channel.reader.readline(), answer_timeout)
    except (TimeoutError, OSError) as exc:
        await _hang_up(channel)
        raise NotYet(f"no answer to CONNECT {port}: {exc!r}") from exc
    if not line.startswith(b"OK "):
        await _hang_up(channel)
        raise NotYet(f"CONNECT {port} answered {line!r} (guest not listening yet)")
    return channel


async def _hang_up(channel: StreamChannel) -> None:
    with contextlib.suppress(OSError):
        await channel.close()
