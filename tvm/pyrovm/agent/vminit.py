"""The agent as a microVM's init (PID 1). Stdlib only.

Boot: mount /proc, /sys, /dev, a cgroup v2 tree, size-capped tmpfs /work and
/tmp; set the clock and hostname; open the agent channel; then serve exactly
the protocol of :mod:`main` with the same :class:`main.Agent`; power off on
``shutdown`` or when the host goes away.

Settings come from the kernel command line (``/proc/cmdline``):

    tvm.channel=virtio:agent   virtio-serial port named "agent" (QEMU)
    tvm.channel=vsock:52       listen on AF_VSOCK port 52 (Firecracker)
    tvm.work_mb=64 tvm.tmp_mb=64   tmpfs sizes
    tvm.home_mb=256            a live sandbox's writable /home (tmpfs)
    tvm.scratch=/dev/vdb       /work and /tmp on this disk instead (Firecracker)
    tvm.clock=<unix seconds>   the host's time at boot

Inside the VM the guest's memory size is the hard cap and its vCPU count the
CPU cap. On top of that the guest's own cgroup v2 tree has the same layout as
a sandbox on a v2 host (:mod:`cgroup2`): PID 1 in ``sandbox/agent``, every
stage's program in ``sandbox/program``, whose ``memory.max`` and ``pids.max``
are the stage's limits (an OOM kill there is reported as ``memory_limit``) and
whose ``cpu.stat`` is the stage's CPU time: the supervisor reads it while the
stage runs, so every descendant counts, reaped or not, and the stage is killed
as soon as it passes its CPU limit, exactly as under the namespace driver.
PID 1 itself is never chosen by the OOM killer.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import socket
import sys
import time

from . import cgroup2, protocol, supervisor
from . import main as agent_main

CHUNK = 32 << 10  # a virtio-serial write carries at most ~32 KiB
CGROUP = "/sys/fs/cgroup"
SANDBOX_CGROUP = CGROUP + "/sandbox"
PROGRAM_CGROUP = f"{SANDBOX_CGROUP}/{cgroup2.PROGRAM}"
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND = 2, 4, 8, 4096
RB_POWER_OFF = 0x4321FEDC
RB_AUTOBOOT = 0x01234567
AF_VSOCK = 40
VMADDR_CID_ANY = 0xFFFFFFFF

_libc = ctypes.CDLL(None, use_errno=True)


def log(message: str) -> None:
    with contextlib.suppress(OSError), open("/dev/console", "w") as console:
        console.write(f"tvm-init: {message}\n")


def mount(source: str, target: str, fstype: str, flags: int = 0, data: str = "") -> None:
    os.makedirs(target, exist_ok=True)
    if _libc.mount(source.encode(), target.encode(), fstype.encode(), flags, data.encode()) != 0:
        err = ctypes.get_errno()
        if err != 16:  # EBUSY: already mounted (devtmpfs automount)
            raise OSError(err, f"mount {fstype} on {target}: {os.strerror(err)}")


def cmdline(path: str = "/proc/cmdline") -> dict[str, str]:
    """``tvm.*`` settings from the kernel command line."""
    with open(path) as fh:
        words = fh.read().split()
    return {k[4:]: v for k, _, v in (w.partition("=") for w in words) if k.startswith("tvm.")}


def setup_filesystems(settings: dict[str, str]) -> None:
    nosuid = MS_NOSUID | MS_NODEV
    mount("sysfs", "/sys", "sysfs", nosuid | MS_NOEXEC)
    mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):  # fmt: skip
        with contextlib.suppress(OSError):
            os.symlink(target, f"/dev/{name}")
    mount("tmpfs", "/dev/shm", "tmpfs", nosuid, "mode=1777,size=16m")
    if int(settings.get("home_mb", "0")):
        mount("tmpfs", "/home", "tmpfs", nosuid, f"mode=1777,size={settings['home_mb']}m")
    with contextlib.suppress(OSError):  # ptys, for streamed stages in terminal mode
        os.makedirs("/dev/pts", exist_ok=True)
        mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
              "newinstance,ptmxmode=0666,mode=0620")  # fmt: skip
        if os.path.lexists("/dev/ptmx"):
            os.unlink("/dev/ptmx")
        os.symlink("pts/ptmx", "/dev/ptmx")
    if settings.get("scratch"):
        setup_scratch(settings["scratch"])
        return
    work_mb = int(settings.get("work_mb", "64"))
    tmp_mb = int(settings.get("tmp_mb", "64"))
    mount("tmpfs", "/work", "tmpfs", nosuid, f"mode=1777,size={work_mb}m")
    mount("tmpfs", "/tmp", "tmpfs", nosuid, f"mode=1777,size={tmp_mb}m")


def setup_cgroup(root: str = CGROUP) -> bool:
    """The sandbox's cgroup v2 tree (:mod:`cgroup2`) with PID 1 in its agent
    leaf; the program leaf's procs file and CPU counter handed to the
    supervisor, as a namespace sandbox's zygote hands over the host's."""
    sandbox, program = f"{root}/sandbox", f"{root}/sandbox/{cgroup2.PROGRAM}"
    try:
        if root == CGROUP:
            mount("cgroup2", root, "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        with open(f"{root}/cgroup.controllers") as fh:
            offered = fh.read().split()
        controllers = tuple(c for c in cgroup2.CONTROLLERS if c in offered)
        if "memory" not in controllers or "pids" not in controllers:
            raise OSError(f"the guest kernel offers only {controllers} cgroup controllers")
        cgroup2.enable_controllers(root, controllers)
        cgroup2.make_sandbox(sandbox, controllers)
        cgroup2.write(f"{sandbox}/{cgroup2.AGENT}/cgroup.procs", str(os.getpid()))
        procs = os.open(f"{program}/cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
        supervisor.PROGRAM_CGROUP_FDS[:] = [procs]
        if "cpu" in controllers:  # else the supervisor counts CPU itself
            supervisor.PROGRAM_CPU_FDS[:] = [
                os.open(f"{program}/cpu.stat", os.O_RDONLY | os.O_CLOEXEC)
            ]
        else:
            log("no cpu cgroup controller in the guest kernel: CPU time counted by the agent")
        return True
    except OSError as exc:
        log(f"no cgroup limits inside the VM ({exc}); the VM size is the only memory cap")
        return False


def setup_clock_and_name(settings: dict[str, str]) -> None:
    with contextlib.suppress(OSError):
        socket.sethostname("tvm")
    epoch = settings.get("clock")
    if epoch and epoch.isdigit():

        class Timespec(ctypes.Structure):
            _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

        _libc.clock_settime(0, ctypes.byref(Timespec(int(epoch), 0)))


def reap(*_: object) -> None:
    """Collect orphans that were re-parented to PID 1 (outside stages)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def limit_program(limits: dict | None, cgroup: str = PROGRAM_CGROUP) -> None:
    """The program leaf's caps for the next stage (``None``: none)."""
    if limits is None:
        values = {"memory.max": "max", "pids.max": "max"}
    else:
        values = cgroup2.limits(int(limits["memory_mb"]) << 20, int(limits["processes"]))
    for name, value in values.items():
        with contextlib.suppress(OSError):
            cgroup2.write(f"{cgroup}/{name}", value)


