"""The ``namespace`` driver: Linux namespaces + cgroups + seccomp, forked from
a per-image zygote.

Each image gets one *zygote* (:mod:`tvm.pyrovm.agent.zygote`): the agent's
interpreter, started once under bubblewrap with the image mounted read-only as
``/``, bubblewrap's minimal ``/dev`` and its imports done. Every sandbox is then
forked from it, so a new sandbox costs a fork instead of an interpreter start,
and is still entirely new:

* new pid, mount, net (isolated loopback only), ipc, uts and cgroup namespaces;
* fresh size-capped tmpfs ``/work``, ``/tmp`` and ``/dev/shm``, a new devpts
  and its own ``/proc`` (with bubblewrap's read-only covers);
* the agent is pid 1 of its namespace, runs as uid 0 holding only CAP_SETUID
  and CAP_SETGID under no_new_privs, and drops the program to a per-sandbox
  uid (60000 + slot) with no capabilities. No user namespace: bubblewrap's own
  maps a single uid, which cannot hold both the agent and the program (see
  docs/isolation.md);
* a seccomp deny list (:mod:`.seccomp`), the programs' environment only, and a
  cgroup (:mod:`.cgroups`) capping memory and processes, entered before the
  namespaces are made.

A zygote is replaced after ``zygote_max_age`` seconds (``ZYGOTE_MAX_AGE``),
which renews what its sandboxes share through ``fork`` (the interpreter's hash
secret and address layout; never user state: a zygote runs no user code).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from tvm.config.catalog import StageLimits
from tvm.errors import DriverUnavailable, SandboxError, ZygoteGone
from tvm.pyrovm.drivers import seccomp
from tvm.pyrovm.drivers.base import (
    AGENT_ENV,
    HANDSHAKE_TIMEOUT,
    Availability,
    Driver,
    HostResources,
    Sandbox,
    SandboxSpec,
    agent_source_digest,
    compiled_agent,
)
from tvm.pyrovm.drivers.cgroups import Cgroup, CgroupManager
from tvm.pyrovm.drivers.channel import StreamChannel
from tvm.pyrovm.drivers.hostproc import enter_argv
from tvm.pyrovm.drivers.messages import to_wire
from tvm.pyrovm.drivers.zygote_client import ZygoteClient, readable

if TYPE_CHECKING:
    from tvm.config.settings import Settings

log = logging.getLogger("tvm.pyrovm.namespace")

# Memory the agent itself needs on top of a stage's own limit.
AGENT_OVERHEAD_MB = 24
# The zygote starts as a plain `python3` would for a script, like the agent
# (see base.AGENT_BOOT): its sandboxes run Python programs in forked children.
ZYGOTE_BOOT = (
    "import sys; b = set(sys.modules); sys.path.insert(0, '/.tvm'); "
    "from tvm_agent.zygote import main; main(b)"
)
# What a zygote needs to build sandboxes (namespaces, mounts, the hostname, the
# loopback) on top of what it hands on to each agent.
ZYGOTE_CAPS = ("CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP")
ZYGOTE_MAX_AGE = 60.0
ZYGOTE_MEMORY_MB = 256
ZYGOTE_PIDS = 4096
SHM_MB = 16


class NamespaceSandbox(Sandbox):
    driver = "namespace"

    def __init__(self, spec: SandboxSpec, cgroup: Cgroup) -> None:
        super().__init__(spec)
        self.cgroup = cgroup
        self.pidfd: int | None = None  # the sandbox's holder (its pid 1's parent)
        self.pid: int | None = None  # the holder's pid, as the host sees it
        self.stderr_fd: int | None = None  # read end of the agent's stderr
        self._stderr = b""

    async def apply_limits(self, limits: StageLimits) -> None:
        # The program's own cgroup gets exactly the stage's limits; the sandbox as
        # a whole (the holder, the agent) a little more above it.
        self.cgroup.set_limits(
            (limits.memory_mb + AGENT_OVERHEAD_MB) << 20,
            limits.processes + 8,
            program_memory_bytes=limits.memory_mb << 20,
            program_pids=limits.processes,
            cpus=limits.cpus,
        )
        self.cgroup.reset_program_peak()

    def oom_kills(self) -> int:
        return self.cgroup.oom_kills()

    def peak_memory_kb(self) -> int | None:
        return self.cgroup.program_peak_kb()

    def host_resources(self) -> HostResources:
        pids = (self.pid,) if self.pid is not None else ()
        return HostResources(processes=pids, cgroups=tuple(self.cgroup.dirs.values()))

    async def diagnostics(self) -> str:
        if self.stderr_fd is not None:
            with contextlib.suppress(OSError):  # nothing more written yet
                while chunk := os.read(self.stderr_fd, 8192):
                    self._stderr = (self._stderr + chunk)[-8192:]
        text = self._stderr.decode(errors="replace").strip()
        return f"sandbox said: {text[-2000:]}" if text else ""

    async def _teardown(self) -> None:
        if self.stderr_fd is not None:
            os.close(self.stderr_fd)
            self.stderr_fd = None
        if self.pidfd is not None:
            # The agent is pid 1 of the sandbox: the kernel kills everything
            # else in its pid namespace, and waits for it, before the agent
            # itself is gone (its pidfd then reads as ready).
            pidfd, self.pidfd = self.pidfd, None
            try:
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(2.0):
                        await readable(asyncio.get_running_loop(), pidfd)
            finally:
                os.close(pidfd)
            for _ in range(3):  # usually empty at once: no thread needed
                if self.cgroup.try_remove():
                    return
                await asyncio.sleep(0.002)
        await asyncio.to_thread(self.cgroup.remove)


class NamespaceDriver(Driver):
    name = "namespace"
    strength = 10
    host_files = True

    def __init__(self, settings: Settings, zygote_max_age: float = ZYGOTE_MAX_AGE) -> None:
        super().__init__(settings)
        self.zygote_max_age = zygote_max_age
        self.bwrap = shutil.which("bwrap") or "bwrap"
        self.cgroups = CgroupManager()
        self.cgroups.remove_orphans()
        self.filter = seccomp.build_filter()
        self._agent_dirs: dict[Path, Path] = {}
        self._zygotes: dict[Path, ZygoteClient] = {}
        self._retired: set[asyncio.Task[None]] = set()
        self._launching: dict[Path, asyncio.Lock] = {}
        self._renewing: dict[Path, asyncio.Task[None]] = {}

    @classmethod
    def probe(cls, settings: Settings) -> Availability:
        if not shutil.which("bwrap"):
            return Availability(False, "bwrap not found: apt-get install bubblewrap")
        if os.geteuid() != 0:
            return Availability(
                False, "needs root (the agent/program uid split needs CAP_SETUID); run as root"
            )
        try:
            CgroupManager()
            seccomp.build_filter()
        except (DriverUnavailable, OSError) as exc:
            return Availability(False, str(exc))
        return Availability(True, "bubblewrap, cgroup limits and seccomp available")

    def agent_dir(self, rootfs: Path) -> Path:
        """The agent, byte-compiled for this image's Python (cached)."""
        cached = self._agent_dirs.get(rootfs)
        if cached is None:
            cache = self.settings.home / "agent"
            target = cache / agent_source_digest() / "tvm_agent"
            compile_argv = [
                self.bwrap, "--ro-bind", str(rootfs), "/", "--tmpfs", "/.tvm",
                "--bind", str(target), "/.tvm/tvm_agent", "--proc", "/proc", "--dev", "/dev",
                "--unshare-all", "--die-with-parent", "--clearenv",
                "python3", "-m", "compileall", "-q", "/.tvm/tvm_agent",
            ]  # fmt: skip
            cached = compiled_agent(rootfs, cache, compile_argv)
            self._agent_dirs[rootfs] = cached
        return cached

    def zygote_args(self, rootfs: Path) -> list[str]:
        """bubblewrap for a zygote: the image's root, no /proc, no writable
        mount, no network; the capabilities to build sandboxes. The zygote
        stays in the service's pid and cgroup namespaces: it hands out pidfds,
        and its sandboxes enter cgroups outside its own."""
        return [
            self.bwrap,
            "--ro-bind", str(rootfs), "/",
            "--tmpfs", "/.tvm",
            "--ro-bind", str(self.agent_dir(rootfs)), "/.tvm/tvm_agent",
            "--remount-ro", "/.tvm",
            "--dev", "/dev",
            "--remount-ro", "/dev",
            "--unshare-net", "--unshare-ipc", "--unshare-uts",
            "--die-with-parent",
            "--new-session",
            "--cap-drop", "ALL",
            *[arg for cap in ZYGOTE_CAPS for arg in ("--cap-add", cap)],
            "--clearenv",
            *[arg for k, v in AGENT_ENV.items() for arg in ("--setenv", k, v)],
            "--chdir", "/",
            "--",
            "python3", "-c", ZYGOTE_BOOT,
        ]  # fmt: skip

    async def zygote(self, rootfs: Path) -> ZygoteClient:
        """This image's zygote, started (or replaced) if need be. A successor
        is started in the background as a zygote nears its age, so that no
        sandbox waits for one."""
        current = self._zygotes.get(rootfs)
        if current is not None and current.usable:
            if current.age > self.zygote_max_age * 0.8 and rootfs not in self._renewing:
                self._renewing[rootfs] = asyncio.create_task(self._renew(rootfs))
            return current
        async with self._launching.setdefault(rootfs, asyncio.Lock()):
            current = self._zygotes.get(rootfs)
            if current is not None and current.usable:
                return current
            zygote = await self._launch(rootfs)
            self._install(rootfs, zygote)
            return zygote

    async def _renew(self, rootfs: Path) -> None:
        try:
            async with self._launching.setdefault(rootfs, asyncio.Lock()):
                self._install(rootfs, await self._launch(rootfs))
        except Exception as exc:  # the current one serves on; the next request retries
            log.warning("cannot start a new zygote for %s: %s", rootfs.parent.name, exc)
        finally:
            self._renewing.pop(rootfs, None)

    def _install(self, rootfs: Path, zygote: ZygoteClient) -> None:
        old = self._zygotes.get(rootfs)
        self._zygotes[rootfs] = zygote
        if old is not None:
            self._retire(old)

    async def _launch(self, rootfs: Path) -> ZygoteClient:
        if rootfs not in self._agent_dirs:
            await asyncio.to_thread(self.agent_dir, rootfs)
        cgroup = await asyncio.to_thread(self.cgroups.create, f"zygote-{uuid.uuid4().hex[:8]}")
        cgroup.set_limits(ZYGOTE_MEMORY_MB << 20, ZYGOTE_PIDS)
        zygote = ZygoteClient(rootfs, cgroup, self.zygote_max_age)
        argv = enter_argv(cgroup.procs_files, self.zygote_args(rootfs))
        try:
            await asyncio.wait_for(zygote.launch(argv, self.filter), HANDSHAKE_TIMEOUT)
        except BaseException:
            await zygote.close(0)
            raise
        return zygote

    def _retire(self, zygote: ZygoteClient) -> None:
        zygote.retire()
        lifetime = self.settings.max_vm_lifetime_seconds + 5
        task = asyncio.create_task(zygote.close(lifetime))
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    async def start(self, spec: SandboxSpec) -> Sandbox:
        if not (spec.rootfs / "usr/bin/python3").exists():
            raise SandboxError(f"image {spec.rootfs} has no /usr/bin/python3 for the agent")
        cgroup = self.cgroups.create(f"sb-{uuid.uuid4().hex[:12]}")
        sandbox = NamespaceSandbox(spec, cgroup)
        cgroup.set_limits(spec.memory_mb << 20, spec.processes, cpus=spec.cpus)
        mb = 1 << 20
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        err_r, err_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        os.set_blocking(err_w, True)
        sandbox.stderr_fd = err_r
        fds = [theirs.fileno(), err_w]
        try:
            for path in cgroup.procs_files + cgroup.program_procs_files:
                fds.append(os.open(path, os.O_WRONLY | os.O_CLOEXEC))
            fds.append(os.open(cgroup.program_cpu_file, os.O_RDONLY | os.O_CLOEXEC))
            request = {
                "type": "fork",
                "workdir_bytes": spec.workdir_mb * mb,
                "tmp_bytes": spec.tmp_mb * mb,
                "shm_bytes": SHM_MB * mb,
                "home_bytes": spec.home_mb * mb,
                "cgroups": len(cgroup.procs_files),
                "program_cgroups": len(cgroup.program_procs_files),
                "init": to_wire(sandbox.init_message()),  # no round trip for it after the hello
            }
            for attempt in range(3):
                zygote = await self.zygote(spec.rootfs)
                try:
                    reply, pidfds = await zygote.request(request, fds)
                    break
                except ZygoteGone:  # replaced meanwhile: ask its successor
                    if attempt == 2:
                        raise
            sandbox.pidfd = pidfds[0]
            sandbox.pid = int(str(reply["pid"]))
            sandbox.attach(await StreamChannel.over_socket(ours))
        except BaseException:
            ours.close()
            await sandbox.destroy()
            raise
        finally:
            theirs.close()
            for fd in fds[1:]:
                os.close(fd)
        return await sandbox.ready(HANDSHAKE_TIMEOUT)

    async def close(self) -> None:
        for task in list(self._renewing.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        zygotes = list(self._zygotes.values())
        self._zygotes.clear()
        await asyncio.gather(*(z.close(2.0) for z in zygotes), *self._retired)
