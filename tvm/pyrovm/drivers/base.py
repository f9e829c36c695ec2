"""The driver interface: how a sandbox is created and how bytes reach its agent.

Every driver runs the same agent (``tvm/pyrovm/agent``) and speaks the same
protocol; a driver only decides what isolates the sandbox and what the
:class:`~.channel.Channel` is. Three parts:

* the channel (:mod:`.channel`): bytes to and from the agent;
* the session (:mod:`.session`): the protocol over it, typed (:mod:`.messages`);
* the driver's surface: :meth:`Driver.probe` says whether it can run here and
  why not, :meth:`Driver.start` returns a running :class:`Sandbox`, whose
  subclass enforces limits, measures and tears down.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from tvm.config.catalog import StageLimits
from tvm.errors import AgentError
from tvm.pyrovm.agent.main import DEFAULT_ENV
from tvm.pyrovm.drivers.channel import Channel
from tvm.pyrovm.drivers.messages import (
    Ack,
    Archive,
    ArchiveRequest,
    Cool,
    Event,
    File,
    Files,
    Hello,
    Init,
    Ok,
    Resize,
    Signal,
    Stage,
    StageReply,
    Stdin,
    Unpack,
)
from tvm.pyrovm.drivers.session import AgentSession, Exchange
from tvm.pyrovm.drivers.teardown import finish as finish_teardown

# How often the host checks a stage's CPU (drivers whose host counts it), and how
# far past its CPU time (and half as much again) a stage may go before the host
# ends the sandbox: the agent inside stops it first where it can.
CPU_POLL_SECONDS = 0.05
CPU_MARGIN_MS = 500

if TYPE_CHECKING:
    from tvm.config.settings import Settings

AGENT_DIR = Path(__file__).resolve().parent.parent / "agent"
# How long a sandbox without a VM to boot may take to answer its first frame.
HANDSHAKE_TIMEOUT = 30.0
# Fewer processes (threads) than this and a compile stage runs cold: a JVM
# already holds a few dozen. A waiting node holds 7 (its V8 workers), and
# Judge0's default limit is 60.
WARM_MIN_PROCESSES = 64
WARM_RUN_MIN_PROCESSES = 16
# The agent starts as a plain `python3` would for a script (no -I/-S flags, the
# programs' environment), recording the modules of a fresh interpreter first:
# Python programs then run in a forked child of it (see agent/pyrun.py).
AGENT_BOOT = (
    "import sys; b = set(sys.modules); sys.path.insert(0, '/.tvm'); "
    "from tvm_agent.main import main; main(b)"
)
AGENT_ARGV = ["python3", "-c", AGENT_BOOT]  # found on PATH, as a program's python3 is
AGENT_ENV = dict(DEFAULT_ENV)  # the agent's environment is the programs' one


def agent_files() -> list[Path]:
    """What a sandbox's copy of the agent holds: its modules and the
    pre-started compilers' servers (``warm/``)."""
    return sorted([*AGENT_DIR.glob("*.py"), *(AGENT_DIR / "warm").glob("*.*")])


# The stand-ins of agent/warm.py, written into each copy: warm/bin/NAME for the
# compile stage, warm/serve/NAME for the prestart.
WARM_TOOLS = ("java", "javac", "tsc")
_WARM_STANDINS = {
    "bin": 'exec /bin/sh /.tvm/tvm_agent/warm/shim.sh {tool} "$@"\n',
    "serve": 'exec python3 /.tvm/tvm_agent/warm_serve.py {tool} "$@"\n',
}


def _write_warm_standins(agent_copy: Path) -> None:
    for folder, body in _WARM_STANDINS.items():
        (agent_copy / "warm" / folder).mkdir(parents=True, exist_ok=True)
        for tool in WARM_TOOLS:
            path = agent_copy / "warm" / folder / tool
            path.write_text("#!/bin/sh\n" + body.format(tool=tool))
            path.chmod(0o755)


