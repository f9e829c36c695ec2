"""The ``namespace`` driver: bubblewrap namespaces + cgroups + seccomp.

Each sandbox is one ``bwrap`` process tree:

* new pid, mount, net (isolated loopback only), ipc, uts and cgroup namespaces;
* the language image mounted read-only as ``/``; size-capped tmpfs ``/work``,
  ``/tmp`` and ``/dev/shm``; its own ``/proc``; bwrap's minimal ``/dev``;
* the agent runs as uid 0 holding only CAP_SETUID and CAP_SETGID under
  no_new_privs, and drops the program to a per-sandbox uid (60000 + slot)
  with no capabilities. No user namespace: bwrap's own maps a single uid, which
  cannot hold both the agent and the program (see docs/isolation.md);
* a seccomp deny list (:mod:`.seccomp`), an empty environment, and a cgroup
  (:mod:`.cgroups`) capping memory and processes, entered before bwrap starts.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path

from tvm.config.catalog import StageLimits
from tvm.config.settings import get_settings
from tvm.errors import DriverUnavailable, SandboxError
from tvm.pyrovm.drivers import seccomp
from tvm.pyrovm.drivers.base import (
    AGENT_ARGV,
    AGENT_ENV,
    HANDSHAKE_TIMEOUT,
    Availability,
    Driver,
    PipeSandbox,
    Sandbox,
    SandboxSpec,
    agent_source_digest,
    compiled_agent,
    kill_process,
)
from tvm.pyrovm.drivers.cgroups import Cgroup, CgroupManager

# Memory the agent itself needs on top of a stage's own limit.
AGENT_OVERHEAD_MB = 24
# Enter the cgroups, shield the agent from the OOM killer, then become bwrap.
ENTER = (
    'for f in "$@"; do case "$f" in --) shift; break;; esac; echo $$ > "$f"; shift; done;'
    ' echo -1000 > /proc/self/oom_score_adj; exec "$@"'
)


class NamespaceSandbox(PipeSandbox):
    driver = "namespace"
    launcher = "bwrap"

    def __init__(self, spec: SandboxSpec, cgroup: Cgroup) -> None:
        super().__init__(spec)
        self.cgroup = cgroup

    async def apply_limits(self, limits: StageLimits) -> None:
        # The program's own cgroup gets exactly the stage's limits; the sandbox as
        # a whole (bwrap, the agent) a little more above it.
        self.cgroup.set_limits(
            (limits.memory_mb + AGENT_OVERHEAD_MB) << 20,
            limits.processes + 8,
            program_memory_bytes=limits.memory_mb << 20,
            program_pids=limits.processes,
        )
        self.cgroup.reset_program_peak()

    def oom_kills(self) -> int:
        return self.cgroup.oom_kills()

    def peak_memory_kb(self) -> int | None:
        return self.cgroup.program_peak_kb()

    async def destroy(self) -> None:
        if self.destroyed:
            return
        self.destroyed = True
        if self.proc is not None:
            await kill_process(self.proc)
            if self.proc.stdin:
                self.proc.stdin.close()
        await self._stop_collecting()
        await asyncio.to_thread(self.cgroup.remove)


class NamespaceDriver(Driver):
    name = "namespace"
    strength = 10

    def __init__(self) -> None:
        self.bwrap = shutil.which("bwrap") or "bwrap"
        self.cgroups = CgroupManager()
        self.cgroups.remove_orphans()
        self.filter = seccomp.build_filter()
        self._agent_dirs: dict[Path, Path] = {}

    @classmethod
    def probe(cls) -> Availability:
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
            cache = get_settings().home / "agent"
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

    def bwrap_args(self, spec: SandboxSpec, seccomp_fd: int, cgroup: Cgroup) -> list[str]:
        mb = 1 << 20
        # The program cgroup's procs files, writable by the agent only (root, 0700 dir):
        # the agent moves each program it starts there before dropping privileges.
        program_cgroups = []
        for name, procs in cgroup.program_procs_files.items():
            program_cgroups += ["--bind", str(procs), f"/.tvm/cg/{name}.procs"]
        return [
            self.bwrap,
            "--ro-bind", str(spec.rootfs), "/",
            "--tmpfs", "/.tvm",
            "--ro-bind", str(self.agent_dir(spec.rootfs)), "/.tvm/tvm_agent",
            *program_cgroups,
            "--proc", "/proc",
            "--dev", "/dev",
            "--perms", "1777", "--size", str(spec.workdir_mb * mb), "--tmpfs", "/work",
            "--perms", "1777", "--size", str(spec.tmp_mb * mb), "--tmpfs", "/tmp",
            "--perms", "1777", "--size", str(16 * mb), "--tmpfs", "/dev/shm",
            "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup",
            "--hostname", "tvm",
            "--die-with-parent",
            "--new-session",
            "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
            # Only so that the agent can empty the bounding set (bwrap leaves it
            # full when it runs as root); the agent drops CAP_SETPCAP right after.
            "--cap-add", "CAP_SETPCAP",
            "--clearenv",
            *[arg for k, v in AGENT_ENV.items() for arg in ("--setenv", k, v)],
            "--seccomp", str(seccomp_fd),
            "--chdir", "/",
            "--",
            *AGENT_ARGV,
        ]  # fmt: skip

    async def start(self, spec: SandboxSpec) -> Sandbox:
        if not (spec.rootfs / "usr/bin/python3").exists():
            raise SandboxError(f"image {spec.rootfs} has no /usr/bin/python3 for the agent")
        if spec.rootfs not in self._agent_dirs:
            await asyncio.to_thread(self.agent_dir, spec.rootfs)
        cgroup = await asyncio.to_thread(self.cgroups.create, f"sb-{uuid.uuid4().hex[:12]}")
        sandbox = NamespaceSandbox(spec, cgroup)
        cgroup.set_limits(spec.memory_mb << 20, spec.processes)
        fd = os.memfd_create("tvm-seccomp", 0)
        try:
            os.write(fd, self.filter)
            os.lseek(fd, 0, os.SEEK_SET)
            argv = ["/bin/sh", "-c", ENTER, "sh"]
            argv += [str(p) for p in cgroup.procs_files] + ["--"]
            argv += self.bwrap_args(spec, fd, cgroup)
            sandbox.proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(fd,),
                env={"PATH": "/usr/bin:/bin"},
            )
        except OSError as exc:
            await sandbox.destroy()
            raise SandboxError(f"cannot start bwrap: {exc}") from exc
        finally:
            os.close(fd)
        sandbox.collect_stderr()
        return await sandbox.ready(HANDSHAKE_TIMEOUT)
