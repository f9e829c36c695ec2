"""Live mode: the agent of a sandbox that stays up for many calls.

Stdlib only: this runs inside the sandbox. The host switches an agent into
live mode with one request, ``{"type": "live", "home": ..., "env": {...},
"limits": {...}}`` (answered ``{"type": "ok"}``); from then on the channel
carries requests and replies tagged with an ``id``, and events, in any order::

    host  -> agent  {"id": 7, "op": "proc_start", "cmd", "args", "cwd", "env", "stdin", "tag"}
    agent -> host   {"type": "reply", "id": 7, "pid": 42}
    agent -> host   {"type": "event", "pid": 42, "kind": "stdout" | "stderr", "data": "<b64>"}
    agent -> host   {"type": "event", "pid": 42, "kind": "end", "exit_code", "signal"}
    host  -> agent  {"id": 8, "op": "ctx_exec", "ctx": "c1", "code": "x + 1"}
    agent -> host   {"type": "event", "id": 8, "kind": "stdout", "data": "<b64>"}
    agent -> host   {"type": "reply", "id": 8, "result": "2", "error": null, "count": 2}

A request that fails is answered ``{"type": "error", "id", "code", "message"}``
with ``code`` one of ``not_found``, ``already_exists``, ``invalid``,
``internal``. Each request is served in its own thread, so a long-running
code cell never holds up a file read. Processes run as the sandbox's program
uid in the program cgroup, exactly like a one-shot run's stages; files are
read and written with that uid as the effective one. Operations are in
:mod:`.live_files` (files), :mod:`.live_code` (code contexts) and
:mod:`.live_watch` (directory watches, by inotify).
"""

from __future__ import annotations

import base64
import errno
import os
import resource
import select
import signal
import threading
import time

from . import live_code, live_files, live_watch, protocol, supervisor
from .live_base import LiveError, as_user

_READ = 65536


class Process:
    """One process started by the host, with its pipes."""

    def __init__(self, pid: int, config: dict, stdin_w: int | None, out_r: int, err_r: int) -> None:
        self.pid = pid
        self.config = config
        self.stdin_w = stdin_w
        self.out_r = out_r
        self.err_r = err_r
        self.status: int | None = None
        self.lock = threading.Lock()