def agent_source_digest() -> str:
    digest = hashlib.sha256()
    for path in agent_files():
        rel = path.relative_to(AGENT_DIR).as_posix()
        digest.update(rel.encode() + b"\0" + path.read_bytes())
    digest.update(repr(_WARM_STANDINS).encode())
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
        for path in agent_files():
            dest = staging / path.relative_to(AGENT_DIR)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
        _write_warm_standins(staging)
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
    home_mb: int = 0  # a live sandbox's writable /home (0: none, /home stays read-only)
    # A compiler to pre-start for the compile stage (the catalog's
    # ``warm_compiler``) and the limits it starts under (the stage's maximum).
    warm_compiler: str | None = None
    # Or the run stage's interpreter to pre-start (the catalog's ``warm_run``):
    # the run command's argv; then ``warm_limits`` are the run stage's maximum.
    warm_run: tuple[str, ...] | None = None
    warm_limits: dict[str, int] | None = None
    warm_memory_mb: int = 0  # what it holds while it waits

    @property
    def warm_stage(self) -> str | None:
        """The stage that a pre-started compiler or interpreter serves."""
        if self.warm_compiler is not None:
            return "compile"
        return "run" if self.warm_run is not None else None

    def warm_for(self, limits: StageLimits) -> bool:
        """Whether a stage under ``limits`` may use what was pre-started for
        it: only with room to spare above what it already holds (else the
        limit could not even be set, or would bite where a cold start's would
        not), and threads enough for what it already runs."""
        return (
            self.warm_stage is not None
            and limits.memory_mb >= 2 * self.warm_memory_mb
            and limits.processes
            >= (WARM_RUN_MIN_PROCESSES if self.warm_stage == "run" else WARM_MIN_PROCESSES)
        )


@dataclass(frozen=True)
class HostResources:
    """What a sandbox holds on the host until :meth:`Sandbox.destroy` frees it."""

    processes: tuple[int, ...] = ()  # host pids: its VMM, runtime or holder process
    cgroups: tuple[Path, ...] = ()
    paths: tuple[Path, ...] = ()  # temp dirs, jails, sockets, network namespaces

    def left(self) -> list[str]:
        """Those that still exist (a zombie counts as gone: it holds nothing)."""
        left = [f"process {pid}" for pid in self.processes if _running(pid)]
        left += [f"cgroup {path}" for path in self.cgroups if path.exists()]
        return left + [f"path {path}" for path in self.paths if path.exists()]


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


