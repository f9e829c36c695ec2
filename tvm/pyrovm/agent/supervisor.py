"""Run one stage of a user's program under limits, and measure it.

Stdlib only: this runs inside the sandbox. The agent runs as uid 0 holding at
most CAP_SETUID/CAP_SETGID; the program runs under its own uid/gid with no
capabilities, in its own session, with rlimits set, so it can neither signal
nor trace the agent, nor open the agent's file descriptors through /proc.
"""

from __future__ import annotations

import _signal
import contextlib
import errno
import fcntl
import marshal
import os
import resource
import select
import signal
import struct
import termios
import time

TYPE_CHECKING = False  # the agent must not import typing at start-up (it costs ms)
if TYPE_CHECKING:
    from collections.abc import Callable

# What a stage can end as, as decided here; the host may refine "signal"
# (SIGKILL) into "memory_limit" when the sandbox's cgroup saw an OOM kill.
OK = "ok"
RUNTIME_ERROR = "runtime_error"
SIGNALED = "signal"
TIMEOUT = "timeout"
OUTPUT_LIMIT = "output_limit"

CPU_POLL_SECONDS = 0.02
# The program cgroup's procs files, open in the agent (set by the zygote of a
# driver with host cgroups).
PROGRAM_CGROUP_FDS: list[int] = []
# The program cgroup's CPU counter (v1 cpuacct.usage, v2 cpu.stat), open
# read-only: it counts every process of the stage, whoever reaps it.
PROGRAM_CPU_FDS: list[int] = []
_READ_CHUNK = 65536
# FORKED_CHILD_NOTE: the agent and its runners are forked children of a zygote,
# so every page of the interpreter's heap they write to is copied (a page
# fault of a few microseconds). On their path, handlers are set with
# ``_signal.signal`` (``signal.signal`` wraps it in enum conversions that touch
# some 60 pages more) and small files are written with ``os.open``/``os.write``
# (``open()`` builds text-I/O and codec objects).


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"SIG{signum}"


class _Reaper:
    """Collects every child that exits (the agent is a child subreaper)."""

    def __init__(self) -> None:
        self.statuses: dict[int, int] = {}
        self.max_rss_kb = 0

    def reap(self) -> None:
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.statuses[pid] = status
            self.max_rss_kb = max(self.max_rss_kb, int(usage.ru_maxrss))


def cgroup_cpu_ns(text: str) -> int:
    """Nanoseconds from a v1 ``cpuacct.usage`` or a v2 ``cpu.stat``."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value) * 1000
    raise ValueError(f"no CPU usage in {text[:80]!r}")


def _program_cpu_ns() -> int | None:
    """The program cgroup's CPU time so far, where the driver gave its counter."""
    if not PROGRAM_CPU_FDS:
        return None
    try:
        return cgroup_cpu_ns(os.pread(PROGRAM_CPU_FDS[0], 4096, 0).decode())
    except (OSError, ValueError):
        return None


def _uid_pids(uid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


def _live_cpu_ticks(uid: int) -> int:
    """CPU ticks of the uid's live (not yet reaped) processes."""
    total = 0
    for pid in _uid_pids(uid):
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])
    return total


def kill_uid(uid: int, reaper: _Reaper) -> None:
    """SIGKILL every process of ``uid``: a helper that becomes ``uid`` sends
    ``kill(-1)``, which reaches exactly the processes that uid may signal."""
    for _ in range(50):
        if not _uid_pids(uid):
            return
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                os.setresuid(uid, uid, uid)
                os.kill(-1, signal.SIGKILL)
            finally:
                os._exit(0)
        while True:
            try:
                os.waitpid(pid, 0)
                break
            except ChildProcessError:
                break
            except InterruptedError:
                continue
        time.sleep(0.001)
        reaper.reap()


def _enter_program_cgroup() -> None:  # pragma: no cover - runs in the forked child
    """Move this (still privileged) child into the program cgroup, if the
    driver gave one."""
    for fd in PROGRAM_CGROUP_FDS:
        os.write(fd, b"0")


