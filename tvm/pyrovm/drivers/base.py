"""The driver interface: how a sandbox is created and how bytes reach its agent.

Every driver runs the same agent (``tvm/pyrovm/agent``) and speaks the same
protocol; a driver only decides what isolates the sandbox and what the channel
is. A driver is small: :meth:`Driver.probe` says whether it can run here and
why not, :meth:`Driver.start` returns a running :class:`Sandbox`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import shutil
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from tvm.config.catalog import StageLimits
from tvm.errors import AgentError
from tvm.pyrovm.agent import protocol
from tvm.pyrovm.agent.main import DEFAULT_ENV

if TYPE_CHECKING:
    from tvm.config.settings import Settings

AGENT_DIR = Path(__file__).resolve().parent.parent / "agent"
# How long a sandbox without a VM to boot may take to answer its first frame.
HANDSHAKE_TIMEOUT = 30.0
# The agent starts as a plain `python3` would for a script (no -I/-S flags, the
# programs' environment), recording the modules of a fresh interpreter first:
# Python programs then run in a forked child of it (see agent/pyrun.py).
AGENT_BOOT = (
    "import sys; b = set(sys.modules); sys.path.insert(0, '/.tvm'); "
    "from tvm_agent.main import main; main(b)"
)
AGENT_ARGV = ["python3", "-c", AGENT_BOOT]  # found on PATH, as a program's python3 is
AGENT_ENV = dict(DEFAULT_ENV)  # the agent's environment is the programs' one


def agent_source_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(AGENT_DIR.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def image_python_tag(rootfs: Path) -> str:
    """``cpython-311`` for an image whose python3 is python3.11 (its .pyc tag)."""
    target = (rootfs / "usr/bin/python3").resolve().name
    return "cpython-" + target.removeprefix("python").replace(".", "")


def compiled_agent(rootfs: Path, cache: Path, compile_argv: list[str]) -> Path:
    """A copy of the agent with .pyc files for the image's Python, so that a
    sandbox's agent imports in milliseconds instead of compiling its source.

    ``cache`` is a per-agent-version directory under the data dir;
    ``compile_argv`` runs ``python3 -m compileall`` inside the image with the
    copy mounted at /.tvm/tvm_agent (the same path the sandbox will use, so
    the .pyc files are valid there).
    """
    target = cache / agent_source_digest() / "tvm_agent"
    if not (target / "main.py").is_file():
        # Several images may be prepared at once (threads, worker processes).
        staging = target.with_name(f".tvm_agent.{os.getpid()}.{threading.get_ident()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for path in AGENT_DIR.glob("*.py"):
            shutil.copy2(path, staging / path.name)
        try:
            os.replace(staging, target)
        except OSError:  # another one was first
            shutil.rmtree(staging, ignore_errors=True)
    tag = image_python_tag(rootfs)
    if not (target / "__pycache__" / f"main.{tag}.pyc").is_file():
        subprocess.run(compile_argv, check=False, capture_output=True, timeout=60)
    return target


@dataclass(frozen=True)
class Availability:
    usable: bool
    reason: str = ""
    # False: usable only when chosen by name, never by ``auto`` (e.g. qemu on a
    # software CPU, which is far slower than the namespace driver).
    auto: bool = True


@dataclass(frozen=True)
class SandboxSpec:
    """What a driver needs to create one sandbox."""

    image: str  # image name, e.g. "bookworm-base"
    rootfs: Path  # the image's root filesystem directory
    uid: int  # the program's uid and gid inside the sandbox
    workdir_mb: int = 64
    tmp_mb: int = 64
    memory_mb: int = 512  # ceiling for the whole sandbox until a stage sets its own
    processes: int = 256
    cpus: int = 1
    stages: int = 1  # how many stages a job will run in it (compile + run: 2)


class Sandbox(ABC):
    """A running sandbox with its agent up. Destroy it exactly once (idempotent)."""

    driver: str = "?"

    def __init__(self, spec: SandboxSpec) -> None:
        self.spec = spec
        self.created = time.monotonic()
        self.started: float | None = None  # when a job took it
        self._lock = asyncio.Lock()
        self.destroyed = False

    # -- the channel --------------------------------------------------------
    @abstractmethod
    async def _send(self, data: bytes) -> None: ...

    @abstractmethod
    async def _recv(self, n: int) -> bytes: ...

    async def read_frame(self) -> dict[str, Any]:
        header = await self._recv(4)
        body = await self._recv(protocol.decode_header(header))
        return protocol.decode_body(body)

    async def call(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send one request and wait for its reply; errors become :class:`AgentError`."""
        async with self._lock:
            try:
                await self._send(protocol.encode(message))
                reply = await self.read_frame()
            except (OSError, EOFError, asyncio.IncompleteReadError, protocol.ProtocolError) as exc:
                raise AgentError(f"agent channel failed during {message['type']}: {exc}") from exc
        if reply.get("type") == "error":
            raise AgentError(f"agent refused {message['type']}: {reply.get('message')}")
        return reply

    async def handshake(self) -> dict[str, Any]:
        try:
            hello = await self.read_frame()
        except (OSError, asyncio.IncompleteReadError, protocol.ProtocolError) as exc:
            raise AgentError(f"agent did not start: {exc}; {await self.diagnostics()}") from exc
        if hello.get("type") != "hello" or hello.get("protocol") != protocol.PROTOCOL_VERSION:
            raise AgentError(
                f"agent speaks {hello!r}, expected protocol {protocol.PROTOCOL_VERSION}"
            )
        if not hello.get("initialized"):  # else the driver handed it over at start
            await self.call(self.init_message())
        return hello

    def init_message(self) -> dict[str, Any]:
        return {
            "type": "init",
            "uid": self.spec.uid,
            "gid": self.spec.uid,
            "stages": self.spec.stages,
        }

    async def ready(
        self, timeout: float, connect: Callable[[], Awaitable[None]] | None = None
    ) -> Sandbox:
        """Connect to the agent (for drivers that must) and handshake within
        ``timeout``. On any failure the sandbox is destroyed; running out of time
        is an :class:`AgentError` with the driver's diagnostics, like any other."""
        try:
            if connect is not None:
                await connect()
            await asyncio.wait_for(self.handshake(), timeout)
        except TimeoutError as exc:
            why = await self.diagnostics()
            await self.destroy()
            raise AgentError(f"agent did not answer within {timeout:g} s; {why}") from exc
        except BaseException:
            await self.destroy()
            raise
        return self

    async def write_files(self, files: list[tuple[str, bytes, int]]) -> None:
        await self.call({"type": "files", "files": file_list(files)})

    async def run_stage(
        self,
        name: str,
        argv: list[str],
        stdin: bytes,
        limits: StageLimits,
        pyrun: bool = False,
        last: bool = True,
        files: list[tuple[str, bytes, int]] | None = None,
    ) -> dict[str, Any]:
        """Run one stage; returns the agent's measurements (outputs decoded to bytes).

        ``pyrun``: argv is ``[python3, script, *args]`` and the agent may run the
        script in a forked child of its own interpreter (no second start-up).
        ``last``: no stage follows, so the agent prepares no runner for one.
        ``files``: written first, in the same round trip (as :meth:`write_files`).
        """
        await self.apply_limits(limits)
        oom_before = self.oom_kills()
        message = {
            "type": "stage",
            "name": name,
            "argv": argv,
            "stdin": base64.b64encode(stdin).decode(),
            "limits": limit_dict(limits),
            "pyrun": pyrun,
            "last": last,
        }
        if files:
            message["files"] = file_list(files)
        reply = await self.call(message)
        reply["stdout"] = base64.b64decode(reply["stdout"])
        reply["stderr"] = base64.b64decode(reply["stderr"])
        reply["output"] = base64.b64decode(reply.get("output", ""))
        if self.oom_kills() > oom_before and reply["signal"] == "SIGKILL":
            reply["status"] = "memory_limit"
        peak = self.peak_memory_kb()
        if peak:  # what the memory limit is measured against, not ru_maxrss
            reply["memory_kb"] = peak
        return reply

    async def archive(self) -> bytes:
        reply = await self.call({"type": "archive"})
        return base64.b64decode(reply["data"])

    async def unpack(self, data: bytes) -> None:
        await self.call({"type": "unpack", "data": base64.b64encode(data).decode()})

    # -- host-side enforcement (drivers with host cgroups override) ---------
    async def apply_limits(self, limits: StageLimits) -> None:
        """Set the sandbox-wide memory/pids ceiling for the next stage."""

    def oom_kills(self) -> int:
        """How many processes the sandbox's memory limit has killed so far."""
        return 0

    def peak_memory_kb(self) -> int | None:
        """The program's peak memory as its limit counts it, where the driver
        can tell (a host cgroup); else the agent's measurement stands."""
        return None

    async def diagnostics(self) -> str:
        """Anything the driver can tell about why the sandbox failed (stderr, console)."""
        return ""

    @abstractmethod
    async def destroy(self) -> None:
        """Kill everything and free every resource. Safe to call twice."""