class Sandbox(ABC):
    """A running sandbox with its agent up.

    What the engine and the pool use: :meth:`run_stage` (or :meth:`stage`, to
    stream), :meth:`write_files`, :meth:`archive`, :meth:`unpack` and
    :meth:`destroy`. The protocol is the :class:`~.session.AgentSession`'s;
    the one host-side memory-limit rule is here (:meth:`_judge`). A driver's
    sandbox supplies only what differs: how its limits are enforced
    (:meth:`apply_limits`), what its host can measure (:meth:`oom_kills`,
    :meth:`peak_memory_kb`), what it can tell about a failure
    (:meth:`diagnostics`) and how it is torn down (:meth:`_teardown`).
    """

    driver: ClassVar[str] = "?"

    def __init__(self, spec: SandboxSpec) -> None:
        self.spec = spec
        self.created = time.monotonic()
        self.started: float | None = None  # when a job took it
        self.session: AgentSession | None = None
        self._destroyed = False

    @property
    def destroyed(self) -> bool:
        return self._destroyed

    # -- bringing the agent up ----------------------------------------------
    def attach(self, channel: Channel) -> None:
        """Talk to the agent over ``channel`` (once the driver has one)."""
        self.session = AgentSession(channel)

    def init_message(self) -> Init:
        return Init(
            uid=self.spec.uid, gid=self.spec.uid, stages=self.spec.stages,
            warm_compiler=self.spec.warm_compiler, warm_limits=self.spec.warm_limits,
            warm_run=list(self.spec.warm_run) if self.spec.warm_run else None,
        )  # fmt: skip

    async def ready(
        self, timeout: float, connect: Callable[[], Awaitable[Channel]] | None = None
    ) -> Sandbox:
        """Connect to the agent (for drivers that must) and handshake within
        ``timeout``. On any failure the sandbox is destroyed; running out of time
        is an :class:`AgentError` with the driver's diagnostics, like any other."""
        try:
            if connect is not None:
                self.attach(await connect())
            async with asyncio.timeout(timeout):  # no task of its own, unlike wait_for
                await self._handshake()
        except TimeoutError as exc:
            why = await self.diagnostics()
            await self.destroy()
            raise AgentError(f"agent did not answer within {timeout:g} s; {why}") from exc
        except BaseException:
            await self.destroy()
            raise
        return self

    async def _handshake(self) -> Hello:
        session = self._session()
        try:
            hello = await session.hello()
        except AgentError as exc:
            raise AgentError(f"{exc.message}; {await self.diagnostics()}") from exc
        if not hello.initialized:  # else the driver handed it over at start
            await session.call(self.init_message(), Ok)
        return hello

    def _session(self) -> AgentSession:
        if self.session is None:
            raise AgentError(f"{self.driver} sandbox has no agent channel")
        return self.session

    # -- the work ------------------------------------------------------------
    async def write_files(self, files: list[tuple[str, bytes, int]]) -> None:
        await self._session().call(Files(file_list(files)), Ok)

    async def run_stage(
        self,
        name: str,
        argv: list[str],
        stdin: bytes,
        limits: StageLimits,
        pyrun: bool = False,
        last: bool = True,
        files: list[tuple[str, bytes, int]] | None = None,
    ) -> StageReply:
        """Run one stage; its measurements, judged by the host (see :meth:`stage`)."""
        async with self.stage(name, argv, stdin, limits, pyrun, last, files) as run:
            pass  # nothing to stream: the reply comes next
        return run.result

    @contextlib.asynccontextmanager
    async def stage(
        self,
        name: str,
        argv: list[str],
        stdin: bytes,
        limits: StageLimits,
        pyrun: bool = False,
        last: bool = True,
        files: list[tuple[str, bytes, int]] | None = None,
        stream: bool = False,
        terminal: dict[str, int] | None = None,
    ) -> AsyncIterator[StageRun]:
        """Run one stage, open while the block runs: ``async for event in run``
        reads what the agent streams, ``await run.send(Stdin(...))`` feeds it;
        ``run.result`` is set when the block ends.

        ``pyrun``: argv is ``[python3, script, *args]`` and the agent may run the
        script in a forked child of its own interpreter (no second start-up).
        ``last``: no stage follows, so the agent prepares no runner for one.
        ``files``: written first, in the same round trip (as :meth:`write_files`).
        ``stream``: output comes as events while it runs, and stdin, signals and
        (with ``terminal``, a pty's rows and cols) resizes reach it.
        """
        if name == self.spec.warm_stage and not self.spec.warm_for(limits):
            await self._session().call(Cool(), Ok)  # before its limits are set
        await self.apply_limits(limits)
        oom_before = self.oom_kills()
        cpu_before = self.cpu_ns()
        started = time.monotonic()
        # Where the host counts CPU, it ends the whole sandbox once a stage is
        # well past its CPU time: the agent inside stops it first where it can.
        backstop = None
        if cpu_before is not None:
            backstop = asyncio.ensure_future(self._cpu_backstop(cpu_before, limits))
        request = Stage(
            name=name, argv=argv, stdin=stdin, limits=limit_dict(limits), pyrun=pyrun,
            last=last, files=file_list(files or []), stream=stream, terminal=terminal,
        )  # fmt: skip
        run = StageRun()
        try:
            async with self._session().stream(request, StageReply) as exchange:
                run.exchange = exchange
                yield run
                async for _ in exchange:  # events the block left unread, up to the reply
                    pass
            reply = self._judge(exchange.reply, oom_before)
        except AgentError:
            # What carried the channel was killed with the sandbox, its output lost:
            # by the memory limit (gVisor's Sentry outgrew it), or by the CPU backstop.
            wall_ms = int((time.monotonic() - started) * 1000)
            if self.oom_kills() > oom_before:
                reply = memory_killed(limits, wall_ms)
            elif backstop is not None and backstop.done():
                reply = cpu_killed(wall_ms)
            else:
                raise
        finally:
            if backstop is not None:
                backstop.cancel()
        run.result = self._judge_cpu(reply, cpu_before, limits)

    def _judge(self, reply: StageReply, oom_before: int) -> StageReply:
        """The host's view of a stage: a SIGKILL that the memory limit dealt is
        ``memory_limit``; peak memory is what the limit counted, where known."""
        if self.oom_kills() > oom_before and reply.signal == "SIGKILL":
            reply = replace(reply, status="memory_limit")
        peak = self.peak_memory_kb()
        if peak:  # what the memory limit is measured against, not ru_maxrss
            reply = replace(reply, memory_kb=peak)
        return reply

    def _judge_cpu(
        self, reply: StageReply, cpu_before: int | None, limits: StageLimits
    ) -> StageReply:
        """Where the host counts CPU, ``cpu_ms`` is its count, and a stage past its
        CPU time is ``timeout`` whatever the agent saw."""
        if cpu_before is None:
            return reply
        cpu_ms = (self.cpu_ns() or 0) - cpu_before
        reply = replace(reply, cpu_ms=cpu_ms // 1_000_000)
        if reply.cpu_ms > limits.cpu_time_ms and reply.status in ("ok", "runtime_error"):
            reply = replace(reply, status="timeout")
        return reply

    async def _cpu_backstop(self, cpu_before: int, limits: StageLimits) -> None:
        """Once the stage has used half as much CPU again as it may (plus a
        margin): end the sandbox."""
        allowed_ns = (limits.cpu_time_ms * 3 // 2 + CPU_MARGIN_MS) * 1_000_000
        while (self.cpu_ns() or 0) - cpu_before <= allowed_ns:
            await asyncio.sleep(CPU_POLL_SECONDS)
        self.kill_all()

    async def archive(self) -> bytes:
        return (await self._session().call(ArchiveRequest(), Archive)).data

    async def unpack(self, data: bytes) -> None:
        await self._session().call(Unpack(data), Ok)

    # -- the driver's part ---------------------------------------------------
    async def apply_limits(self, limits: StageLimits) -> None:
        """Set the sandbox-wide memory/pids ceiling for the next stage (host cgroups)."""

    def oom_kills(self) -> int:
        """How many processes the sandbox's memory limit has killed so far."""
        return 0

    def peak_memory_kb(self) -> int | None:
        """The program's peak memory as its limit counts it, where the driver
        can tell (a host cgroup); else the agent's measurement stands."""
        return None

    def cpu_ns(self) -> int | None:
        """CPU the whole sandbox has used so far, where the host's count is the
        truth (a host cgroup around a user-space kernel); else the agent's
        measurement stands and the agent enforces the CPU time."""
        return None

    def kill_all(self) -> None:
        """End every process of the sandbox at once (drivers with :meth:`cpu_ns`)."""

    async def diagnostics(self) -> str:
        """Anything the driver can tell about why the sandbox failed (stderr, console)."""
        return ""

    @abstractmethod
    def host_resources(self) -> HostResources:
        """What the sandbox holds on the host (its processes, cgroups, files),
        each of which :meth:`destroy` must free."""

    async def destroy(self) -> None:
        """Kill everything and free every resource. Safe to call twice, or from
        two tasks at once: the driver's :meth:`_teardown` runs exactly once."""
        if self._destroyed:
            return
        self._destroyed = True
        try:
            # To its end even if this task is cancelled meanwhile; never raises.
            await finish_teardown(self._teardown(), f"{self.driver} sandbox")
        finally:
            if self.session is not None:
                self.session.broken = "the sandbox is destroyed"
                await self.session.channel.close()

    @abstractmethod
    async def _teardown(self) -> None:
        """Kill the sandbox's processes and free what it holds on the host."""


class StageRun:
    """A stage in progress (:meth:`Sandbox.stage`)."""

    def __init__(self) -> None:
        self.exchange: Exchange[StageReply] | None = None
        self.result: StageReply  # set when the stage's block ends

    def __aiter__(self) -> AsyncIterator[Event]:
        assert self.exchange is not None
        return aiter(self.exchange)

    async def send(self, message: Stdin | Signal | Resize | Ack) -> None:
        assert self.exchange is not None
        await self.exchange.send(message)


def cpu_killed(wall_ms: int) -> StageReply:
    """A stage whose sandbox went over its CPU time and was ended, agent and all."""
    return StageReply(
        status="timeout", exit_code=None, signal="SIGKILL", stdout=b"", stderr=b"", output=b"",
        stdout_truncated=False, stderr_truncated=False, cpu_ms=0, wall_ms=wall_ms, memory_kb=0,
    )  # fmt: skip


def memory_killed(limits: StageLimits, wall_ms: int) -> StageReply:
    """A stage whose sandbox the memory limit ended, agent and all."""
    return StageReply(
        status="memory_limit", exit_code=None, signal="SIGKILL", stdout=b"", stderr=b"",
        output=b"", stdout_truncated=False, stderr_truncated=False, cpu_ms=0, wall_ms=wall_ms,
        memory_kb=limits.memory_mb << 10,
    )  # fmt: skip


class Driver(ABC):
    """A way to make sandboxes, built with the settings it obeys (and keeps)."""

    name: ClassVar[str]
    strength: ClassVar[int] = 0  # auto picks the strongest usable driver
    # Whether programs' open files are the host kernel's own (its fs.file-max).
    host_files: ClassVar[bool] = False

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


def file_list(files: list[tuple[str, bytes, int]]) -> list[File]:
    return [File(path, data, mode) for path, data, mode in files]


def limit_dict(limits: StageLimits) -> dict[str, int]:
    return {name: getattr(limits, name) for name in StageLimits.names()}
