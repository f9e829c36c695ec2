"""The ``qemu`` driver: one ``qemu-system-x86_64 -M microvm`` per sandbox.

* the guest kernel (built ``vmlinux``, else Debian's cloud kernel + initrd);
* the language image as a read-only virtio-blk ext4 disk (:mod:`..vm.disks`);
  ``/work`` and ``/tmp`` are size-capped tmpfs inside the guest;
* no network device at all; QEMU's own seccomp sandbox; the VM size (``-m``)
  is the hard memory cap, a cgroup inside the guest caps each stage;
* the agent is the guest's init (``agent/vminit.py``) and talks over a
  virtio-serial port backed by a Unix socket in a per-VM temp dir;
* KVM only where a real probe boot under KVM succeeds; otherwise TCG (a
  software CPU: seconds per boot, so ``auto`` never prefers it).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from tvm.errors import DriverUnavailable, ImageError, SandboxError
from tvm.pyrovm.drivers.base import (
    Availability,
    Driver,
    HostResources,
    Sandbox,
    SandboxSpec,
)
from tvm.pyrovm.drivers.cgroups import Cgroup, CgroupManager
from tvm.pyrovm.drivers.channel import Channel
from tvm.pyrovm.drivers.hostproc import OutputRing, enter_argv, kill_process
from tvm.pyrovm.vm import hostinfo
from tvm.pyrovm.vm.cmdline import guest_cmdline
from tvm.pyrovm.vm.connect import connect_with_retry, unix_socket
from tvm.pyrovm.vm.disks import build_disk
from tvm.pyrovm.vm.guest import GuestKernel, guest_kernel

if TYPE_CHECKING:
    from tvm.config.settings import Settings

QEMU = "qemu-system-x86_64"
GUEST_OVERHEAD_MB = 128  # guest kernel + page cache on top of the sandbox's memory
TB_SIZE_MB = 256  # TCG translation cache
BOOT_TIMEOUT = {"kvm": 30.0, "tcg": 120.0}
KVM_PROBE_TIMEOUT = 20.0


# QEMU's own words on the guest command line: its root disk, and a panic
# reboots at once (which, with -no-reboot, ends QEMU).
KERNEL_ARGS = ("root=/dev/vda", "ro", "rootfstype=ext4", "panic=-1")


def qemu_argv(qemu: str, accel: str, kernel: GuestKernel, memory_mb: int, cpus: int,
              append: str) -> list[str]:  # fmt: skip
    argv = [qemu, "-M", "microvm", "-m", str(memory_mb), "-smp", str(cpus)]
    if accel == "kvm":
        argv += ["-accel", "kvm", "-cpu", "host"]
    else:
        argv += ["-accel", f"tcg,tb-size={TB_SIZE_MB}", "-cpu", "max"]
    argv += [
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-serial", "stdio",
        "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
        "-kernel", str(kernel.vmlinux), "-append", append,
    ]  # fmt: skip
    if kernel.initrd is not None:
        argv += ["-initrd", str(kernel.initrd)]
    return argv


def sandbox_argv(qemu: str, accel: str, kernel: GuestKernel, spec: SandboxSpec, disk: Path,
                 socket_path: Path) -> list[str]:  # fmt: skip
    memory = max(256, spec.memory_mb + GUEST_OVERHEAD_MB)
    append = guest_cmdline(spec, "virtio:agent", vmm=KERNEL_ARGS, software_cpu=accel == "tcg")
    argv = qemu_argv(qemu, accel, kernel, memory, spec.cpus, append)
    return [
        *argv,
        "-drive", f"id=root,file={disk},format=raw,if=none,readonly=on",
        "-device", "virtio-blk-device,drive=root",
        "-chardev", f"socket,id=c0,path={socket_path},server=on,wait=off",
        "-device", "virtio-serial-device",
        "-device", "virtserialport,chardev=c0,name=agent",
    ]  # fmt: skip


class QemuSandbox(Sandbox):
    driver = "qemu"

    def __init__(self, spec: SandboxSpec, workdir: Path, cgroup: Cgroup | None) -> None:
        super().__init__(spec)
        self.workdir = workdir
        self.cgroup = cgroup
        self.proc: asyncio.subprocess.Process | None = None
        self.console = OutputRing(16384)

    @property
    def socket_path(self) -> Path:
        return self.workdir / "agent.sock"

    async def connect(self, timeout: float) -> Channel:
        """QEMU's chardev socket, as soon as it exists."""

        async def exited() -> str | None:
            if self.proc is None or self.proc.returncode is None:
                return None
            return await self.diagnostics()

        return await connect_with_retry(
            lambda: unix_socket(self.socket_path), timeout=timeout, exited=exited,
            what="qemu's agent socket", delay=0.01, max_delay=0.01,
        )  # fmt: skip

    def host_resources(self) -> HostResources:
        pids = (self.proc.pid,) if self.proc is not None else ()
        cgroups = tuple(self.cgroup.dirs.values()) if self.cgroup is not None else ()
        return HostResources(pids, cgroups, (self.workdir,))

    async def diagnostics(self) -> str:
        code = self.proc.returncode if self.proc else None
        return f"qemu exit status {code}; console: {self.console.text(3000)}"

    async def _teardown(self) -> None:
        if self.session is not None:
            await self.session.shutdown(0.5)  # the guest powers off
            await self.session.channel.close()
        if self.proc is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 0.5)
            await kill_process(self.proc)
        await self.console.stop()
        if self.cgroup is not None:
            await asyncio.to_thread(self.cgroup.remove)
        await asyncio.to_thread(shutil.rmtree, self.workdir, True)


