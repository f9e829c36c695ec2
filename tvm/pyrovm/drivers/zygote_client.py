"""The worker's side of a namespace-driver zygote (``agent/zygote.py`` is the
zygote itself, inside bubblewrap).

A zygote is asked over a ``SOCK_SEQPACKET`` socket: one JSON request per
packet, with descriptors attached (``SCM_RIGHTS``); one reply per request, in
order. A request left unanswered (cancelled, failed) retires the zygote, so
that its late reply is never read as the next request's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from pathlib import Path

from tvm.errors import SandboxError, ZygoteGone
from tvm.pyrovm.drivers.cgroups import Cgroup
from tvm.pyrovm.drivers.hostproc import kill_process

log = logging.getLogger("tvm.pyrovm.namespace")


async def readable(loop: asyncio.AbstractEventLoop, sock: socket.socket | int) -> None:
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(sock, wake)
    try:
        await ready
    finally:
        loop.remove_reader(sock)


async def _reply(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> tuple[bytes, list[int]]:
    """A zygote's next reply and the descriptors it carries."""
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(sock, 65536, 1)
            return data, fds
        except BlockingIOError:
            await readable(loop, sock)


class ZygoteClient:
    """One image's zygote process, as the worker sees it: started, asked to
    fork sandboxes, retired and closed."""

    def __init__(self, rootfs: Path, cgroup: Cgroup, max_age: float) -> None:
        self.rootfs = rootfs
        self.cgroup = cgroup
        self.max_age = max_age
        self.proc: asyncio.subprocess.Process | None = None
        self.sock: socket.socket | None = None
        self.started = time.monotonic()
        self.lock = asyncio.Lock()
        self.retiring = False
        self.stderr = bytearray()
        self._log_task: asyncio.Task[None] | None = None

    @property
    def age(self) -> float:
        return time.monotonic() - self.started

    @property
    def usable(self) -> bool:
        return (
            self.sock is not None
            and not self.retiring
            and self.proc is not None
            and self.proc.returncode is None
            and self.age < self.max_age
        )

    async def launch(self, argv: list[str], seccomp_filter: bytes) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=theirs.fileno(),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env={"PATH": "/usr/bin:/bin"},
            )
        except OSError as exc:
            ours.close()
            raise SandboxError(f"cannot start bwrap: {exc}") from exc
        finally:
            theirs.close()
        ours.setblocking(False)
        self.sock = ours
        self._log_task = asyncio.create_task(self._log_stderr())
        # The zygote forks each sandbox into a new pid namespace, then returns
        # to this one (the service's: pidfds and cgroups are read here).
        pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        try:
            await self.request({"type": "config", "seccomp": seccomp_filter.hex()}, [pidns])
        finally:
            os.close(pidns)

    async def _log_stderr(self) -> None:
        assert self.proc and self.proc.stderr
        while line := await self.proc.stderr.readline():
            self.stderr.extend(line)
            del self.stderr[:-8192]
            text = line.decode(errors="replace").rstrip()
            log.warning("zygote for %s: %s", self.rootfs.parent.name, text)

    async def request(
        self, message: dict[str, object], fds: list[int] | None = None
    ) -> tuple[dict[str, object], list[int]]:
        """One request and its reply (with the descriptors it carries).
        :class:`ZygoteGone` if this zygote takes no more requests."""
        loop = asyncio.get_running_loop()
        async with self.lock:
            sock = self.sock
            if sock is None or (self.retiring and message["type"] == "fork"):
                raise ZygoteGone(f"zygote for {self.rootfs} is retired")
            answered = False
            try:
                try:
                    socket.send_fds(sock, [json.dumps(message).encode()], fds or [])
                except (BrokenPipeError, ConnectionError) as exc:
                    # It never got the request (it died): its successor may take it.
                    raise ZygoteGone(f"zygote for {self.rootfs} is gone: {exc}") from exc
                data, rfds = await _reply(loop, sock)
                answered = True
            except OSError as exc:
                raise SandboxError(f"zygote for {self.rootfs} failed: {exc}; {self.why()}") from exc
            finally:
                # Unanswered (cancelled, failed): its reply must never be read
                # as the next request's, so this zygote takes no more.
                if not answered or self.retiring:
                    self.retiring = True
                    self._close_socket()
        if not data:
            raise SandboxError(f"zygote for {self.rootfs} exited; {self.why()}")
        reply = json.loads(data)
        if "error" in reply:
            for fd in rfds:
                os.close(fd)
            raise SandboxError(f"zygote could not make a sandbox: {reply['error']}")
        return reply, rfds

    def why(self) -> str:
        code = self.proc.returncode if self.proc else None
        text = self.stderr.decode(errors="replace").strip()[-2000:]
        return f"bwrap exited {code}: {text}" if code is not None or text else "no diagnostics"

    def retire(self) -> None:
        """Take no more sandboxes; the zygote exits once its sandboxes are gone.
        A request in flight still gets its answer (its socket closes after)."""
        self.retiring = True
        if not self.lock.locked():
            self._close_socket()

    def _close_socket(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    async def close(self, grace: float) -> None:
        self.retire()
        if self.proc is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.proc.wait(), grace)
            await kill_process(self.proc)
        if self._log_task is not None:
            self._log_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._log_task
        await asyncio.to_thread(self.cgroup.remove)
