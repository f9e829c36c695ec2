"""``tvm run --interactive``: a program's stdin and output live, in this terminal.

With ``--url`` the run goes through the server's native WebSocket
(``/api/v1/connect``), else through an engine in this process; both are the
same :class:`~tvm.pyrovm.connect.Session`. When stdin is a terminal, the
program gets a pty of this terminal's size (resized with it) and this terminal
goes raw, so every key reaches the program: Ctrl-C interrupts it (SIGINT),
Ctrl-D ends its input. When stdin is a pipe or a file, it is streamed to the
program's stdin, end of file included, and Ctrl-C here sends SIGINT there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import termios
import tty
from collections.abc import Iterator

from tvm.api import CodeExecutionRequest, ExecutionResponse, build_job
from tvm.config.catalog import load_catalog
from tvm.config.settings import Settings
from tvm.pyrovm.connect import Session
from tvm.pyrovm.interactive import Finished, Output, Terminal

READ_CHUNK = 4096


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def converse(session: Session, stdin_fd: int, terminal: bool) -> ExecutionResponse:
    """Feed ``session`` from ``stdin_fd`` and print its output until it finishes."""
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            data = os.read(stdin_fd, READ_CHUNK)
        except OSError:
            data = b""
        if data:
            session.stdin(data)
        else:
            loop.remove_reader(stdin_fd)
            session.eof()

    loop.add_reader(stdin_fd, readable)
    if terminal:
        loop.add_signal_handler(
            signal.SIGWINCH, lambda: session.resize(*reversed(os.get_terminal_size(stdin_fd)))
        )
    else:
        loop.add_signal_handler(signal.SIGINT, lambda: session.signal("SIGINT"))
    runner = asyncio.create_task(session.run())
    try:
        while True:
            getter = asyncio.create_task(session.next_event())
            done, _ = await asyncio.wait({getter, runner}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                runner.result()  # raises why the run failed
                continue
            event = getter.result()
            if isinstance(event, Output):
                out = sys.stderr if event.stream == "stderr" else sys.stdout
                out.buffer.write(event.data)
                out.buffer.flush()
            elif isinstance(event, Finished):
                return event.response
    finally:
        loop.remove_reader(stdin_fd)
        loop.remove_signal_handler(signal.SIGWINCH if terminal else signal.SIGINT)
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await runner


async def _local(request: CodeExecutionRequest, settings: Settings, size: Terminal | None,
                 stdin_fd: int) -> ExecutionResponse:  # fmt: skip
    from tvm.pyrovm import drivers
    from tvm.pyrovm.engine import Engine

    catalog = load_catalog()
    job = build_job(request, settings, catalog)
    engine = Engine(settings, catalog, drivers.choose(settings))
    await engine.start()
    try:
        return await converse(engine.interactive(job, size), stdin_fd, size is not None)
    finally:
        await engine.close()


async def _remote(request: CodeExecutionRequest, url: str, size: Terminal | None,
                  stdin_fd: int) -> ExecutionResponse:  # fmt: skip
    from tvm.pyroshell.connect_remote import RemoteSession

    session = RemoteSession(url.rstrip("/"), request, size)
    return await converse(session, stdin_fd, size is not None)


def run_interactive(
    request: CodeExecutionRequest, url: str | None, settings: Settings
) -> ExecutionResponse:
    """Run ``request`` interactively (see the module docstring)."""
    stdin_fd = sys.stdin.fileno()
    is_tty = os.isatty(stdin_fd)
    size = None
    if is_tty:
        columns, lines = os.get_terminal_size(stdin_fd)
        size = Terminal(rows=lines, cols=columns)
    if url:
        job = _remote(request, url, size, stdin_fd)
    else:
        job = _local(request, settings, size, stdin_fd)
    if not is_tty:
        return asyncio.run(job)
    with raw_terminal(stdin_fd):
        return asyncio.run(job)
