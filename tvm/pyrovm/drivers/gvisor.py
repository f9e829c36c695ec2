"""The ``gvisor`` driver: each sandbox is one ``runsc run`` of a generated OCI bundle.

gVisor's Sentry is a user-space kernel: the program's system calls never reach
the host kernel directly. On top of that, per sandbox:

* ``--network=none`` (loopback only), its own pid/ipc/uts/mount namespaces;
* root = the language image, read-only; size-capped tmpfs ``/work``, ``/tmp``;
  the agent directory bind-mounted read-only at ``/.tvm/tvm_agent``;
* the agent runs as uid 0 with only CAP_SETUID/CAP_SETGID under
  no_new_privileges and drops the program to its own uid (as in ``namespace``);
* memory and pids caps: ``linux.resources`` in the bundle (what the Sentry
  shows as its memory size) and a host cgroup around runsc, entered before it
  starts (what the host kernel enforces);
* the agent's channel is runsc's stdin/stdout.

When a program exceeds the memory cap the host OOM killer ends the Sentry, so
the whole sandbox dies with it: the base sandbox's memory-limit rule reports
that stage as ``memory_limit`` (its output is lost), not as an agent failure.
CPU is capped by the host cgroup's CFS quota and measured by its counter,
which sees what the Sentry cannot attribute (children reaped by the kernel):
a stage well past its CPU time is ended with the whole sandbox, as ``timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tvm.config.catalog import StageLimits
from tvm.errors import DriverUnavailable, SandboxError
from tvm.pyrovm.drivers import seccomp
from tvm.pyrovm.drivers.base import (
    AGENT_ARGV,
    AGENT_DIR,
    AGENT_ENV,
    HANDSHAKE_TIMEOUT,
    Availability,
    Driver,
    HostResources,
    Sandbox,
    SandboxSpec,
)
from tvm.pyrovm.drivers.cgroups import Cgroup, CgroupManager
from tvm.pyrovm.drivers.channel import PipeChannel
from tvm.pyrovm.drivers.hostproc import OutputRing, enter_argv, kill_process, run_quietly

if TYPE_CHECKING:
    from tvm.config.settings import Settings

# Host memory the Sentry, the Gofer and the agent need on top of a stage's limit.
SENTRY_OVERHEAD_MB = 96
# Host threads of the Sentry/Gofer (Go runtime) on top of the program's processes.
# The guest's own limit is enforced inside the Sentry (OCI pids limit, RLIMIT_NPROC);
# this host cap must leave room for a guest at that limit (on the ptrace platform
# each guest thread is a host thread too), or a fork bomb kills the Sentry itself.
SENTRY_THREADS = 512

# Per-sandbox state dirs in the system temp dir: tvm-gvisor-<worker pid>-*.
TEMP_PREFIX = "tvm-gvisor-"


def host_pids(processes: int) -> int:
    return 8 * processes + SENTRY_THREADS


def guest_pids(spec: SandboxSpec) -> int:
    """The sandbox's own cap inside the Sentry (the agent's processes included)."""
    return spec.processes + 8


# CAP_SETPCAP only so that the agent can empty the bounding set; it drops it at once.
CAPS = ["CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP"]


def oci_config(spec: SandboxSpec, memory_mb: int | None = None) -> dict[str, Any]:
    """The OCI runtime config of one sandbox (what ``runsc spec`` would start from)."""
    mb = 1 << 20
    tmpfs_opts = ["nosuid", "nodev", "mode=1777"]
    memory = (memory_mb or spec.memory_mb) + SENTRY_OVERHEAD_MB
    home = [
        {"destination": "/home", "type": "tmpfs", "source": "tmpfs",
         "options": [*tmpfs_opts, f"size={spec.home_mb * mb}"]}
    ] if spec.home_mb else []  # fmt: skip
    return {
        "ociVersion": "1.0.0",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": AGENT_ARGV,
            "env": [f"{k}={v}" for k, v in AGENT_ENV.items()],
            "cwd": "/",
            "capabilities": {
                "bounding": CAPS,
                "effective": CAPS,
                "permitted": CAPS,
                "inheritable": [],
                "ambient": [],
            },
            "noNewPrivileges": True,
            "rlimits": [
                {"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 4096},
            ],
        },
        "root": {"path": str(spec.rootfs), "readonly": True},
        "hostname": "tvm",
        "mounts": [
            *home,
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
            {
                "destination": "/work",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": [*tmpfs_opts, f"size={spec.workdir_mb * mb}"],
            },
            {
                "destination": "/tmp",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": [*tmpfs_opts, f"size={spec.tmp_mb * mb}"],
            },
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": [*tmpfs_opts, f"size={16 * mb}"],
            },
            {
                "destination": "/.tvm/tvm_agent",
                "type": "bind",
                "source": str(AGENT_DIR),
                "options": ["rbind", "ro", "nosuid", "nodev"],
            },
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "seccomp": seccomp.oci_profile(),
            "resources": {
                "memory": {"limit": memory * mb},
                "pids": {"limit": guest_pids(spec)},
            },
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"],
        },
    }


def runsc_flags(state_dir: Path, platform: str) -> list[str]:
    return [
        f"--root={state_dir}",
        f"--platform={platform}",
        "--network=none",
        "--ignore-cgroups",  # the host cgroup is ours, entered before runsc starts
        "--oci-seccomp",  # the same deny list as the namespace driver, inside the Sentry
    ]


class GVisorSandbox(Sandbox):
    driver = "gvisor"

    def __init__(self, spec: SandboxSpec, cgroup: Cgroup, workdir: Path, runsc: str,
                 platform: str) -> None:  # fmt: skip
        super().__init__(spec)
        self.cgroup = cgroup
        self.workdir = workdir
        self.runsc = runsc
        self.platform = platform
        self.container_id = f"tvm-{uuid.uuid4().hex[:16]}"
        self.proc: asyncio.subprocess.Process | None = None
        self.stderr = OutputRing(8192)  # runsc's, for diagnostics

    @property
    def state_dir(self) -> Path:
        return self.workdir / "state"

    async def apply_limits(self, limits: StageLimits) -> None:
        # The host pids cap must hold whatever the guest may reach: its own cap
        # is the sandbox's (the OCI pids limit), the stage's is only RLIMIT_NPROC,
        # which a fork bomb can outrun for a moment.
        guest = max(limits.processes, guest_pids(self.spec))
        self.cgroup.set_limits(
            (limits.memory_mb + SENTRY_OVERHEAD_MB) << 20, host_pids(guest), cpus=limits.cpus
        )

    def oom_kills(self) -> int:
        return self.cgroup.oom_kills()

    def host_resources(self) -> HostResources:
        pids = (self.proc.pid,) if self.proc is not None else ()
        return HostResources(pids, tuple(self.cgroup.dirs.values()), (self.workdir,))

    def cpu_ns(self) -> int:
        """The Sentry's host cgroup: the Sentry's own clock misses children
        reaped by the kernel (SIGCHLD ignored) and runs ahead of the host's (it
        counts time its threads wait for a host CPU)."""
        return self.cgroup.cpu_ns()

    def kill_all(self) -> None:
        for pid in self.cgroup.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    async def diagnostics(self) -> str:
        if self.proc and self.proc.returncode is None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 0.5)
        text = self.stderr.text()
        code = self.proc.returncode if self.proc else None
        return f"runsc exited {code}: {text}" if text or code else ""

    async def _runsc(self, *args: str) -> None:
        await run_quietly([self.runsc, *runsc_flags(self.state_dir, self.platform), *args], 10)

    async def _teardown(self) -> None:
        if self.state_dir.is_dir():
            await self._runsc("kill", self.container_id, "KILL")
            await self._runsc("delete", "--force", self.container_id)
        if self.proc is not None:
            await kill_process(self.proc)
            if self.proc.stdin:
                self.proc.stdin.close()
        await self.stderr.stop()
        await asyncio.to_thread(self.cgroup.remove)
        await asyncio.to_thread(shutil.rmtree, self.workdir, True)


class GVisorDriver(Driver):
    name = "gvisor"
    strength = 20

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.runsc = shutil.which("runsc") or "runsc"
        self.platform = settings.gvisor_platform
        self.cgroups = CgroupManager()

    @classmethod
    def probe(cls, settings: Settings) -> Availability:
        runsc = shutil.which("runsc")
        if not runsc:
            return Availability(False, "runsc not found: apt-get install runsc")
        if os.geteuid() != 0:
            return Availability(False, "needs root (runsc sandboxes and host cgroups); run as root")
        try:
            CgroupManager()
        except (DriverUnavailable, OSError) as exc:
            return Availability(False, str(exc))
        return _probe_run(runsc, settings.gvisor_platform)

    async def start(self, spec: SandboxSpec) -> Sandbox:
        if not (spec.rootfs / "usr/bin/python3").exists():
            raise SandboxError(f"image {spec.rootfs} has no /usr/bin/python3 for the agent")
        # Made here, not in a thread: a cancellation cannot come between making
        # them and the sandbox that removes them.
        cgroup = self.cgroups.create(f"gv-{uuid.uuid4().hex[:12]}")
        workdir = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-"))
        sandbox = GVisorSandbox(spec, cgroup, workdir, self.runsc, self.platform)
        try:
            cgroup.set_limits((spec.memory_mb + SENTRY_OVERHEAD_MB) << 20,
                              host_pids(spec.processes), cpus=spec.cpus)  # fmt: skip
            bundle = workdir / "bundle"
            bundle.mkdir()
            sandbox.state_dir.mkdir()
            (bundle / "config.json").write_text(json.dumps(oci_config(spec), indent=1))
            argv = enter_argv(cgroup.procs_files, [
                self.runsc, *runsc_flags(sandbox.state_dir, self.platform),
                "run", f"--bundle={bundle}", sandbox.container_id,
            ])  # fmt: skip
            sandbox.proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                start_new_session=True,
            )
        except OSError as exc:
            await sandbox.destroy()
            raise SandboxError(f"cannot start runsc: {exc}") from exc
        except BaseException:  # cancelled while runsc was being started
            await sandbox.destroy()
            raise
        assert sandbox.proc.stderr is not None
        sandbox.stderr.follow(sandbox.proc.stderr)
        sandbox.attach(PipeChannel(sandbox.proc))
        return await sandbox.ready(HANDSHAKE_TIMEOUT)


@functools.lru_cache(maxsize=4)
def _probe_run(runsc: str, platform: str) -> Availability:
    """Run ``/bin/true`` from the host's own root under runsc (cached per process)."""
    with tempfile.TemporaryDirectory(prefix=f"{TEMP_PREFIX}probe-{os.getpid()}-") as tmp:
        bundle = Path(tmp) / "bundle"
        state = Path(tmp) / "state"
        bundle.mkdir()
        state.mkdir()
        config = {
            "ociVersion": "1.0.0",
            "process": {"terminal": False, "user": {"uid": 0, "gid": 0},
                        "args": ["/bin/true"], "cwd": "/", "env": ["PATH=/usr/bin:/bin"]},
            "root": {"path": "/", "readonly": True},
            "linux": {"namespaces": [{"type": t} for t in ("pid", "network", "ipc", "mount")]},
        }  # fmt: skip
        (bundle / "config.json").write_text(json.dumps(config))
        cid = f"tvm-probe-{uuid.uuid4().hex[:8]}"
        argv = [runsc, *runsc_flags(state, platform), "run", f"--bundle={bundle}", cid]
        try:
            result = subprocess.run(
                argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return Availability(False, f"runsc --platform={platform} probe failed: {exc}")
        finally:
            subprocess.run([runsc, f"--root={state}", "delete", "--force", cid],
                           capture_output=True, timeout=30, check=False)  # fmt: skip
        if result.returncode != 0:
            tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
            return Availability(
                False,
                f"runsc --platform={platform} probe run exited {result.returncode}: {tail}; "
                "set TVM_GVISOR_PLATFORM (ptrace|systrap|kvm)",
            )
    if platform == "ptrace":
        # Every syscall of the sandbox round-trips through ptrace: 5-15x the
        # latency of the namespace driver. Stronger, so chosen by name only.
        return Availability(
            True,
            "runsc --platform=ptrace probe run succeeded (slow platform: TVM_DRIVER=gvisor "
            "to use it; auto prefers it only with systrap or kvm)",
            auto=False,
        )
    return Availability(True, f"runsc --platform={platform} probe run succeeded")