class Runner:
    """A child forked ahead of its stage, waiting for its program.

    It enters the program cgroup while it waits: moving a process between
    cgroups takes milliseconds (an RCU grace period), which would otherwise be
    paid on every stage. It stays privileged until it receives its program,
    then drops to the program's uid/gid and limits and execs (or, for Python,
    runs the script in place: :mod:`pyrun`).
    """

    def __init__(
        self,
        live: str | None = None,
        winsize: tuple[int, int] = (24, 80),
        warm: dict | None = None,
        warm_run: dict | None = None,
    ) -> None:
        """``live``: None (stdin is the stage's bytes), ``"pipe"`` (stdin is a
        pipe the agent keeps writing: ``stdin_w``) or ``"pty"`` (a terminal:
        stdin, stdout and stderr are one pty, ``out_r``/``stdin_w`` its master;
        ``winsize``: its rows and columns). ``warm``: start a compiler ahead of
        the stage (:func:`warm.prestart`'s arguments); ``warm_run``: start the
        program's interpreter ahead (:func:`warm_run.prestart`'s); ``warm_ready``
        is then the pipe that says it is ready."""
        self.stdin_w: int | None = None
        prestart = warm or warm_run
        self.warm = prestart is not None
        self.warm_run = warm_run
        self.warm_ready: int | None = None
        ready_w = -1
        if prestart is not None:
            from . import warm as warm_module

            self.warm_ready, ready_w = warm_module.user_pipes(prestart["uid"], prestart["gid"], 1)
        self.out_r, out_w = os.pipe()
        self.err_r, err_w = os.pipe()
        ctrl_r, self.ctrl_w = os.pipe()
        child_stdin, tty = -1, False
        if live == "pipe":
            child_stdin, self.stdin_w = os.pipe()
        elif live == "pty":
            master, child_stdin = os.openpty()
            set_winsize(master, *winsize)
            os.fchmod(child_stdin, 0o620)  # the program may reopen its tty
            os.close(self.out_r)
            os.close(out_w)
            self.out_r, out_w, tty = master, -1, True
            self.stdin_w = os.dup(master)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            if self.warm_ready is not None:
                os.close(self.warm_ready)
            _runner_main(ctrl_r, out_w, err_w, child_stdin, tty, warm, ready_w, warm_run)
        self.pid = pid
        for fd in (ctrl_r, out_w, err_w, child_stdin, ready_w):
            if fd >= 0:
                os.close(fd)

    def start(self, program: tuple) -> None:
        data = marshal.dumps(program)
        view = memoryview(len(data).to_bytes(8, "big") + data)
        try:
            while view:
                view = view[os.write(self.ctrl_w, view) :]
        finally:
            os.close(self.ctrl_w)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.ctrl_w)  # the runner reads EOF and exits
        for fd in (self.out_r, self.err_r, self.stdin_w, self.warm_ready):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)


