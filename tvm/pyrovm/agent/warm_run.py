"""Interpreters pre-started for a warm sandbox's run stage.

A Python program already runs in a forked child of the agent's own
interpreter (:mod:`pyrun`). For a language whose catalog entry sets
``warm_run`` (node), a sandbox made ahead of its request also starts the run
stage's interpreter ahead of it, as the program's run command with the
language's own source file name (``node main.js``):

* the run stage's runner, already in the program cgroup, forks a *helper*
  (detached: the agent reaps it), then becomes the server itself: it drops to
  the program's uid/gid, takes the run stage's maximum rlimits, the sandbox's
  environment and work dir, an empty file as its stdin, and execs the command
  with the interpreter's preload (``warm/node_run.js`` as a ``--require``),
  which says it is ready and waits for its go. The server is the process a
  cold run stage would have been: the same pid, the same parent, its exit
  status is the stage's;
* the agent gives it only a stage whose argv starts with exactly that command,
  in the same environment (:func:`serves`; else the stage runs cold, as it
  would have without one). The helper receives the program in the runner's
  place, writes the stage's stdin into the server's stdin file, lowers the
  server's rlimits to the stage's (CPU: what it used so far plus the stage's),
  hands it the rest of the argv and exits.

The helper stays the agent's uid (root holding only CAP_SETUID/CAP_SETGID): it
does not count against the program's process limit, and the program can
neither signal it nor read its descriptors. Each sandbox is still fresh and
used once: the server runs one program; the stage's end kills whatever of the
uid is left.

Stdlib only; runs inside the sandbox.
"""

from __future__ import annotations

import _signal
import json
import marshal
import os
import resource

from .supervisor import (
    become_program,
    cpu_seconds,
    cpu_seconds_used,
    exec_program,
    read_exact,
    stage_rlimits,
)

HERE = os.path.dirname(os.path.abspath(__file__))
# The run command's word -> the flag and the file that make it wait.
PRELOADS = {"node": ("--require", os.path.join(HERE, "warm", "node_run.js"))}
READY_FD, GO_FD = 98, 99  # in the server, until its preload closes them
CONTROL_FD = 3  # the runner's: where its program comes from


def available(argv: list[str]) -> bool:
    """Whether this copy of the agent can pre-start ``argv``."""
    preload = PRELOADS.get(argv[0]) if argv else None
    return preload is not None and os.path.isfile(preload[1])


def serves(prestarted: dict, argv: list[str], env: dict[str, str]) -> bool:
    """Whether the server pre-started with ``prestarted`` (:func:`prestart`'s
    arguments) may run the stage ``argv`` in ``env``."""
    prefix = prestarted["argv"]
    return argv[: len(prefix)] == prefix and env == prestarted["env"]


def prestart(  # pragma: no cover - runs in the runner, which it replaces
    argv: list[str],
    env: dict[str, str],
    cwd: str,
    uid: int,
    gid: int,
    limits: dict,
    ready_w: int,
) -> None:
    """In the (privileged) runner: start the helper, then exec the server."""
    stdin = os.memfd_create("stdin", 0)  # a file, as a cold stage's stdin is
    go_r, go_w = os.pipe()
    server = os.getpid()
    first = os.fork()
    if first == 0:
        try:
            if os.fork() == 0:  # the helper: orphaned at once, reaped by the agent
                _helper(server, len(argv), stdin, go_w, uid, gid)
        finally:
            os._exit(0)
    os.waitpid(first, 0)
    flag, preload = PRELOADS[argv[0]]
    os.dup2(stdin, 0)
    os.dup2(ready_w, READY_FD)
    os.dup2(go_r, GO_FD)
    os.closerange(3, READY_FD)  # the control pipe is the helper's now
    os.closerange(GO_FD + 1, 65536)
    become_program(uid, gid, limits, cwd)
    exec_program([argv[0], flag, preload, *argv[1:]], env)


def _helper(  # pragma: no cover - the helper process
    server: int, prefix: int, stdin: int, go_w: int, uid: int, gid: int
) -> None:
    """Wait for the stage's program in the runner's place; hand it over."""
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    keep = sorted({CONTROL_FD, stdin, go_w})
    for low, high in zip([3, *(fd + 1 for fd in keep)], [*keep, 65536], strict=True):
        os.closerange(low, high)
    size = int.from_bytes(read_exact(CONTROL_FD, 8), "big")
    argv, _, _, data, limits, _, _, _ = marshal.loads(read_exact(CONTROL_FD, size))
    view, offset = memoryview(data), 0
    while offset < len(view):
        offset += os.pwrite(stdin, view[offset:], offset)
    _limit(server, limits, uid, gid)
    _signal.signal(_signal.SIGPIPE, _signal.SIG_IGN)  # a server gone: its stage says so
    message = memoryview(json.dumps(argv[prefix:]).encode())
    while message:
        message = message[os.write(go_w, message) :]
    os._exit(0)


def _limit(server: int, limits: dict, uid: int, gid: int) -> None:  # pragma: no cover
    """Give the server the stage's rlimits (prlimit checks the caller's real
    ids against the target's: take the program's for the call)."""
    used = cpu_seconds_used(server)
    os.setresgid(gid, -1, -1)
    os.setresuid(uid, -1, -1)
    try:
        for which, value in stage_rlimits(limits, used + cpu_seconds(limits)).items():
            resource.prlimit(server, which, value)
    finally:  # not the program's to signal, nor counted in its process limit
        os.setresuid(0, -1, -1)
        os.setresgid(0, -1, -1)