class PipeSandbox(Sandbox):
    """A sandbox whose agent talks over a child process's stdin/stdout (bwrap,
    runsc); its stderr is kept (the last 8 KiB) for diagnostics."""

    launcher = "sandbox"  # the child's name in diagnostics

    def __init__(self, spec: SandboxSpec) -> None:
        super().__init__(spec)
        self.proc: asyncio.subprocess.Process | None = None
        self._stderr = bytearray()
        self._stderr_task: asyncio.Task[None] | None = None

    async def _send(self, data: bytes) -> None:
        assert self.proc and self.proc.stdin
        self.proc.stdin.write(data)
        await self.proc.stdin.drain()

    async def _recv(self, n: int) -> bytes:
        assert self.proc and self.proc.stdout
        return await self.proc.stdout.readexactly(n)

    def collect_stderr(self) -> None:
        """Start keeping the child's stderr (call once the child runs)."""
        self._stderr_task = asyncio.create_task(self._collect_stderr())

    async def _collect_stderr(self) -> None:
        assert self.proc and self.proc.stderr
        while chunk := await self.proc.stderr.read(4096):
            self._stderr.extend(chunk)
            del self._stderr[:-8192]

    async def diagnostics(self) -> str:
        if self.proc and self.proc.returncode is None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 0.5)
        text = self._stderr.decode(errors="replace").strip()
        code = self.proc.returncode if self.proc else None
        return f"{self.launcher} exited {code}: {text[-2000:]}" if text or code else ""

    async def _stop_collecting(self) -> None:
        if self._stderr_task:
            self._stderr_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._stderr_task


