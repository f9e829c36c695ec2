"""The ``firecracker`` driver: one Firecracker microVM per sandbox, under the jailer.

Per VM (``start_vm``):

* ``jailer`` chroots Firecracker into ``<jail>/firecracker/<id>/root``, drops it
  to the sandbox's own uid/gid, puts it in cgroups (memory, pids, a CPU quota of its vCPUs) below
  ``tvm-firecracker`` and into its own network namespace; the VM has no
  network device at all;
* the guest kernel (built by ``tvm images kernel``: an uncompressed ``vmlinux``),
  the language image's ext4 disk read-only, and a per-VM ext4 scratch disk
  for ``/work`` and ``/tmp`` are hard-linked (or created) inside the jail;
* the VM is configured over the API socket (:mod:`tvm.pyrovm.drivers.fcapi`):
  machine-config from the request's memory and CPUs, boot-source, drives,
  vsock, then ``InstanceStart``;
* the agent (the guest's init) listens on vsock port 52; the host connects to
  the hybrid-vsock Unix socket and sends ``CONNECT 52``.

Snapshots: the first VM of a (disk, kernel, memory, CPUs) key boots, waits for
the agent, pauses and writes a full snapshot; later VMs ``PUT /snapshot/load``
it (resumed) instead of booting. Teardown kills the VMM, removes the jail,
the jailer's cgroups and the network namespace; it is safe to call twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tvm.errors import ImageError
from tvm.pyrovm.agent.cgroup2 import CFS_PERIOD_US
from tvm.pyrovm.drivers import fcapi
from tvm.pyrovm.drivers.base import (
    Availability,
    Driver,
    HostResources,
    Sandbox,
    SandboxSpec,
)
from tvm.pyrovm.drivers.channel import StreamChannel
from tvm.pyrovm.drivers.hostproc import OutputRing, kill_process, run_quietly
from tvm.pyrovm.drivers.session import AgentSession
from tvm.pyrovm.vm import hostinfo
from tvm.pyrovm.vm.cmdline import guest_cmdline
from tvm.pyrovm.vm.connect import connect_with_retry, hybrid_vsock
from tvm.pyrovm.vm.disks import build_disk, make_scratch
from tvm.pyrovm.vm.guest import guest_kernel

if TYPE_CHECKING:
    from tvm.config.settings import Settings

AGENT_PORT = 52
GUEST_CID = 3
GUEST_OVERHEAD_MB = 96
PARENT_CGROUP = "tvm-firecracker"
API_SOCK = "/run/firecracker.socket"  # inside the jail
VSOCK = "/run/v.sock"
SNAP_STATE = "/run/vm.state"  # snapshot files, inside the jail (/run is the VM uid's)
SNAP_MEM = "/run/vm.mem"
BOOT_TIMEOUT = 30.0


@dataclass
class JailPaths:
    base: Path  # <chroot base>/firecracker/<id>
    vm_id: str

    @property
    def root(self) -> Path:
        return self.base / "root"

    def host(self, inside: str) -> Path:
        """The host path of a path inside the jail."""
        return self.root / inside.lstrip("/")


# Firecracker's own words on the guest command line (it adds root=/dev/vda
# itself, from the root drive): a panic or a reboot ends the VMM.
KERNEL_ARGS = ("reboot=k", "panic=1", "pci=off", "i8042.nomux", "i8042.dumbkbd")


def boot_args(spec: SandboxSpec) -> str:
    return guest_cmdline(spec, f"vsock:{AGENT_PORT}", vmm=KERNEL_ARGS, scratch="/dev/vdb")


def boot_calls(memory_mb: int, cpu_count: int, args: str) -> list[fcapi.Call]:
    """Every API call of a cold boot, in order."""
    return [
        fcapi.machine_config(cpu_count, memory_mb),
        fcapi.boot_source("/vmlinux", args),
        fcapi.drive("rootfs", "/rootfs.ext4", root=True, read_only=True),
        fcapi.drive("scratch", "/scratch.ext4", root=False, read_only=False),
        fcapi.vsock(GUEST_CID, VSOCK),
        fcapi.instance_start(),
    ]


def jailer_argv(jailer: str, firecracker: str, jail: JailPaths, uid: int, memory_mb: int,
                processes: int, netns: str | None, cgroup_version: int,
                cpus: int = 1) -> list[str]:  # fmt: skip
    """The jailer's command line: the VMM in cgroups capping its memory, its
    processes and its CPU (a CFS quota of the VM's vCPU count, so that the
    VMM's own threads cannot add cores to what the guest may use)."""
    memory = (
        f"{memory_mb + GUEST_OVERHEAD_MB}M"
        if cgroup_version == 2
        else str((memory_mb + GUEST_OVERHEAD_MB) << 20)
    )
    memory_key = "memory.max" if cgroup_version == 2 else "memory.limit_in_bytes"
    quota = cpus * CFS_PERIOD_US
    cpu = f"cpu.max={quota} {CFS_PERIOD_US}" if cgroup_version == 2 else f"cpu.cfs_quota_us={quota}"
    argv = [
        jailer, "--id", jail.vm_id, "--exec-file", firecracker,
        "--uid", str(uid), "--gid", str(uid),
        "--chroot-base-dir", str(jail.base.parent.parent),
        "--cgroup-version", str(cgroup_version), "--parent-cgroup", PARENT_CGROUP,
        "--cgroup", f"{memory_key}={memory}", "--cgroup", f"pids.max={processes + 64}",
        "--cgroup", cpu,
        "--resource-limit", "no-file=1024", "--resource-limit", "fsize=0",
    ]  # fmt: skip
    if netns:
        argv += ["--netns", netns]
    return [*argv, "--", "--api-sock", API_SOCK]


def cgroup_version() -> int:
    return 2 if Path("/sys/fs/cgroup/cgroup.controllers").exists() else 1


@dataclass
class FirecrackerVM:
    """One jailed Firecracker process and what it owns on the host."""

    jail: JailPaths
    api: fcapi.FirecrackerAPI
    netns: str | None = None
    proc: asyncio.subprocess.Process | None = None
    console: OutputRing = field(default_factory=OutputRing)

    async def run(self, calls: list[fcapi.Call]) -> None:
        for call in calls:
            await self.api.send(call)

    async def pause(self) -> None:
        await self.api.send(fcapi.pause())

    async def resume(self) -> None:
        await self.api.send(fcapi.resume())

    async def snapshot(self, state: str, memory: str) -> None:
        """Pause, then write a full snapshot (paths inside the jail)."""
        await self.pause()
        await self.api.send(fcapi.snapshot_create(state, memory))

    async def load(self, state: str, memory: str) -> None:
        await self.api.send(fcapi.snapshot_load(state, memory, resume_vm=True))

    async def connect_agent(self, timeout: float = BOOT_TIMEOUT) -> StreamChannel:
        """The agent's vsock port over hybrid vsock; until the guest listens,
        Firecracker closes the connection: retried."""

        async def exited() -> str | None:
            if self.proc is None or self.proc.returncode is None:
                return None
            return f"firecracker exited {self.proc.returncode}: {self.tail()}"

        return await connect_with_retry(
            lambda: hybrid_vsock(self.jail.host(VSOCK), AGENT_PORT), timeout=timeout,
            exited=exited, what="the agent's vsock port",
        )  # fmt: skip

    def host_resources(self) -> HostResources:
        pids = [self.proc.pid] if self.proc is not None else []
        with contextlib.suppress(OSError, ValueError):  # the jailer's child, once it runs
            pids.append(int((self.jail.root / "firecracker.pid").read_text()))
        netns = (Path("/var/run/netns") / self.netns,) if self.netns else ()
        return HostResources(tuple(pids), _cgroup_dirs(self.jail.vm_id), (self.jail.base, *netns))

    def tail(self) -> str:
        return self.console.text()

    async def kill(self) -> None:
        """Kill the VMM, remove the jail, its cgroups and netns. Idempotent."""
        await self.api.close()
        if self.proc is not None:
            await kill_process(self.proc)
        pid_file = self.jail.root / "firecracker.pid"
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid_file.read_text()), 9)
        await self.console.stop()
        await asyncio.to_thread(_remove_cgroups, self.jail.vm_id)
        await asyncio.to_thread(shutil.rmtree, self.jail.base, True)
        if self.netns:
            await run_quietly(["ip", "netns", "del", self.netns])