def read_exact(fd: int, n: int) -> bytes:  # pragma: no cover - runs in the runner
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            os._exit(0)  # discarded before it got a program
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _runner_main(  # pragma: no cover - child
    ctrl_r: int,
    out_w: int,
    err_w: int,
    live_stdin: int = -1,
    tty: bool = False,
    warm_args: dict | None = None,
    ready_w: int = -1,
    run_args: dict | None = None,
) -> None:
    argv0 = "program"
    try:
        _enter_program_cgroup()
        os.setsid()
        if tty:  # the pty becomes the controlling terminal and all of 0, 1, 2
            fcntl.ioctl(live_stdin, termios.TIOCSCTTY, 0)
            out_w = err_w = live_stdin
        if live_stdin >= 0:
            os.dup2(live_stdin, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        if ready_w >= 0:
            ready_w = fcntl.fcntl(ready_w, fcntl.F_DUPFD, 10)  # above 3 and the warm pipes
        os.dup2(ctrl_r, 3)  # last: the sources above may be fd 3
        for low, high in ((4, ready_w), (ready_w + 1, 65536)) if ready_w >= 0 else ((4, 65536),):
            os.closerange(low, high)  # the agent's channel and everything else
        if live_stdin < 0:
            null = os.open("/dev/null", os.O_RDONLY)
            if null != 0:
                os.dup2(null, 0)
                os.close(null)
        _signal.set_wakeup_fd(-1)
        for sig in (_signal.SIGPIPE, _signal.SIGXFSZ, _signal.SIGCHLD, _signal.SIGINT):
            _signal.signal(sig, _signal.SIG_DFL)  # not signal.signal: see FORKED_CHILD_NOTE
        try:
            fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
            try:
                os.write(fd, b"1000")
            finally:
                os.close(fd)
        except OSError:
            pass
        if warm_args is not None:
            from . import warm

            warm.prestart(**warm_args, ready_w=ready_w)
        if run_args is not None:
            from . import warm_run

            argv0 = run_args["argv"][0]
            warm_run.prestart(**run_args, ready_w=ready_w)
        size = int.from_bytes(read_exact(3, 8), "big")
        argv, env, cwd, stdin, limits, uid, gid, pyrun = marshal.loads(read_exact(3, size))
        os.close(3)
        argv0 = argv[0]
        if live_stdin < 0:  # else the agent writes stdin as it comes
            stdin_fd = os.memfd_create("stdin", 0)
            view = memoryview(stdin)
            while view:
                view = view[os.write(stdin_fd, view) :]
            os.lseek(stdin_fd, 0, os.SEEK_SET)
            os.dup2(stdin_fd, 0)
            os.close(stdin_fd)
        become_program(uid, gid, limits, cwd)
        if warm_args is not None:
            warm.enter_stage(env, uid, limits, _uid_pids(uid))
        if pyrun is not None:
            from . import pyrun as pyrun_module

            script_args, baseline = pyrun
            pyrun_module.run_script(script_args[0], script_args[1:], env, baseline)
        exec_program(argv, env)
    except OSError as exc:
        msg = f"tvm: cannot execute {argv0}: {exc.strerror}\n"
        os.write(2, msg.encode())
        os._exit(127 if exc.errno == errno.ENOENT else 126)
    except BaseException as exc:
        os.write(2, f"tvm: cannot start program: {exc}\n".encode())
    os._exit(127)


def exec_program(argv: list[str], env: dict[str, str]) -> None:  # pragma: no cover - child
    """``os.execvpe(argv[0], argv, env)``, without its ``import warnings`` (which
    a forked child reads from disk and unmarshals on every stage: ~2 ms): the
    same search of env's PATH, the same errors."""
    name = argv[0]
    if "/" in name:
        os.execve(name, argv, env)
    found: OSError | None = None
    last: OSError = FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)
    for directory in env.get("PATH", os.defpath).split(os.pathsep):
        try:
            os.execve(os.path.join(directory, name), argv, env)
        except (FileNotFoundError, NotADirectoryError) as exc:
            last = exc
        except OSError as exc:
            last = exc
            found = found or exc
    raise found or last