class Live:
    """The live-mode request loop (see the module docstring)."""

    def __init__(self, agent, message: dict) -> None:
        self.agent = agent
        self.uid: int = agent.uid
        self.gid: int = agent.gid
        self.home = str(message.get("home") or agent.workdir)
        self.env = dict(agent.env)
        self.env.update({"HOME": self.home, "USER": "user", "LOGNAME": "user"})
        self.env.update(message.get("env") or {})
        self.limits = dict(message.get("limits") or {})
        self.send_lock = threading.Lock()
        # Effective-uid switches are process-wide: one at a time.
        self.priv = threading.Lock()
        self.processes: dict[int, Process] = {}
        self.statuses: dict[int, int] = {}
        self.children = threading.Condition()
        self.files = live_files.Files(self)
        self.code = live_code.Contexts(self)
        self.watches = live_watch.Watches(self)

    # -- the channel ----------------------------------------------------------
    def send(self, message: dict) -> None:
        data = memoryview(protocol.encode(message))
        with self.send_lock:
            while data:
                data = data[os.write(self.agent.wfd, data) :]

    def event(self, **fields: object) -> None:
        self.send({"type": "event", **fields})

    def serve(self) -> None:
        with self.priv, as_user(self.uid, self.gid):
            os.makedirs(self.home, exist_ok=True)
        threading.Thread(target=self._reap_forever, daemon=True).start()
        self.send({"type": "ok"})
        while True:
            message = protocol.read_frame(self.agent.rfile.read)
            if message is None or message.get("type") == "shutdown":
                return
            threading.Thread(target=self._handle, args=(message,), daemon=True).start()

    def _handle(self, message: dict) -> None:
        rid = message.get("id")
        op = str(message.get("op", ""))
        handler = (
            getattr(self, f"op_{op}", None)
            or self.files.handler(op)
            or self.code.handler(op)
            or self.watches.handler(op)
        )
        after = None
        try:
            if handler is None:
                raise LiveError("invalid", f"unknown operation {op!r}")
            reply = handler(message)
            if isinstance(reply, tuple):  # (reply, work to do once it is sent)
                reply, after = reply
            self.send({"type": "reply", "id": rid, **reply})
        except LiveError as exc:
            self.send({"type": "error", "id": rid, "code": exc.code, "message": str(exc)})
        except OSError as exc:
            code = _OS_CODES.get(exc.errno or 0, "invalid")
            self.send({"type": "error", "id": rid, "code": code, "message": _os_message(exc)})
        except Exception as exc:
            text = f"{type(exc).__name__}: {exc}"
            self.send({"type": "error", "id": rid, "code": "internal", "message": text})
        if after is not None:
            after()

    # -- children -------------------------------------------------------------
    def _reap_forever(self) -> None:
        """Collect every child (the agent is pid 1 or a subreaper)."""
        while True:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                with self.children:
                    self.children.wait(1.0)
                continue
            except InterruptedError:
                continue
            with self.children:
                self.statuses[pid] = status
                self.children.notify_all()

    def spawn(
        self, argv: list[str], env: dict, cwd: str, stdin: bool, extra: tuple[int, ...] = ()
    ) -> tuple[int, int | None, int, int]:
        """Fork and exec ``argv`` as the program uid in the program cgroup;
        ``extra`` descriptors become its fds 3, 4, ...
        Returns (pid, stdin write end or None, stdout read end, stderr read end)."""
        in_r, in_w = os.pipe() if stdin else (os.open("/dev/null", os.O_RDONLY), None)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        for fd in (out_r, err_r, *((in_w,) if in_w is not None else ())):
            os.set_inheritable(fd, False)
        with self.priv:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - child
                _child(
                    argv, env, cwd, (in_r, out_w, err_w, *extra), self.uid, self.gid, self.limits
                )
        with self.children:
            self.children.notify_all()
        for fd in (in_r, out_w, err_w):
            os.close(fd)
        return pid, in_w, out_r, err_r

    def wait_status(self, pid: int, timeout: float | None = None) -> int | None:
        end = None if timeout is None else time.monotonic() + timeout
        with self.children:
            while pid not in self.statuses:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self.children.wait(left)
            return self.statuses.pop(pid)

    # -- processes --------------------------------------------------------------
    def op_proc_start(self, message: dict):
        cmd = str(message.get("cmd") or "")
        if not cmd:
            raise LiveError("invalid", "process.cmd: must not be empty")
        args = [str(a) for a in message.get("args") or []]
        env = dict(self.env)
        env.update({str(k): str(v) for k, v in (message.get("env") or {}).items()})
        cwd = self.files.resolve(message.get("cwd") or self.home)
        if not os.path.isdir(cwd):
            raise LiveError("conflict", f"cwd: {cwd} is not a directory")
        pid, in_w, out_r, err_r = self.spawn([cmd, *args], env, cwd, bool(message.get("stdin")))
        config = {"cmd": cmd, "args": args, "env": message.get("env") or {}, "cwd": cwd,
                  "tag": message.get("tag")}  # fmt: skip
        proc = Process(pid, config, in_w, out_r, err_r)
        self.processes[pid] = proc
        return {"pid": pid}, lambda: self._forward(proc)

    def _forward(self, proc: Process) -> None:
        """Send the process's output as it comes, then its end."""
        open_fds = {proc.out_r: "stdout", proc.err_r: "stderr"}
        status = None
        while open_fds:
            ready, _, _ = select.select(list(open_fds), [], [], 0.2)
            for fd in ready:
                data = os.read(fd, _READ)
                if data:
                    self.event(pid=proc.pid, kind=open_fds[fd], data=_b64(data))
                else:
                    os.close(fd)
                    del open_fds[fd]
            if status is None:
                status = self.wait_status(proc.pid, 0)
            if status is not None and open_fds and not ready:
                # Exited, but something it started keeps the pipes: what was
                # written is all there; a background child's later output is not its own.
                for fd in open_fds:
                    os.close(fd)
                open_fds.clear()
        while status is None:
            status = self.wait_status(proc.pid)
        proc.status = status
        with proc.lock:
            if proc.stdin_w is not None:
                os.close(proc.stdin_w)
                proc.stdin_w = None
        self.processes.pop(proc.pid, None)
        code = os.waitstatus_to_exitcode(status)
        signame = supervisor._signal_name(-code) if code < 0 else None
        self.event(pid=proc.pid, kind="end", exit_code=code, signal=signame)

    def _process(self, message: dict) -> Process:
        pid = message.get("pid")
        tag = message.get("tag")
        for proc in list(self.processes.values()):
            if proc.pid == pid or (tag is not None and proc.config.get("tag") == tag):
                return proc
        raise LiveError("not_found", f"process {pid if pid is not None else tag} not found")

    def op_proc_input(self, message: dict) -> dict:
        proc = self._process(message)
        data = base64.b64decode(message.get("data", ""))
        with proc.lock:
            if proc.stdin_w is None:
                raise LiveError("conflict", f"process {proc.pid} has no open stdin")
            view = memoryview(data)
            while view:
                view = view[os.write(proc.stdin_w, view) :]
        return {}

    def op_proc_close_stdin(self, message: dict) -> dict:
        proc = self._process(message)
        with proc.lock:
            if proc.stdin_w is not None:
                os.close(proc.stdin_w)
                proc.stdin_w = None
        return {}

    def op_proc_signal(self, message: dict) -> dict:
        proc = self._process(message)
        signum = int(message.get("signal", signal.SIGKILL))
        # As the program's uid: the agent holds no CAP_KILL.
        with self.priv, as_user(self.uid, self.gid):
            try:
                os.killpg(proc.pid, signum)  # its session: what it started too
            except ProcessLookupError:
                os.kill(proc.pid, signum)
        return {}

    def op_proc_list(self, message: dict) -> dict:
        listed = [{"pid": p.pid, **p.config} for p in list(self.processes.values())]
        return {"processes": listed}

    def op_ping(self, message: dict) -> dict:
        return {}


