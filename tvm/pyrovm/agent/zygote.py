"""The zygote: one pre-started agent per image that forks fresh sandboxes.

The namespace driver starts one zygote per image under bubblewrap, with the
image as its read-only root and, besides the agent's own capabilities, those
needed to build namespaces (CAP_SYS_ADMIN, CAP_NET_ADMIN). It never runs user
code and has no /proc. For every sandbox the worker sends one request over a
SOCK_SEQPACKET socket with the sandbox's descriptors attached (its agent
channel, its stderr, its cgroups' ``cgroup.procs`` files); the zygote forks the
sandbox's agent as pid 1 of a new pid namespace (``unshare(CLONE_NEWPID)``
before the fork, and ``setns`` back to its own after) and answers with a
pidfd for it. The new agent, before it serves anyone:

1. moves itself into the sandbox's cgroups (writes 0 to their procs files),
2. unshares new mount, net, ipc, uts and cgroup namespaces,
3. builds its own root and pivots into it (:mod:`mounts`: the image as a
   read-only overlay of its own, fresh size- and inode-capped tmpfs on /work,
   /tmp and /dev/shm, a new devpts instance of at most ``PTY_MAX`` terminals
   and its own /proc), sets the hostname and brings the isolated loopback up,
4. takes its own session, keeps only CAP_SETUID/CAP_SETGID (its bounding
   set is already empty: the zygote emptied its own once, before forking
   any sandbox), loads the seccomp filter,

and then serves its channel exactly as an agent started directly by
bubblewrap would. If the zygote dies, its sandboxes die with it.

Forking an interpreter whose agent is already imported costs about a
millisecond of CPU; starting an interpreter costs 15-20. What the sandboxes of
one zygote share is what ``fork`` shares: the interpreter's hash secret and
address layout, never any state of a user's program (the zygote runs none).
The driver replaces each zygote after a while, which renews both.

Stdlib only; runs inside the image.
"""

from __future__ import annotations

import _signal
import base64
import ctypes
import fcntl
import gc
import io
import json
import marshal
import os
import signal
import socket
import struct
import sys
import tarfile  # loaded once here for every sandbox's archive and unpack (main.py)

from . import main as agent_main
from . import mounts, protocol
from .mounts import check as _check

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
# Made by the agent itself, once in its new pid namespace and cgroup.
NAMESPACES = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET

PR_SET_PDEATHSIG = 1
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
IFF_RUNNING = 0x40

# The agent keeps exactly these. The zygote empties its bounding set once,
# before it forks anything (CAP_SETPCAP): every sandbox inherits it empty, and
# its capset (inheritable 0, so no ambient caps either) is all it needs.
CAP_SETGID, CAP_SETUID = 6, 7
AGENT_CAPS = (1 << CAP_SETGID) | (1 << CAP_SETUID)
MAX_FDS = 16
HOSTNAME = "tvm"

_libc = agent_main.libc()


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sh", b"lo", IFF_UP | IFF_RUNNING))


def _capset(caps: int) -> None:
    header = agent_main._CapHeader(agent_main._LINUX_CAPABILITY_VERSION_3, 0)
    data = (agent_main._CapData * 2)()
    data[0].effective = data[0].permitted = caps & 0xFFFFFFFF
    data[1].effective = data[1].permitted = caps >> 32
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def _load_seccomp(program: bytes) -> None:
    if not program:
        return
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.addressof(buf))
    _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "seccomp")


def warm_up(rounds: int = 20) -> None:
    """Run the agent's pure protocol path (frames, JSON, base64, the runner's
    marshal) here, before any fork. Python 3.11 quickens a function's bytecode
    after a few calls and rewrites it as it specialises: done in every
    sandbox, those writes copy the pages they land on; done here, the
    sandboxes inherit the result. No user data and no state: plain values."""
    message = {
        "type": "hello",
        "protocol": protocol.PROTOCOL_VERSION,
        "python": "3",
        "pyrun": True,
        "pid": 1,
        "initialized": True,
        "values": [0, None, 0.5, "é"],
    }
    program = (["python3", "main.py"], {"PATH": "/bin"}, "/work", b"", {"k": 1}, 1, 1, None)
    for _ in range(rounds):
        protocol.read_frame(io.BytesIO(protocol.encode(message)).read)
        base64.b64decode(base64.b64encode(b"tvm").decode())
        marshal.loads(marshal.dumps(program))
        _tar_round_trip()


