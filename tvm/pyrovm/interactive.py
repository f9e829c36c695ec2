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
from typing import TYPE_CHECKING, Any

from tvm.api import ExecutionResponse, Job, StageResult
from tvm.config.catalog import StageLimits
from tvm.errors import AgentError, InvalidRequest, SandboxError
from tvm.pyrovm.agent import protocol
from tvm.pyrovm.agent.stream import signal_number
from tvm.pyrovm.drivers.base import Sandbox, stage_message

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


def _stdin(data: bytes) -> dict[str, Any]:
    return {"type": "stdin", "data": base64.b64encode(data).decode()}


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
        self._controls: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._held: list[dict[str, Any]] = []  # stdin that waits for the run stage
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
            self._controls.put_nowait(_stdin(data))

    def eof(self) -> None:
        if not self._eof:
            self._eof = True
            self._controls.put_nowait({"type": "eof"})

    def signal(self, name: str, field: str = "signal") -> None:
        if signal_number(name) is None:
            raise InvalidRequest(field, f"must be a signal name such as SIGINT (got {name!r})")
        self._controls.put_nowait({"type": "signal", "signal": name})

    def resize(self, rows: int, cols: int) -> None:
        for name, value in (("rows", rows), ("cols", cols)):
            if not isinstance(value, int) or not 1 <= value <= MAX_ROWS_COLS:
                raise InvalidRequest(name, f"must be an integer from 1 to {MAX_ROWS_COLS}")
        self._controls.put_nowait({"type": "resize", "rows": rows, "cols": cols})

    async def next_event(self) -> Event:
        """The next event; taking an :class:`Output` acknowledges its bytes."""
        event = await self._events.get()
        if isinstance(event, Output):
            ack = {"type": "ack", "bytes": len(event.data), "stage": event.stage}
            self._controls.put_nowait(ack)
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
                        argv = run_argv(language, job.cases[0].args)
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
    ) -> dict[str, Any]:
        self._events.put_nowait(StageStarted(name))
        await sandbox.apply_limits(limits)
        oom_before = sandbox.oom_kills()
        message = stage_message(name, argv, stdin, limits, pyrun, name == "run", files)
        message["type"] = "stream"
        message["terminal"] = vars(self.terminal) if self.terminal else None
        # The channel is this stage's until its result: the same lock as a call.
        async with sandbox._lock:
            try:
                await sandbox._send(protocol.encode(message))
                writer = asyncio.create_task(self._forward(sandbox, name))
                try:
                    reply = await self._collect(sandbox, name)
                finally:
                    writer.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await writer
            except (OSError, EOFError, asyncio.IncompleteReadError, protocol.ProtocolError) as exc:
                raise AgentError(f"agent channel failed during a streamed {name}: {exc}") from exc
        return sandbox.stage_outcome(reply, oom_before)

    async def _collect(self, sandbox: Sandbox, stage: str) -> dict[str, Any]:
        while True:
            frame = await sandbox.read_frame()
            kind = frame.get("type")
            if kind == "output":
                data = base64.b64decode(frame["data"])
                self._events.put_nowait(Output(stage, frame["stream"], frame["offset"], data))
            elif kind == "stage_result":
                return frame
            elif kind == "error":
                raise AgentError(f"agent refused a streamed {stage}: {frame.get('message')}")
            else:
                raise AgentError(f"agent sent {kind!r} during a streamed {stage}")

    async def _forward(self, sandbox: Sandbox, stage: str) -> None:
        """Controls to the running stage; stdin waits while the program compiles."""
        if stage == "run":
            for held in self._held:
                await sandbox._send(protocol.encode(held))
            self._held.clear()
        while True:
            control = await self._controls.get()
            if stage != "run" and control["type"] in ("stdin", "eof"):
                self._held.append(control)
                continue
            if control.get("stage", stage) != stage:  # an ack of an earlier stage
                continue
            await sandbox._send(protocol.encode(control))