class VMAgent(agent_main.Agent):
    """The agent over a virtio-serial port or a vsock stream, with in-guest cgroups."""

    cgroups = False

    def send(self, message: dict) -> None:
        data = memoryview(protocol.encode(message))
        while data:
            data = data[os.write(self.wfd, data[:CHUNK]) :]

    def on_stage(self, message: dict) -> dict:
        if not self.cgroups:
            return super().on_stage(message)
        limit_program(message["limits"])
        before = cgroup2.oom_kills(PROGRAM_CGROUP)
        try:
            result = super().on_stage(message)
        finally:
            limit_program(None)
        if cgroup2.oom_kills(PROGRAM_CGROUP) > before and result.get("signal") == "SIGKILL":
            result["status"] = "memory_limit"
        return result


class PortReader:
    """Reads a virtio-serial port: 0 bytes means "host not connected" until the
    host has connected once; after that it means the host went away (EOF)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.connected = False

    def wait_for_host(self) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLOUT)
        while True:  # the port reports POLLHUP for as long as no host is connected
            events = poller.poll(1000)
            if events and not any(ev & select.POLLHUP for _, ev in events):
                self.connected = True
                return
            time.sleep(0.02)

    def fileno(self) -> int:  # a streamed stage polls the channel (agent/stream.py)
        return self.fd

    def read(self, n: int) -> bytes:
        while True:
            data = os.read(self.fd, n)
            if data or self.connected:
                return data
            time.sleep(0.02)


def find_port(name: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            for entry in os.listdir("/sys/class/virtio-ports"):
                with open(f"/sys/class/virtio-ports/{entry}/name") as fh:
                    if fh.read().strip() == name:
                        return f"/dev/{entry}"
        time.sleep(0.05)
    raise OSError(f"no virtio-serial port named {name!r}")


def serve_virtio(name: str, cgroups: bool) -> None:
    path = find_port(name)
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    reader = PortReader(fd)
    reader.wait_for_host()
    agent = VMAgent(os.dup(fd), fd)
    agent.rfile = reader  # type: ignore[assignment]
    agent.cgroups = cgroups
    agent.serve()


class _SessionReader:
    """Remembers whether the host sent anything on this connection."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.used = False

    def read(self, n: int) -> bytes:
        data = os.read(self.fd, n)
        self.used = self.used or bool(data)
        return data


