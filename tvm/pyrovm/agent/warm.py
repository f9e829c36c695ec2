"""Compilers pre-started in a warm sandbox, waiting for their one compile.

The Python interpreter already waits for its program in every sandbox (the
agent itself: :mod:`pyrun`). For a language whose catalog entry names a
``warm_compiler`` (a command prefix such as ``javac -J-XX:+UseSerialGC``),
a sandbox made ahead of its request also starts that compiler ahead of it:

* the compile stage's runner, already in the program cgroup, forks a *keeper*
  that drops to the program's uid/gid, takes the compile stage's maximum
  rlimits and the stage's environment and work dir, and runs the command
  with ``warm/serve`` first on PATH: the compiler's own launcher, whatever it
  does, runs a stand-in (:mod:`warm_serve`) with the argv it would run the
  real ``java``/``javac``/``tsc`` with, and that starts the server
  (``warm/TvmWarm.java``, ``warm/tsc_serve.js``) with the same JVM options;
* the server loads the compiler, compiles a throw-away program in a scratch
  dir, says it is ready (the agent waits for that, bounded, before it
  answers the host), and waits;
* the compile stage runs the catalog's command unchanged, with ``warm/bin``
  first on PATH: the stand-in there (``warm/shim.sh``) hands its argv and
  directory to the server, which runs the compiler's own ``main`` if the argv
  starts with exactly the prefix it was started for (else the real command
  runs, cold); the keeper reports the server's exit status, which the stand-in
  exits with. The runner first lowers the rlimits of both to the stage's
  (CPU: what they used so far plus the stage's).

Each sandbox is still fresh and used once: the server compiles one request
and exits; the stage's end kills whatever of the uid is left.

Stdlib only; runs inside the sandbox.
"""

from __future__ import annotations

import os
import resource
import select

from .supervisor import become_program, cpu_seconds, cpu_seconds_used

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.join(HERE, "warm", "bin")  # the compile stage's stand-ins
SERVE_BIN = os.path.join(HERE, "warm", "serve")  # the prestart's stand-ins
REQUEST_FD, REPLY_FD = 7, 8  # in the compile stage: to the server, from the keeper
STDOUT_FD, STDERR_FD = 9, 10  # the stage's output, for the server, at prestart
READY_WAIT_SECONDS = 20.0


def available() -> bool:
    """Whether this copy of the agent has the stand-ins (the drivers that
    mount a prepared copy do; one made of the modules alone has none)."""
    return os.path.isdir(BIN) and os.path.isdir(SERVE_BIN)


def prestart(
    command: str,
    env: dict[str, str],
    cwd: str,
    uid: int,
    gid: int,
    limits: dict,
    ready_w: int,
) -> None:
    """In the (privileged) runner: start the keeper and the server; leave the
    request/reply pipes on :data:`REQUEST_FD`/:data:`REPLY_FD`."""
    req_r, req_w, rep_r, rep_w = user_pipes(uid, gid, 2)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the keeper
        code = 70
        try:
            os.close(3)  # the runner's control pipe: the stage's program is not ours
            os.close(req_w)
            os.close(rep_r)
            become_program(uid, gid, limits, cwd)
            server = os.fork()
            if server == 0:
                os.dup2(req_r, 3)
                os.dup2(rep_w, 4)
                os.dup2(ready_w, 5)
                os.closerange(6, 65536)
                # The stage's output goes to the server only (warm_serve.py
                # moves it back to 1 and 2): what the launcher says is dropped.
                os.dup2(1, STDOUT_FD)
                os.dup2(2, STDERR_FD)
                null = os.open("/dev/null", os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                serve_env = dict(env, PATH=f"{SERVE_BIN}:{env.get('PATH', '')}")
                os.execve("/bin/sh", ["sh", "-c", command], serve_env)
            os.close(req_r)
            os.close(ready_w)
            _, status = os.waitpid(server, 0)
            if os.WIFSIGNALED(status):
                line = f"signal {os.WTERMSIG(status)}\n"
            else:
                line = f"exit {os.waitstatus_to_exitcode(status)}\n"
            os.write(rep_w, line.encode())
            code = 0
        finally:
            os._exit(code)
    for fd in (req_r, rep_w, ready_w):
        os.close(fd)
    os.dup2(req_w, REQUEST_FD)
    os.dup2(rep_r, REPLY_FD)
    for fd in (req_w, rep_r):
        if fd not in (REQUEST_FD, REPLY_FD):
            os.close(fd)


def user_pipes(uid: int, gid: int, count: int) -> list[int]:
    """Pipes owned by ``uid``: the JVM opens its ends as /proc/self/fd/N, which
    checks the pipe's owner like a file's."""
    os.setresgid(-1, gid, -1)
    os.setresuid(-1, uid, -1)
    try:
        return [fd for _ in range(count) for fd in os.pipe()]
    finally:
        os.setresuid(-1, 0, -1)
        os.setresgid(-1, 0, -1)


def wait_ready(ready_r: int, timeout: float = READY_WAIT_SECONDS) -> bool:
    """In the agent: wait (bounded) until the server is ready or gone."""
    ready, _, _ = select.select([ready_r], [], [], timeout)
    return bool(ready) and os.read(ready_r, 1) == b"\n"


def served(ready_r: int) -> bool:
    """In the agent, after the stage: whether the server took the compile
    (it says so on the ready pipe when it does)."""
    try:
        os.set_blocking(ready_r, False)
        return b"s" in os.read(ready_r, 16)
    except OSError:
        return False
    finally:
        os.close(ready_r)


def stage_env(env: dict[str, str]) -> dict[str, str]:
    """The compile stage's environment when its runner holds a server."""
    return dict(env, PATH=f"{BIN}:{env.get('PATH', '')}")


def enter_stage(env: dict[str, str], uid: int, limits: dict, pids: list[int]) -> None:
    """In the runner, now ``uid``: give the keeper and the server the stage's
    rlimits, or close the pipes if this stage is not served warm."""
    if not env.get("PATH", "").startswith(BIN + ":"):
        os.closerange(REQUEST_FD, REPLY_FD + 1)
        return
    me = os.getpid()
    cpu_s = cpu_seconds(limits)
    for pid in pids:
        if pid == me:
            continue
        try:
            used = cpu_seconds_used(pid)
            for which in (resource.RLIMIT_FSIZE, resource.RLIMIT_NOFILE, resource.RLIMIT_NPROC):
                resource.prlimit(pid, which, resource.getrlimit(which))
            _, hard = resource.prlimit(pid, resource.RLIMIT_CPU)
            soft = used + cpu_s if hard < 0 else min(used + cpu_s, hard)
            resource.prlimit(
                pid, resource.RLIMIT_CPU, (soft, soft + 1 if hard < 0 else min(soft + 1, hard))
            )
        except (OSError, ValueError):
            continue  # gone already