def _cgroup_dirs(vm_id: str) -> tuple[Path, ...]:
    """The cgroups the jailer makes for a VM (v2: one; v1: one per controller
    that :func:`jailer_argv` limits)."""
    root = Path("/sys/fs/cgroup")
    if cgroup_version() == 2:
        return (root / PARENT_CGROUP / vm_id,)
    return tuple(
        root / controller / PARENT_CGROUP / vm_id for controller in ("memory", "pids", "cpu")
    )


def _remove_cgroups(vm_id: str) -> None:
    root = Path("/sys/fs/cgroup")
    found = root.glob(f"*/{PARENT_CGROUP}/{vm_id}")
    for candidate in dict.fromkeys([*_cgroup_dirs(vm_id), *found]):
        for _ in range(50):
            if not candidate.exists():
                break
            with contextlib.suppress(OSError):
                candidate.rmdir()
            time.sleep(0.01)


def _link(source: Path, target: Path) -> None:
    """Hard-link a file into the jail (copy when on another filesystem)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


class FirecrackerSandbox(Sandbox):
    driver = "firecracker"

    def __init__(self, spec: SandboxSpec, vm: FirecrackerVM) -> None:
        super().__init__(spec)
        self.vm = vm

    async def diagnostics(self) -> str:
        return f"firecracker console: {self.vm.tail()}"

    def host_resources(self) -> HostResources:
        return self.vm.host_resources()

    async def _teardown(self) -> None:
        await self.vm.kill()


@dataclass
class Snapshot:
    directory: Path

    @property
    def state(self) -> Path:
        return self.directory / "vm.state"

    @property
    def memory(self) -> Path:
        return self.directory / "vm.mem"

    @property
    def scratch(self) -> Path:
        return self.directory / "scratch.ext4"

    def ready(self) -> bool:
        return self.state.is_file() and self.memory.is_file() and self.scratch.is_file()


class FirecrackerDriver(Driver):
    name = "firecracker"
    strength = 40

    def __init__(self, settings: Settings, snapshots: bool = True) -> None:
        super().__init__(settings)
        self.home = settings.home
        self.firecracker = shutil.which("firecracker") or "firecracker"
        self.jailer = shutil.which("jailer") or "jailer"
        self.kernel = guest_kernel(settings.home, allow_debian=False).vmlinux
        self.snapshots = snapshots
        self._snapshot_locks: dict[str, asyncio.Lock] = {}

    @classmethod
    def probe(cls, settings: Settings) -> Availability:
        for binary in ("firecracker", "jailer"):
            if not shutil.which(binary):
                return Availability(False, f"{binary} not found on PATH (see docs/isolation.md)")
        problem = hostinfo.kvm_device()
        if problem:
            return Availability(False, f"KVM unusable: {problem}")
        if os.geteuid() != 0:
            return Availability(False, "the jailer must start as root")
        try:
            guest_kernel(settings.home, allow_debian=False)
        except ImageError as exc:
            return Availability(False, exc.message)
        return Availability(True, "firecracker + jailer, /dev/kvm and the built guest kernel")

    # -- starting VMs -------------------------------------------------------------
    async def start_vm(self, vm_dir: Path, memory_mb: int, cpu_count: int,
                       language_image: Path, uid: int = 60000, processes: int = 256,
                       snapshot: Snapshot | None = None) -> FirecrackerVM:  # fmt: skip
        """A VM of that size for the image whose root filesystem is
        ``language_image``: the documented call, a front over :meth:`boot`."""
        spec = SandboxSpec(image=language_image.parent.name, rootfs=language_image, uid=uid,
                           memory_mb=memory_mb, processes=processes, cpus=cpu_count)  # fmt: skip
        return await self.boot(spec, vm_dir, snapshot)

    async def boot(self, spec: SandboxSpec, vm_dir: Path,
                   snapshot: Snapshot | None = None) -> FirecrackerVM:  # fmt: skip
        """Jail and start one VM for ``spec``: cold boot, or restore ``snapshot``."""
        uid = spec.uid
        vm_id = f"tvm-{uuid.uuid4().hex[:16]}"
        jail = JailPaths(vm_dir / "firecracker" / vm_id, vm_id)
        jail.host("/run").mkdir(parents=True)
        os.chown(jail.host("/run"), uid, uid)
        disk = await asyncio.to_thread(build_disk, spec.rootfs)
        _link(disk, jail.host("/rootfs.ext4"))
        scratch = jail.host("/scratch.ext4")
        if snapshot is not None:
            await asyncio.to_thread(shutil.copyfile, snapshot.scratch, scratch)
            _link(snapshot.state, jail.host(SNAP_STATE))
            _link(snapshot.memory, jail.host(SNAP_MEM))
        else:
            _link(self.kernel, jail.host("/vmlinux"))
            await make_scratch(scratch, spec.workdir_mb + spec.tmp_mb)
        os.chown(scratch, uid, uid)
        netns = f"tvm-{vm_id[4:16]}"
        made = await run_quietly(["ip", "netns", "add", netns])
        vm = FirecrackerVM(jail, fcapi.FirecrackerAPI(jail.host(API_SOCK)),
                           netns if made == 0 else None)  # fmt: skip
        netns_path = f"/var/run/netns/{netns}" if vm.netns else None
        argv = jailer_argv(self.jailer, self.firecracker, jail, uid, spec.memory_mb,
                           spec.processes, netns_path, cgroup_version(), spec.cpus)  # fmt: skip
        try:
            vm.proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            assert vm.proc.stdout is not None
            vm.console.follow(vm.proc.stdout)
            await vm.api.wait_ready()
            if snapshot is not None:
                await vm.load(SNAP_STATE, SNAP_MEM)
            else:
                memory = spec.memory_mb + GUEST_OVERHEAD_MB
                await vm.run(boot_calls(memory, spec.cpus, boot_args(spec)))
        except BaseException:
            await vm.kill()
            raise
        return vm

    async def _snapshot_for(self, spec: SandboxSpec) -> Snapshot | None:
        """The warm-start snapshot of this image/size, created on first use."""
        if not self.snapshots:
            return None
        disk = await asyncio.to_thread(build_disk, spec.rootfs)
        recipe = (
            f"{disk}|{self.kernel}|{self.kernel.stat().st_mtime}|{spec.memory_mb}|{spec.cpus}"
            f"|{spec.workdir_mb}|{spec.tmp_mb}"
        )
        key = hashlib.sha256(recipe.encode()).hexdigest()[:16]
        snap = Snapshot(self.home / "snapshots" / key)
        lock = self._snapshot_locks.setdefault(key, asyncio.Lock())
        async with lock:
            if snap.ready():
                return snap
            snap.directory.mkdir(parents=True, exist_ok=True)
            vm = await self.boot(spec, self.home / "jail")
            try:
                channel = await vm.connect_agent()
                await AgentSession(channel).hello()
                await channel.close()  # no request: the agent keeps listening
                await vm.snapshot(SNAP_STATE, SNAP_MEM)
                for inside, target in ((SNAP_STATE, snap.state), (SNAP_MEM, snap.memory),
                                       ("/scratch.ext4", snap.scratch)):  # fmt: skip
                    shutil.move(vm.jail.host(inside), target)
                    os.chmod(target, 0o644)  # later VMs run under other uids
            finally:
                await vm.kill()
        return snap

    async def start(self, spec: SandboxSpec) -> Sandbox:
        snap = await self._snapshot_for(spec)
        vm = await self.boot(spec, self.home / "jail", snap)
        sandbox = FirecrackerSandbox(spec, vm)
        return await sandbox.ready(BOOT_TIMEOUT, vm.connect_agent)