class StreamSandbox(Sandbox):
    """A sandbox whose agent talks over a connected stream (a VM's serial port
    or vsock, reached through a Unix socket)."""

    def __init__(self, spec: SandboxSpec) -> None:
        super().__init__(spec)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _send(self, data: bytes) -> None:
        assert self.writer
        self.writer.write(data)
        await self.writer.drain()

    async def _recv(self, n: int) -> bytes:
        assert self.reader
        return await self.reader.readexactly(n)


class Driver(ABC):
    """A way to make sandboxes, built with the settings it obeys (and keeps)."""

    name: ClassVar[str]
    strength: ClassVar[int] = 0  # auto picks the strongest usable driver

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @classmethod
    @abstractmethod
    def probe(cls, settings: Settings) -> Availability:
        """Can this driver run on this host with ``settings``? If not, say exactly why."""

    @abstractmethod
    async def start(self, spec: SandboxSpec) -> Sandbox:
        """Create a sandbox and return it with its agent handshake done."""

    async def close(self) -> None:
        """Release driver-wide resources (called at service shutdown)."""


def file_list(files: list[tuple[str, bytes, int]]) -> list[dict[str, Any]]:
    """Files as the agent's ``files`` field carries them."""
    return [
        {"path": path, "data": base64.b64encode(data).decode(), "mode": mode}
        for path, data, mode in files
    ]


def limit_dict(limits: StageLimits) -> dict[str, int]:
    return {name: getattr(limits, name) for name in StageLimits.names()}
