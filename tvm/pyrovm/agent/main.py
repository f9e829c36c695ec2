"""The agent's request loop: one sandbox, one conversation with the host.

Started by the driver inside the sandbox; talks :mod:`protocol` over its
original stdin/stdout, which it moves out of the way first so that nothing
printed by accident can corrupt the channel.
"""

from __future__ import annotations

import base64
import ctypes
import errno
import io
import os
import sys

from . import protocol, pyrun, stream, supervisor

PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
PR_CAPBSET_DROP = 24
CAP_SETPCAP = 8
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
MAX_ARCHIVE = 64 << 20

DEFAULT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "USER": "runner",
    "LOGNAME": "runner",
}


_libc: ctypes.CDLL | None = None


def libc() -> ctypes.CDLL:
    """The C library, loaded once (a zygote's sandboxes inherit the handle)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _prctl(option: int, value: int) -> None:
    try:
        libc().prctl(option, value, 0, 0, 0)
        pyrun.bind_prctl(libc().prctl)
    except (OSError, AttributeError):
        pass


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def drop_bounding_set() -> bool:
    """Empty the bounding set (needs CAP_SETPCAP); whether every drop worked.
    Inherited by every child: a zygote does this once for all the sandboxes
    it forks."""
    prctl = libc().prctl
    for cap in range(64):  # up to the kernel's last: EINVAL past it (no /proc needed)
        if prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            return cap > 0 and ctypes.get_errno() == errno.EINVAL
    return True


def _drop_capability_sets() -> None:
    """Empty the bounding and inheritable sets, then give up CAP_SETPCAP.

    The driver may start the agent with a full bounding set and the kept caps
    in the inheritable set (bwrap does, as root); the program, a child of the
    agent, would inherit both (``CapBnd``/``CapInh`` non-zero). Emptying them
    here means nothing the agent starts can ever regain a capability through
    execve. The agent's own effective/permitted caps (CAP_SETUID/CAP_SETGID)
    are kept; CAP_SETPCAP, needed only for this, is dropped. Best effort: a
    driver that gives no CAP_SETPCAP must hand over empty sets itself (a
    zygote's sandbox does: see zygote.py).
    """
    try:
        drop_bounding_set()
        header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
        data = (_CapData * 2)()
        if libc().capget(ctypes.byref(header), data) != 0:
            return
        for half in data:
            half.inheritable = 0  # also empties the ambient set
        data[0].effective &= ~(1 << CAP_SETPCAP)
        data[0].permitted &= ~(1 << CAP_SETPCAP)
        libc().capset(ctypes.byref(header), data)
    except (OSError, AttributeError):
        pass


def _safe_relpath(path: str) -> str:
    if not path or "\x00" in path or path.startswith("/"):
        raise ValueError(f"bad file name {path!r}")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"bad file name {path!r}")
    return path


class Agent:
    def __init__(self, rfd: int, wfd: int, baseline: set[str] | None = None) -> None:
        # Modules of a fresh interpreter (recorded before the agent imported
        # anything): what a Python program run in a forked child may see.
        self.baseline = baseline
        # Forked ahead of the stages to come (each has entered the program cgroup).
        self.runners: list[supervisor.Runner] = []
        self.rfile = os.fdopen(rfd, "rb", buffering=0)
        self.wfd = wfd
        self.uid = 65534
        self.gid = 65534
        self.workdir = "/work"
        self.env = dict(DEFAULT_ENV)

    def send(self, message: dict) -> None:
        data = memoryview(protocol.encode(message))
        while data:
            data = data[os.write(self.wfd, data) :]

    def serve(self, initialized: bool = False) -> None:
        self.send(
            {
                "type": "hello",
                "protocol": protocol.PROTOCOL_VERSION,
                "python": sys.version.split()[0],
                "pyrun": self.baseline is not None,
                "pid": os.getpid(),
                "initialized": initialized,
            }
        )
        while True:
            message = protocol.read_frame(self.rfile.read)
            if message is None:
                return
            kind = message["type"]
            if kind == "shutdown":
                return
            if kind in stream.CONTROL:  # late for a streamed stage that has ended
                continue
            if kind == "live":  # a sandbox with a lifetime: the channel changes shape
                from . import live

                live.serve(self, message)
                return
            handler = getattr(self, f"on_{kind}", None)
            try:
                if handler is None:
                    raise ValueError(f"unknown request type {kind!r}")
                reply = handler(message)
            except Exception as exc:
                reply = {"type": "error", "message": f"{type(exc).__name__}: {exc}"}
            self.send(reply)

    # -- requests -------------------------------------------------------------
    def on_ping(self, message: dict) -> dict:
        return {"type": "pong"}

    def on_init(self, message: dict) -> dict:
        self.uid = int(message["uid"])
        self.gid = int(message["gid"])
        self.workdir = message.get("workdir", self.workdir)
        self.env = dict(DEFAULT_ENV)
        self.env.update(message.get("env") or {})
        # As many runners as the sandbox will run stages (a compiled language:
        # two), so that no stage waits for one to enter its cgroup.
        if message.get("warm_compiler") and not self.runners:
            self._prestart(message["warm_compiler"], message["warm_limits"])
        if message.get("warm_run") and not self.runners:
            self._prestart_run(list(message["warm_run"]), message["warm_limits"])
        while len(self.runners) < max(1, min(int(message.get("stages", 1)), 4)):
            self.runners.append(supervisor.Runner())
        return {"type": "ok"}

    def _prestart(self, command: str, limits: dict) -> None:
        """The compile stage's runner starts the compiler ahead (:mod:`warm`)."""
        from . import warm  # only sandboxes that pre-start a compiler need it

        if not warm.available():
            return
        runner = supervisor.Runner(warm={
            "command": command, "env": self.env, "cwd": self.workdir,
            "uid": self.uid, "gid": self.gid, "limits": limits,
        })  # fmt: skip
        self.runners.append(runner)
        if runner.warm_ready is not None:
            warm.wait_ready(runner.warm_ready)

    def _prestart_run(self, argv: list[str], limits: dict) -> None:
        """The run stage's runner starts its interpreter ahead (:mod:`warm_run`).
        Only where the program cgroup counts the stage's CPU: the server's
        start-up is then left out of it, as it is of the stage's wall time."""
        from . import warm, warm_run

        if not warm_run.available(argv) or not supervisor.PROGRAM_CPU_FDS:
            return
        runner = supervisor.Runner(warm_run={
            "argv": argv, "env": self.env, "cwd": self.workdir,
            "uid": self.uid, "gid": self.gid, "limits": limits,
        })  # fmt: skip
        self.runners.append(runner)
        if runner.warm_ready is not None and not warm.wait_ready(runner.warm_ready):
            self.on_cool({})  # it never got ready: the stage runs cold

    def on_cool(self, message: dict) -> dict:
        """End the pre-started compiler (or interpreter) before a stage it must
        not serve."""
        if self.runners and self.runners[0].warm:
            self.runners.pop(0).discard()
            supervisor.kill_uid(self.uid, supervisor._Reaper())  # nothing else runs yet
            self.runners.insert(0, supervisor.Runner())
        return {"type": "ok"}

    def on_files(self, message: dict) -> dict:
        with _as_user(self.uid, self.gid):
            for item in message["files"]:
                rel = _safe_relpath(item["path"])
                full = os.path.join(self.workdir, rel)
                parent = os.path.dirname(full)
                if parent != self.workdir:
                    os.makedirs(parent, exist_ok=True)
                data = base64.b64decode(item.get("data", ""))
                mode = int(item.get("mode", 0o644)) & 0o777
                fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                finally:
                    os.close(fd)
        return {"type": "ok"}

    def on_stage(self, message: dict) -> dict:
        argv = list(message["argv"])
        if not argv:
            raise ValueError("empty argv")
        if message.get("files"):  # written first, in the same round trip
            self.on_files(message)
        pyrun_args = None
        if message.get("pyrun") and self.baseline is not None:
            # argv is [python3, script, args...]: run the script in a forked child.
            pyrun_args = (argv[1:], self.baseline)
        stdin = base64.b64decode(message.get("stdin", ""))
        env, live = self.env, None
        runner: supervisor.Runner | None
        if message.get("stream"):  # output, stdin and signals live (:mod:`stream`)
            self.on_cool(message)  # a streamed stage runs its compiler cold
            for prepared in self.runners:  # their stdin is not a pipe
                prepared.discard()
            self.runners.clear()
            terminal = message.get("terminal")
            if terminal:
                env = {"TERM": "xterm-256color", **env}
                size = (int(terminal.get("rows", 24)), int(terminal.get("cols", 80)))
                runner = supervisor.Runner("pty", size)
            else:
                runner = supervisor.Runner("pipe")
            live = stream.LiveStage(self, self.uid, stdin, tty=bool(terminal))
        else:
            first = self.runners[0] if self.runners else None
            if first is not None and first.warm_run is not None:
                from . import warm_run

                if not warm_run.serves(first.warm_run, argv, env):
                    self.on_cool(message)  # not what it was started for: cold
            runner = self.runners.pop(0) if self.runners else None
            if runner is not None and runner.warm and message.get("name") == "compile":
                from . import warm

                env = warm.stage_env(env)
        result = supervisor.run_stage(
            argv,
            env=env,
            cwd=self.workdir,
            stdin=stdin,
            limits=message["limits"],
            uid=self.uid,
            gid=self.gid,
            pyrun=pyrun_args,
            runner=runner,
            live=live,
        )
        if runner is not None and runner.warm_ready is not None:
            from . import warm

            result["warm"] = warm.served(runner.warm_ready)
        if live is None and not message.get("last") and not self.runners:
            self.runners.append(supervisor.Runner())  # ready for the next stage
        result["stdout"] = base64.b64encode(result["stdout"]).decode()
        result["stderr"] = base64.b64encode(result["stderr"]).decode()
        result["output"] = base64.b64encode(result["output"]).decode()
        result["type"] = "stage_result"
        return result

    def on_archive(self, message: dict) -> dict:
        # Imported here: a sandbox forked from a zygote finds it loaded already
        # (zygote.py); an agent started on its own (gVisor, a VM) only pays for it
        # in a compile-once job.
        import tarfile

        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
            for name in sorted(os.listdir(self.workdir)):
                tar.add(os.path.join(self.workdir, name), arcname=name)
                if buf.tell() > MAX_ARCHIVE:
                    raise ValueError(f"work dir exceeds {MAX_ARCHIVE} bytes")
        return {"type": "archive", "data": base64.b64encode(buf.getvalue()).decode()}

    def on_unpack(self, message: dict) -> dict:
        data = base64.b64decode(message["data"])
        import tarfile

        with _as_user(self.uid, self.gid), tarfile.open(fileobj=io.BytesIO(data)) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(self.workdir, filter="data")
            else:  # Python without PEP 706: we run as the program's uid anyway
                tar.extractall(self.workdir)
        return {"type": "ok"}


class _as_user:
    """Temporarily take the program's uid/gid as effective ids (file writes)."""

    def __init__(self, uid: int, gid: int) -> None:
        self.uid, self.gid = uid, gid

    def __enter__(self) -> None:
        os.setresgid(-1, self.gid, -1)
        os.setresuid(-1, self.uid, -1)

    def __exit__(self, *exc: object) -> None:
        os.setresuid(-1, 0, -1)
        os.setresgid(-1, 0, -1)


def main(
    baseline: set[str] | None = None, init: dict | None = None, caps_dropped: bool = False
) -> None:
    """Serve the channel on fds 0/1. ``init``: the ``init`` request, when the
    driver could hand it over at start (the hello then says it is done).
    ``caps_dropped``: the caller already emptied the bounding, inheritable and
    ambient sets and kept only CAP_SETUID/CAP_SETGID."""
    # Keep the channel on private descriptors; 0 and 1 become /dev/null.
    rfd = os.dup(0)
    wfd = os.dup(1)
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    os.set_inheritable(rfd, False)
    os.set_inheritable(wfd, False)
    _prctl(PR_SET_DUMPABLE, 0)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    if not caps_dropped:
        _drop_capability_sets()
    try:
        if "/.tvm" in sys.path:
            sys.path.remove("/.tvm")
        agent = Agent(rfd, wfd, baseline)
        if init is not None:
            agent.on_init(init)
        agent.serve(initialized=init is not None)
    except protocol.ProtocolError as exc:
        print(f"tvm-agent: {exc}", file=sys.stderr)
        sys.exit(2)
    except BrokenPipeError:
        pass