def set_winsize(fd: int, rows: int, cols: int) -> None:
    """Set a terminal's size (its foreground process group gets SIGWINCH)."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def cpu_seconds(limits: dict) -> int:
    """A stage's RLIMIT_CPU: its CPU time rounded up, plus a second (the agent
    stops it at its CPU time; this is the backstop)."""
    return max(1, -(-int(limits["cpu_time_ms"]) // 1000)) + 1


def stage_rlimits(limits: dict, cpu_s: int) -> dict[int, tuple[int, int]]:
    """The rlimits that ``limits`` set on a stage's program (``cpu_s``: its
    soft RLIMIT_CPU) besides those that are always 0."""
    fsize = int(limits["file_size_kb"]) * 1024
    wanted = {
        resource.RLIMIT_CPU: (cpu_s, cpu_s + 1),
        resource.RLIMIT_FSIZE: (fsize, fsize),
        resource.RLIMIT_NOFILE: (int(limits["open_files"]),) * 2,
        resource.RLIMIT_NPROC: (int(limits["processes"]),) * 2,
    }
    if limits.get("stack_kb"):
        wanted[resource.RLIMIT_STACK] = (int(limits["stack_kb"]) * 1024,) * 2
    return wanted


def cpu_seconds_used(pid: int) -> int:
    """CPU time ``pid`` has used so far, rounded up to a second (its rlimit's unit)."""
    fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
    try:
        fields = os.read(fd, 4096).rpartition(b")")[2].split()
    finally:
        os.close(fd)
    return -(-(int(fields[11]) + int(fields[12])) // os.sysconf("SC_CLK_TCK"))


def become_program(uid: int, gid: int, limits: dict, cwd: str) -> None:  # pragma: no cover
    """In a child that is to run a program (or start one ahead): the stage's
    rlimits, the program's ids (no capability left), its work dir and umask."""
    _set_rlimits(limits)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    os.chdir(cwd)
    os.umask(0o022)


def _set_rlimits(limits: dict) -> None:  # pragma: no cover - runs in the runner
    wanted = stage_rlimits(limits, cpu_seconds(limits))
    wanted[resource.RLIMIT_CORE] = wanted[resource.RLIMIT_MEMLOCK] = (0, 0)
    for which, value in wanted.items():
        resource.setrlimit(which, value)
    try:
        resource.setrlimit(resource.RLIMIT_MSGQUEUE, (0, 0))
    except ValueError:  # gVisor refuses any change of this one (EPERM)
        pass


class Live:
    """The hooks of a streamed stage, served by :func:`run_stage`'s loop
    (the implementation: :class:`stream.LiveStage`)."""

    def attach(self, runner: Runner, poller: select.poll, output_fds: set[int]) -> None:
        """The stage starts: register the descriptors to serve in ``poller``."""

    def handle(self, fd: int, event: int) -> str | None:
        """One of its descriptors is ready; a status to end the stage with, or None."""
        return None

    def output(self, stream: str, chunk: bytes) -> None:
        """A chunk the program wrote (and the stage kept)."""

    def throttle(self) -> None:
        """Stop or resume reading the program's output (flow control)."""

    def unthrottle(self) -> None:
        """The program is gone: read what is left whatever the flow control says."""

    def detach(self) -> None:
        """The stage ended: release what :meth:`attach` took."""


def run_stage(
    argv: list[str],
    *,
    env: dict[str, str],
    cwd: str,
    stdin: bytes,
    limits: dict,
    uid: int,
    gid: int,
    pyrun: tuple[list[str], set[str]] | None = None,
    runner: Runner | None = None,
    live: Live | None = None,
) -> dict:
    """Run ``argv`` as ``uid``/``gid`` under ``limits``; return the measurements.

    With ``pyrun`` (script and args, baseline modules), the program is a Python
    script run in a forked child of this interpreter instead of a new one
    (see :mod:`pyrun`); everything else is the same. ``runner``: a child forked
    ahead of time (else one is forked now). ``live``: a streamed stage (its
    runner made with ``live``): output is also handed to it as it comes, and it
    serves its own descriptors in the same loop (see :mod:`stream`).
    """
    reaper = _Reaper()
    reaper.reap()  # leftovers from earlier stages do not count here

    runner = runner or Runner()
    out_r, err_r = runner.out_r, runner.err_r
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    previous_wakeup = _signal.set_wakeup_fd(wake_w)
    previous_handler = _signal.signal(_signal.SIGCHLD, lambda *_: None)

    cap = int(limits["output_bytes"])
    wall_limit = int(limits["timeout_ms"]) / 1000
    cpu_limit_ms = int(limits["cpu_time_ms"])
    cpu_limit_ticks = cpu_limit_ms * os.sysconf("SC_CLK_TCK") / 1000
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cgroup_before = _program_cpu_ns()
    started = time.monotonic()
    pid = runner.pid
    try:
        runner.start((argv, env, cwd, stdin, limits, uid, gid, pyrun))
    except OSError:  # the runner died before it got its program: reported below
        pass

    buffers = {out_r: bytearray(), err_r: bytearray()}
    combined = bytearray()  # both streams in arrival order, as Piston's `output`
    truncated = {out_r: False, err_r: False}
    open_fds = {out_r, err_r}
    killed_for: str | None = None
    poller = select.poll()
    for fd in (out_r, err_r, wake_r):
        poller.register(fd, select.POLLIN)
    names = {out_r: "stdout", err_r: "stderr"}
    sink = None
    if live is not None:
        live.attach(runner, poller, open_fds)

        def sink(fd: int, chunk: bytes) -> None:
            live.output(names[fd], chunk)

    deadline = started + wall_limit
    next_cpu_check = started + CPU_POLL_SECONDS
    try:
        while pid not in reaper.statuses:
            now = time.monotonic()
            if now >= deadline:
                killed_for = TIMEOUT
                break
            if now >= next_cpu_check:
                if cgroup_before is not None:
                    over = (_program_cpu_ns() or 0) - cgroup_before > cpu_limit_ms * 1_000_000
                else:
                    over = _live_cpu_ticks(uid) + _ticks_since(before) > cpu_limit_ticks
                if over:
                    killed_for = TIMEOUT
                    break
                next_cpu_check = now + CPU_POLL_SECONDS
            timeout = max(0.0, min(deadline, next_cpu_check) - now)
            for fd, event in poller.poll(timeout * 1000):
                if fd == wake_r:
                    _drain(wake_r)
                    reaper.reap()
                elif fd in names:
                    if not _pump(fd, buffers, truncated, open_fds, poller, cap, combined, sink):
                        killed_for = OUTPUT_LIMIT
                elif live is not None:
                    killed_for = live.handle(fd, event) or killed_for
            if killed_for:
                break
            if live is not None:
                live.throttle()
            reaper.reap()
        wall_ms = int((time.monotonic() - started) * 1000)
        kill_uid(uid, reaper)
        reaper.reap()
        end = time.monotonic() + 1.0
        if live is not None:
            live.unthrottle()  # what is left in the pipes goes out regardless
        while open_fds and time.monotonic() < end:
            for fd, event in poller.poll(100):
                if fd == wake_r:
                    _drain(wake_r)
                elif fd in open_fds and not _pump(
                    fd, buffers, truncated, open_fds, poller, cap, combined, sink
                ):
                    killed_for = killed_for or OUTPUT_LIMIT
                elif fd not in names and live is not None:
                    live.handle(fd, event)
        if pid not in reaper.statuses:  # never reaped: it must be gone by now
            _, wait_status, usage = os.wait4(pid, 0)
            reaper.statuses[pid] = wait_status
            reaper.max_rss_kb = max(reaper.max_rss_kb, int(usage.ru_maxrss))
    finally:
        _signal.set_wakeup_fd(previous_wakeup)
        _signal.signal(_signal.SIGCHLD, previous_handler)
        for fd in (out_r, err_r, wake_r, wake_w):
            os.close(fd)
        if live is not None:
            live.detach()

    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cgroup_after = _program_cpu_ns() if cgroup_before is not None else None
    if cgroup_before is not None and cgroup_after is not None:
        # Every process of the stage is gone: the counter is final.
        cpu_ms = (cgroup_after - cgroup_before) // 1_000_000
    else:
        times = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        cpu_ms = int(times * 1000)
    status_word = reaper.statuses[pid]
    exit_code = os.waitstatus_to_exitcode(status_word)
    signal_name = _signal_name(-exit_code) if exit_code < 0 else None
    if killed_for:
        status = killed_for
    elif signal_name == "SIGXCPU" or cpu_ms > cpu_limit_ms:
        status = TIMEOUT
    elif signal_name:
        status = SIGNALED
    elif exit_code != 0:
        status = RUNTIME_ERROR
    else:
        status = OK
    return {
        "status": status,
        "exit_code": exit_code if exit_code >= 0 else None,
        "signal": signal_name,
        "stdout": bytes(buffers[out_r]),
        "stderr": bytes(buffers[err_r]),
        "output": bytes(combined),
        "stdout_truncated": truncated[out_r],
        "stderr_truncated": truncated[err_r],
        "cpu_ms": cpu_ms,
        "wall_ms": wall_ms,
        "memory_kb": reaper.max_rss_kb,
    }


def _ticks_since(before: resource.struct_rusage) -> float:
    now = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds = (now.ru_utime - before.ru_utime) + (now.ru_stime - before.ru_stime)
    return seconds * os.sysconf("SC_CLK_TCK")


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _pump(
    fd: int,
    buffers: dict[int, bytearray],
    truncated: dict[int, bool],
    open_fds: set[int],
    poller: select.poll,
    cap: int,
    combined: bytearray,
    sink: Callable[[int, bytes], None] | None = None,
) -> bool:
    """Read what ``fd`` has; False when the stream went over its cap. ``sink``
    is handed every chunk kept (a streamed stage)."""
    try:
        chunk = os.read(fd, _READ_CHUNK)
    except BlockingIOError:
        return True
    except OSError as exc:  # a pty's master once every holder of its slave is gone
        if exc.errno != errno.EIO:
            raise
        chunk = b""
    if not chunk:
        poller.unregister(fd)
        open_fds.discard(fd)
        return True
    buf = buffers[fd]
    room = cap - len(buf)
    if len(chunk) > room:
        buf.extend(chunk[: max(room, 0)])
        combined.extend(chunk[: max(room, 0)])
        if sink is not None and room > 0:
            sink(fd, chunk[:room])
        truncated[fd] = True
        poller.unregister(fd)
        open_fds.discard(fd)
        return False
    buf.extend(chunk)
    combined.extend(chunk)
    if sink is not None:
        sink(fd, chunk)
    return True
