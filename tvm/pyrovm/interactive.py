"""Interactive runs: one job whose output, stdin and signals are streamed.

The same engine path as :meth:`Engine.execute` (admission, a fresh sandbox per
job, the compile stage then the run stage, the same limits and the same
result), with the stages run by the agent's ``stream`` request
(:mod:`tvm.pyrovm.agent.stream`): each chunk the program writes becomes an
:class:`Output` event as it comes, and :meth:`InteractiveRun.stdin`,
:meth:`~InteractiveRun.signal` and :meth:`~InteractiveRun.resize` reach the
running stage. Stdin typed while the program compiles waits for the run stage;
a signal goes to whichever stage runs.

Backpressure: the agent sends at most its flow-control window of output that
has not been acknowledged, and an :class:`Output` is acknowledged only when the
consumer takes it (:meth:`InteractiveRun.next_event`), so a slow consumer holds
back the program itself and the service never holds more than that window.
Cancelling :meth:`InteractiveRun.run` (a client went away) destroys the
sandbox at once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tvm.api import ExecutionResponse, Job, StageResult
from tvm.config.catalog import StageLimits
from tvm.errors import InvalidRequest, SandboxError
from tvm.pyrovm.agent.stream import signal_number
from tvm.pyrovm.drivers.base import Sandbox, StageRun
from tvm.pyrovm.drivers.messages import Ack, Resize, Signal, StageReply, Stdin

if TYPE_CHECKING:
    from tvm.pyrovm.engine import Engine

MAX_ROWS_COLS = 1000


@dataclass(frozen=True)
class Terminal:
    rows: int = 24
    cols: int = 80


# -- what the consumer is told --------------------------------------------------------
@dataclass(frozen=True)
class Started:
    """A sandbox was taken for the job."""

    language: str
    version: str


@dataclass(frozen=True)
class StageStarted:
    stage: str  # "compile" | "run"


@dataclass(frozen=True)
class Output:
    stage: str
    stream: str  # "stdout" | "stderr" (a terminal's output is "stdout")
    offset: int  # where ``data`` starts in its stream
    data: bytes


@dataclass(frozen=True)
class StageEnded:
    stage: str
    result: StageResult


@dataclass(frozen=True)
class Finished:
    response: ExecutionResponse


Event = Started | StageStarted | Output | StageEnded | Finished
Control = Stdin | Signal | Resize | Ack  # frames for the running stage


class InteractiveRun:
    """One interactive job on ``engine``. Run :meth:`run` in a task, read
    :meth:`next_event` until :class:`Finished`, feed it with the other methods."""

    def __init__(
        self, engine: Engine, job: Job, terminal: Terminal | None, max_stdin_bytes: int
    ) -> None:
        self.engine = engine
        self.job = job
        self.terminal = terminal
        self.max_stdin_bytes = max_stdin_bytes
        self.stdin_bytes = 0
        self._events: asyncio.Queue[Event] = asyncio.Queue()  # bounded: see the docstring
        # (the stage an ack is for, or None; the frame for the running stage)
        self._controls: asyncio.Queue[tuple[str | None, Control]] = asyncio.Queue()
        self._held: list[Control] = []  # stdin that waits for the run stage
        self._eof = False

    # -- the client's side ----------------------------------------------------------
    def stdin(self, data: bytes, field: str = "data") -> None:
        """Bytes for the program's stdin; the total is capped as a request's stdin is."""
        if self._eof:
            raise InvalidRequest(field, "stdin was already closed (eof)")
        self.stdin_bytes += len(data)
        if self.stdin_bytes > self.max_stdin_bytes:
            raise InvalidRequest(
                field, f"stdin of a run must be at most {self.max_stdin_bytes} bytes in all"
            )
        if data:
            self._controls.put_nowait((None, Stdin(data)))

    def eof(self) -> None:
        if not self._eof:
            self._eof = True
            self._controls.put_nowait((None, Stdin(b"", eof=True)))

    def signal(self, name: str, field: str = "signal") -> None:
        if signal_number(name) is None:
            raise InvalidRequest(field, f"must be a signal name such as SIGINT (got {name!r})")
        self._controls.put_nowait((None, Signal(name)))

    def resize(self, rows: int, cols: int) -> None:
        for name, value in (("rows", rows), ("cols", cols)):
            if not isinstance(value, int) or not 1 <= value <= MAX_ROWS_COLS:
                raise InvalidRequest(name, f"must be an integer from 1 to {MAX_ROWS_COLS}")
        self._controls.put_nowait((None, Resize(rows, cols)))

    async def next_event(self) -> Event:
        """The next event; taking an :class:`Output` acknowledges its bytes."""
        event = await self._events.get()
        if isinstance(event, Output):
            self._controls.put_nowait((event.stage, Ack(len(event.data))))
        return event

    # -- the engine's side ----------------------------------------------------------
    async def run(self) -> ExecutionResponse:
        """Run the job (admission included); the last event is :class:`Finished`."""
        from tvm.pyrovm.engine import compile_argv, internal_stage, run_argv, stage_result

        job, language = self.job, self.job.language
        response = ExecutionResponse(language=language.name, version=language.version, status="ok")
        try:
            with self.engine.admit():
                async with self.engine.sandboxes.sandbox(language) as sandbox:
                    self._events.put_nowait(Started(language.name, language.version))
                    if language.compiled:
                        argv = compile_argv(language, job.files, job.compiler_options)
                        reply = await self._stage(
                            sandbox, "compile", argv, b"", job.compile_limits, False, job.files
                        )
                        response.compile = stage_result(reply, job.output_encoding)
                        self._events.put_nowait(StageEnded("compile", response.compile))
                        if response.compile.status != "ok":
                            response.status = "compile_error"
                    if response.status != "compile_error":
                        argv = run_argv(language, job.files, job.cases[0].args)
                        pyrun = language.prestarted and self.engine.settings.prestart
                        reply = await self._stage(
                            sandbox, "run", argv, job.cases[0].stdin, job.run_limits, pyrun,
                            None if language.compiled else job.files,
                        )  # fmt: skip
                        response.run = stage_result(reply, job.output_encoding)
                        response.status = response.run.status
                        self._events.put_nowait(StageEnded("run", response.run))
        except SandboxError as exc:
            response.status = "internal_error"
            response.message = str(exc)
            if response.run is None:
                response.run = internal_stage(str(exc))
        self.engine.outcomes[response.status] = self.engine.outcomes.get(response.status, 0) + 1
        self._events.put_nowait(Finished(response))
        return response

    async def _stage(
        self,
        sandbox: Sandbox,
        name: str,
        argv: list[str],
        stdin: bytes,
        limits: StageLimits,
        pyrun: bool,
        files: list[tuple[str, bytes, int]] | None,
    ) -> StageReply:
        self._events.put_nowait(StageStarted(name))
        terminal = vars(self.terminal) if self.terminal else None
        async with sandbox.stage(
            name, argv, stdin, limits, pyrun, name == "run", files, stream=True, terminal=terminal
        ) as run:
            forwarder = asyncio.create_task(self._forward(run, name))
            try:
                async for event in run:
                    if event.event == "output":
                        data = base64.b64decode(event.data["data"])
                        stream, offset = event.data["stream"], event.data["offset"]
                        self._events.put_nowait(Output(name, stream, offset, data))
            finally:
                forwarder.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await forwarder
        return run.result

    async def _forward(self, run: StageRun, stage: str) -> None:
        """Controls to the running stage; stdin waits while the program compiles."""
        if stage == "run":
            for held in self._held:
                await run.send(held)
            self._held.clear()
        while True:
            for_stage, control = await self._controls.get()
            if stage != "run" and isinstance(control, Stdin):
                self._held.append(control)
            elif for_stage in (None, stage):  # not an ack of an earlier stage
                await run.send(control)