def _tar_round_trip() -> None:
    """What a compile-once job's ``archive`` and each case's ``unpack`` run,
    in memory (nothing is extracted to disk)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        info = tarfile.TarInfo("a.out")
        info.size, info.mode = 3, 0o755
        tar.addfile(info, io.BytesIO(b"tvm"))
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        for member in tar:
            if hasattr(tarfile, "data_filter"):
                tarfile.data_filter(member, "/work")
            extracted = tar.extractfile(member)
            if extracted is not None:
                extracted.read()


class Zygote:
    def __init__(self, control: socket.socket, baseline: set[str] | None) -> None:
        self.control = control
        self.baseline = baseline
        self.seccomp = b""
        self.own_pidns = -1  # to return to after each fork into a new one

    def serve(self) -> None:
        # Sandboxes are reaped by the kernel; each restores SIGCHLD for its own.
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)
        warm_up()
        if not agent_main.drop_bounding_set():
            raise OSError("cannot empty the bounding set (no CAP_SETPCAP?)")
        # Keep the collector off what every sandbox inherits: a collection in a
        # child would otherwise touch, and so copy, the whole heap.
        gc.freeze()
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self.control, 1 << 16, MAX_FDS)
            except InterruptedError:
                continue
            except ConnectionResetError:
                break  # the worker went away
            if not data:
                break  # the worker is done with this zygote
            try:
                reply, pidfd = self.handle(json.loads(data), fds)
            except Exception as exc:
                reply, pidfd = {"error": f"{type(exc).__name__}: {exc}"}, None
            finally:
                for fd in fds:
                    os.close(fd)
            try:
                passed = [pidfd] if pidfd is not None else []
                socket.send_fds(self.control, [json.dumps(reply).encode()], passed)
            except OSError:
                break  # the worker gave up on this zygote (it stopped reading)
            finally:
                if pidfd is not None:
                    os.close(pidfd)
        # Let the sandboxes still running finish before going away: they die
        # with the zygote.
        self.control.close()
        try:
            while True:
                os.wait()
        except ChildProcessError:
            pass

    def handle(self, request: dict, fds: list[int]) -> tuple[dict, int | None]:
        if request["type"] == "config":
            self.seccomp = bytes.fromhex(request["seccomp"])
            self.own_pidns = os.dup(fds[0])  # the pid namespace we run in
            return {"ok": True}, None
        if request["type"] != "fork":
            raise ValueError(f"unknown request {request['type']!r}")
        # The next child (only) is pid 1 of a new pid namespace.
        _check(_libc.unshare(CLONE_NEWPID), "unshare pid")
        try:
            pid = os.fork()
        except BaseException:
            _check(_libc.setns(self.own_pidns, CLONE_NEWPID), "setns pid")
            raise
        if pid != 0:
            _check(_libc.setns(self.own_pidns, CLONE_NEWPID), "setns pid")
        else:  # pragma: no cover - the sandbox's pid 1
            code = 70
            try:
                self.sandbox(request, fds)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException as exc:
                try:
                    os.write(2, f"tvm-zygote: sandbox setup failed: {exc}\n".encode())
                except OSError:
                    pass
            os._exit(code)
        return {"pid": pid}, os.pidfd_open(pid)

    # -- in the sandbox ------------------------------------------------------
    def sandbox(self, request: dict, fds: list[int]) -> None:
        """pid 1 of a new sandbox: build the rest of it, then be its agent."""
        _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "pdeathsig")
        _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)  # see supervisor.FORKED_CHILD_NOTE
        self.control.close()
        os.close(self.own_pidns)
        channel, stderr = fds[0], fds[1]
        ncg, npg = int(request["cgroups"]), int(request["program_cgroups"])
        for fd in fds[2 : 2 + ncg]:
            os.write(fd, b"0")
        program_fds = fds[2 + ncg : 2 + ncg + npg]
        cpu_fds = fds[2 + ncg + npg :]  # the program cgroup's CPU counter
        _check(_libc.unshare(NAMESPACES), "unshare")
        mounts.build_root(
            int(request["workdir_bytes"]),
            int(request["tmp_bytes"]),
            int(request["shm_bytes"]),
            int(request.get("home_bytes", 0)),
        )
        socket.sethostname(HOSTNAME)
        _loopback_up()
        os.setsid()
        os.chdir("/")
        # Out of the way of the descriptors a stage runner sets up (0-3).
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100) for fd in program_fds]
        cpu_high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100) for fd in cpu_fds]
        os.dup2(channel, 0)
        os.dup2(channel, 1)
        os.dup2(stderr, 2)
        for fd in fds:
            os.close(fd)
        agent_main.supervisor.PROGRAM_CGROUP_FDS[:] = high
        agent_main.supervisor.PROGRAM_CPU_FDS[:] = cpu_high
        _capset(AGENT_CAPS)
        _load_seccomp(self.seccomp)
        try:
            agent_main.main(self.baseline, request.get("init"), caps_dropped=True)
        finally:
            sys.stdout.flush()


def main(baseline: set[str] | None = None) -> None:
    control = socket.socket(fileno=os.dup(0))
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    Zygote(control, baseline).serve()