def serve_vsock(port: int, cgroups: bool) -> None:
    """Firecracker: listen on vsock; the host's ``CONNECT <port>`` lands here.

    A connection closed before any request (the host checking readiness before
    a snapshot; connections are reset by snapshot/restore) is not a session:
    keep listening. The first real session ends the VM."""
    server = socket.socket(AF_VSOCK, socket.SOCK_STREAM)
    server.bind((VMADDR_CID_ANY, port))
    server.listen(1)
    while True:
        conn, _ = server.accept()
        fd = conn.detach()
        reader = _SessionReader(fd)
        agent = VMAgent(os.dup(fd), fd)
        agent.rfile = reader  # type: ignore[assignment]
        agent.cgroups = cgroups
        with contextlib.suppress(OSError):
            agent.serve()
        os.close(fd)
        if reader.used:
            return


def setup_scratch(device: str) -> None:
    """Put /work and /tmp on a per-VM scratch disk (ext4 made by the host)."""
    for _ in range(200):
        if os.path.exists(device):
            break
        time.sleep(0.01)
    mount(device, "/mnt", "ext4", MS_NOSUID | MS_NODEV)
    for name in ("work", "tmp"):
        path = f"/mnt/{name}"
        os.makedirs(path, exist_ok=True)
        os.chmod(path, 0o1777)
        mount(path, f"/{name}", "", MS_BIND)


def power_off() -> None:
    os.sync()
    _libc.reboot(RB_POWER_OFF)
    _libc.reboot(RB_AUTOBOOT)  # no power-off method: reboot (the VMM exits on it)


def main() -> None:
    if os.getpid() != 1:
        sys.exit("tvm-init: must run as PID 1 of a VM")
    try:
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        settings = cmdline()
        setup_filesystems(settings)
        setup_clock_and_name(settings)
        cgroups = setup_cgroup()
        signal.signal(signal.SIGCHLD, reap)
        agent_main._prctl(agent_main.PR_SET_DUMPABLE, 0)
        os.environ.clear()
        os.environ["PATH"] = agent_main.DEFAULT_ENV["PATH"]
        kind, _, where = settings.get("channel", "virtio:agent").partition(":")
        log(f"serving the agent over {kind}:{where}")
        if kind == "vsock":
            serve_vsock(int(where), cgroups)
        else:
            serve_virtio(where, cgroups)
        log("host said goodbye; powering off")
    except BaseException as exc:  # PID 1 must never just exit: say why, then power off
        log(f"fatal: {type(exc).__name__}: {exc}")
    finally:
        power_off()


if __name__ == "__main__":
    main()