# An OSError's errno as the reply's code: what exists where decides ENOTDIR,
# EISDIR, ENOTEMPTY, ELOOP (the sandbox's state, a conflict); the sandbox user's
# rights decide EACCES, EPERM, EROFS (forbidden); the rest is invalid.
_OS_CODES = {
    errno.ENOENT: "not_found",
    errno.EEXIST: "already_exists",
    errno.ENOTDIR: "conflict",
    errno.EISDIR: "conflict",
    errno.ENOTEMPTY: "conflict",
    errno.ELOOP: "conflict",
    errno.EBUSY: "conflict",  # a mount point
    errno.ENOSPC: "conflict",  # the sandbox's disk is full
    errno.EDQUOT: "conflict",
    errno.EACCES: "forbidden",
    errno.EPERM: "forbidden",
    errno.EROFS: "forbidden",
}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _os_message(exc: OSError) -> str:
    where = f": {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or exc}{where}"


def _child(  # pragma: no cover - runs in the forked child
    argv: list[str], env: dict, cwd: str, fds: tuple[int, ...], uid: int, gid: int, limits: dict
) -> None:
    try:
        supervisor._enter_program_cgroup()
        high = [os.dup(fd) for fd in fds]  # above 0..n first, then into place
        for target, fd in enumerate(high):
            os.dup2(fd, target)
        os.closerange(len(fds), 65536)
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        os.setsid()
        try:
            with open("/proc/self/oom_score_adj", "w") as fh:
                fh.write("1000")
        except OSError:
            pass
        for which, name in (
            (resource.RLIMIT_NOFILE, "open_files"),
            (resource.RLIMIT_NPROC, "processes"),
        ):
            if limits.get(name):
                resource.setrlimit(which, (int(limits[name]), int(limits[name])))
        if limits.get("file_size_kb"):
            size = int(limits["file_size_kb"]) * 1024
            resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        os.chdir(cwd)
        os.umask(0o022)
        supervisor.exec_program(argv, env)
    except OSError as exc:
        os.write(2, f"tvm: cannot execute {argv[0]}: {exc.strerror}\n".encode())
        os._exit(127 if exc.errno == errno.ENOENT else 126)
    except BaseException as exc:
        os.write(2, f"tvm: cannot start {argv[0]}: {exc}\n".encode())
    os._exit(127)


def serve(agent, message: dict) -> None:
    """Enter live mode on ``agent``'s channel; returns when the host hangs up."""
    Live(agent, message).serve()