class QemuDriver(Driver):
    name = "qemu"
    strength = 30  # uses KVM when it works, TCG otherwise

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.qemu = shutil.which(QEMU) or QEMU
        self.kernel = guest_kernel(settings.home)
        self.accel = _choose_accel(self.qemu, self.kernel, settings)[0]
        try:
            self.cgroups: CgroupManager | None = CgroupManager()
        except (DriverUnavailable, OSError):
            self.cgroups = None  # the VM size is still the hard cap

    @classmethod
    def probe(cls, settings: Settings) -> Availability:
        qemu = shutil.which(QEMU)
        if not qemu:
            return Availability(False, f"{QEMU} not found: apt-get install qemu-system-x86")
        try:
            kernel = guest_kernel(settings.home)
        except ImageError as exc:
            return Availability(False, exc.message)
        accel, why = _choose_accel(qemu, kernel, settings)
        if accel == "tcg" and hostinfo.tsc_khz() is None:
            return Availability(False, f"TCG needs the host TSC frequency (no dmesg); {why}")
        where = f"kernel: {kernel.description}"
        if accel == "kvm":
            return Availability(True, f"KVM ({why}); {where}")
        return Availability(
            True,
            f"TCG software CPU, seconds per boot ({why}); {where}; "
            "used only when chosen by name (TVM_DRIVER=qemu)",
            auto=False,
        )

    async def start(self, spec: SandboxSpec) -> Sandbox:
        try:
            disk = await asyncio.to_thread(build_disk, spec.rootfs)
        except OSError as exc:
            raise SandboxError(f"cannot make the VM disk of {spec.image}: {exc}") from exc
        workdir = Path(tempfile.mkdtemp(prefix=f"tvm-qemu-{os.getpid()}-"))
        cgroup = None
        if self.cgroups is not None:
            cgroup = await asyncio.to_thread(self.cgroups.create, f"qm-{uuid.uuid4().hex[:12]}")
        sandbox = QemuSandbox(spec, workdir, cgroup)
        argv = sandbox_argv(self.qemu, self.accel, self.kernel, spec, disk, sandbox.socket_path)
        try:
            if cgroup is not None:
                vmm_mb = max(256, spec.memory_mb + GUEST_OVERHEAD_MB) + TB_SIZE_MB + 256
                cgroup.set_limits(vmm_mb << 20, 256, cpus=spec.cpus)  # the vCPUs, no more
                argv = enter_argv(cgroup.procs_files, argv)
            sandbox.proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                env={"PATH": "/usr/bin:/bin"},
            )
        except OSError as exc:
            await sandbox.destroy()
            raise SandboxError(f"cannot start qemu: {exc}") from exc
        assert sandbox.proc.stdout is not None
        sandbox.console.follow(sandbox.proc.stdout)
        return await sandbox.ready(BOOT_TIMEOUT[self.accel], lambda: sandbox.connect(10))


def _choose_accel(qemu: str, kernel: GuestKernel, settings: Settings) -> tuple[str, str]:
    """("kvm" | "tcg", why)."""
    wanted = settings.qemu_accel
    if wanted == "tcg":
        return "tcg", "TVM_QEMU_ACCEL=tcg"
    problem = hostinfo.kvm_device() or _kvm_probe_boot(qemu, str(kernel.vmlinux), settings.run_dir)
    if problem is None:
        return "kvm", "a probe boot under KVM succeeded"
    if wanted == "kvm":
        raise DriverUnavailable(f"TVM_QEMU_ACCEL=kvm but KVM is unusable: {problem}")
    return "tcg", f"KVM unusable: {problem}"


@functools.lru_cache(maxsize=4)
def _kvm_probe_boot(qemu: str, vmlinux: str, run_dir: Path) -> str | None:
    """Boot the kernel under KVM with no disk: reaching the root-mount panic proves
    the CPU works (a broken nested KVM stops with "KVM internal error").
    The verdict is cached per process and on disk per (qemu, kernel, host kernel)."""
    cache = run_dir / "qemu-kvm-probe.json"
    key = f"{qemu}|{vmlinux}|{Path(vmlinux).stat().st_mtime}|{os.uname().release}"
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(cache.read_text())
        if data.get("key") == key:
            return data.get("problem")
    problem = _boot_once(qemu, vmlinux)
    with contextlib.suppress(OSError):
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"key": key, "problem": problem}))
    return problem


def _boot_once(qemu: str, vmlinux: str) -> str | None:
    append = "console=ttyS0 panic=-1 8250.nr_uarts=1 root=/dev/nonexistent"
    kernel = GuestKernel(Path(vmlinux), None, "probe")
    argv = qemu_argv(qemu, "kvm", kernel, 128, 1, append)
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=KVM_PROBE_TIMEOUT,
            stdin=subprocess.DEVNULL, errors="replace",
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return f"probe boot under KVM did not finish in {KVM_PROBE_TIMEOUT:.0f}s"
    except OSError as exc:
        return f"cannot run {qemu}: {exc}"
    output = result.stdout + result.stderr
    if "KVM internal error" in output:
        return "probe boot under KVM stopped with a KVM internal error (nested KVM broken?)"
    if "Kernel panic" in output or "VFS:" in output:
        return None
    tail = " | ".join(output.strip().splitlines()[-3:]) or f"exit status {result.returncode}"
    return f"probe boot under KVM failed: {tail}"
