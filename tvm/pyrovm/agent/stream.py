"""Streamed stages: output reaches the host as the program writes it, and
stdin, signals and the terminal's size come from the host while it runs.

The host asks with a ``stage`` request that says ``"stream": true``, and
``"terminal": null`` (stdin is a pipe; stdout and stderr stay apart) or
``{"rows": R, "cols": C}`` (stdin, stdout and stderr are one pty). Until its
``stage_result`` (the same as for any stage, whole outputs included) the
agent sends events::

    {"type": "event", "event": "output", "stream": "stdout"|"stderr",
     "offset": N, "data": "<b64>"}

(``offset``: where the chunk starts in its stream) and reads control frames,
which are never answered::

    {"type": "stdin", "data": "<b64>", "eof": false}  (eof: true closes stdin)
    {"type": "signal", "signal": "SIGINT"} {"type": "resize", "rows": R, "cols": C}
    {"type": "ack", "size": N}             (N more output bytes were forwarded)

Flow control: at most :data:`WINDOW` output bytes are out and not yet acked;
past that the agent stops reading the program's output, so a program writing
faster than its client reads blocks in ``write()`` while its time limits keep
running. Control frames that arrive after the stage has ended are dropped.
Stdlib only: this runs inside the sandbox.
"""

from __future__ import annotations

import base64
import contextlib
import os
import select
import signal

from . import protocol, supervisor

CONTROL = frozenset({"stdin", "signal", "resize", "ack"})
WINDOW = 256 << 10
_EOT = b"\x04"  # a terminal's end of file (at the start of a line)


def signal_number(name: str) -> int | None:
    """The number of a signal named like ``SIGINT``; None for anything else."""
    if not isinstance(name, str) or not name.startswith("SIG") or name.startswith("SIG_"):
        return None
    value = getattr(signal, name, None)
    return int(value) if isinstance(value, signal.Signals) else None


class LiveStage(supervisor.Live):
    """One streamed stage, as :func:`supervisor.run_stage` serves it."""

    def __init__(self, agent, uid: int, stdin: bytes, tty: bool) -> None:
        self.agent = agent
        self.rfd = agent.rfile.fileno()
        self.uid = uid
        self.tty = tty
        self.pending = bytearray(stdin)
        self.eof = False
        self.eot_sent = False
        self.offsets = {"stdout": 0, "stderr": 0}
        self.unacked = 0
        self.free = False  # the program is gone: no more flow control
        self.muted: set[int] = set()
        self.writing = False
        self.stdin_w: int | None = None
        self.master: int | None = None
        self.poller: select.poll | None = None
        self.output_fds: set[int] = set()
        self.pid = 0

    # -- the loop's hooks -----------------------------------------------------
    def attach(self, runner: supervisor.Runner, poller: select.poll, output_fds: set[int]) -> None:
        self.poller, self.output_fds, self.pid = poller, output_fds, runner.pid
        self.stdin_w = runner.stdin_w
        self.master = runner.out_r if self.tty else None
        if self.stdin_w is not None:
            os.set_blocking(self.stdin_w, False)
        poller.register(self.rfd, select.POLLIN)
        self._update_stdin()

    def handle(self, fd: int, event: int) -> str | None:
        if fd == self.rfd:
            return self._control()
        if fd == self.stdin_w:
            if event & (select.POLLERR | select.POLLHUP):
                self._close_stdin()  # nobody reads it any more
            else:
                self._write_stdin()
        return None

    def output(self, stream: str, chunk: bytes) -> None:
        offset = self.offsets[stream]
        self.offsets[stream] = offset + len(chunk)
        self.unacked += len(chunk)
        self.agent.send(
            {
                "type": "event",
                "event": "output",
                "stream": stream,
                "offset": offset,
                "data": base64.b64encode(chunk).decode(),
            }
        )

    def throttle(self) -> None:
        if self.free or self.poller is None:
            return
        if self.unacked >= WINDOW:
            for fd in self.output_fds - self.muted:
                self.poller.unregister(fd)
                self.muted.add(fd)
        elif self.muted:
            self.unthrottle(keep_control=True)

    def unthrottle(self, keep_control: bool = False) -> None:
        assert self.poller is not None
        for fd in self.muted & self.output_fds:
            self.poller.register(fd, select.POLLIN)
        self.muted.clear()
        self.free = self.free or not keep_control

    def detach(self) -> None:
        self._close_stdin()

    # -- control frames ---------------------------------------------------------
    def _control(self) -> str | None:
        message = protocol.read_frame(self.agent.rfile.read)
        if message is None:  # the host is gone: end the stage now
            assert self.poller is not None
            self.poller.unregister(self.rfd)
            return "internal_error"
        kind = message.get("type")
        if kind == "ack":
            self.unacked = max(0, self.unacked - int(message.get("size", 0)))
        elif kind == "stdin" and not self.eof:
            self.pending += base64.b64decode(message.get("data", ""))
            self.eof = bool(message.get("eof"))
            self._update_stdin()
        elif kind == "signal":
            signum = signal_number(message.get("signal", ""))
            if signum is not None:
                self._signal(signum)
        elif kind == "resize" and self.master is not None:
            with contextlib.suppress(OSError, ValueError, TypeError):
                supervisor.set_winsize(self.master, int(message["rows"]), int(message["cols"]))
        return None

    def _signal(self, signum: int) -> None:
        """Send ``signum`` to the program's process group, as its uid (the agent
        holds no CAP_KILL): a helper becomes the uid and signals."""
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                os.setresuid(self.uid, self.uid, self.uid)
                os.killpg(self.pid, signum)
            except BaseException:
                pass
            os._exit(0)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)  # unless the stage's reaper collected it first

    # -- stdin ------------------------------------------------------------------------
    def _update_stdin(self) -> None:
        if self.stdin_w is None or self.poller is None:
            return
        if self.pending and not self.writing:
            self.poller.register(self.stdin_w, select.POLLOUT)
            self.writing = True
        elif not self.pending:
            if self.writing:
                self.poller.unregister(self.stdin_w)
                self.writing = False
            if self.eof and not self.tty:
                self._close_stdin()
            elif self.eof and not self.eot_sent:
                # A terminal's end of file: EOT on its own, once what came before
                # is written (a line discipline may not see it inside a write).
                self.eot_sent = True
                self.pending += _EOT
                self._update_stdin()

    def _write_stdin(self) -> None:
        assert self.stdin_w is not None
        try:
            written = os.write(self.stdin_w, self.pending[: 1 << 16])
        except BlockingIOError:
            return
        except OSError:  # EPIPE: the program closed its stdin
            self._close_stdin()
            return
        del self.pending[:written]
        self._update_stdin()

    def _close_stdin(self) -> None:
        self.pending.clear()
        if self.stdin_w is None:
            return
        if self.writing and self.poller is not None:
            self.poller.unregister(self.stdin_w)
            self.writing = False
        with contextlib.suppress(OSError):
            os.close(self.stdin_w)
        self.stdin_w = None
