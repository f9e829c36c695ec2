"""WebSocket conversations over an interactive run, and the native protocol.

:func:`converse` drives one run over one WebSocket for any protocol: the
client's messages go to the protocol's handler while the run's events go out
through the protocol's sender; the socket closing (the client went away)
cancels the run, which destroys its sandbox at once. Output is taken from the
run only as fast as the socket sends it (backpressure: see
:mod:`tvm.pyrovm.interactive`).

The native protocol, ``/api/v1/connect`` (JSON text messages). Client::

    {"type": "start", "request": {<POST /api/v1/execute body>},
     "terminal": null | {"rows": 24, "cols": 80}}          first, within 10 s
    {"type": "stdin", "data": "text", "encoding": "utf8" | "base64"}
    {"type": "eof"}
    {"type": "signal", "signal": "SIGINT"}
    {"type": "resize", "rows": 40, "cols": 120}            terminal mode

Server::

    {"type": "started", "language": "python", "version": "3.11.2"}
    {"type": "stage", "stage": "compile" | "run"}
    {"type": "output", "stage": "run", "stream": "stdout" | "stderr",
     "offset": 0, "data": "..."}      offset: bytes of that stream before it;
                                      data: text, or base64 with output_encoding
    {"type": "exit", "stage": "run", "result": {<a stage result>}}
    {"type": "result", "result": {<the POST /api/v1/execute response>}}
    {"type": "error", "message": "...", "field": "..."}

After ``result`` the server closes with 1000. After ``error`` it closes with
4400 (a bad message or request; ``field`` names it), 4401 (an API key is
required), 4408 (no ``start`` in time), 4429 (too busy or over a quota: retry
later), 4503 (the language's image is not built, or no worker) or 1011.
Every limit of the request holds as for ``/api/v1/execute``; stdin sent over
the socket counts against the same ``max_stdin_bytes``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import codecs
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from fastapi import WebSocket
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect, WebSocketState

from tvm.api import CodeExecutionRequest, ExecutionResponse
from tvm.errors import CapacityError, ImageError, InvalidRequest, TVMError, Unauthorized
from tvm.pyrovm.interactive import (
    MAX_ROWS_COLS,
    Event,
    Finished,
    Output,
    StageEnded,
    StageStarted,
    Started,
    Terminal,
)

START_DEADLINE_SECONDS = 10.0


class Session(Protocol):
    """An interactive run as a conversation sees it (local or on a worker)."""

    def stdin(self, data: bytes, field: str = "data") -> None: ...
    def eof(self) -> None: ...
    def signal(self, name: str, field: str = "signal") -> None: ...
    def resize(self, rows: int, cols: int) -> None: ...
    async def next_event(self) -> Event: ...
    async def run(self) -> ExecutionResponse: ...


class Close(Exception):
    """End the conversation: close the socket with ``code`` (after ``message``, if any)."""

    def __init__(self, code: int, reason: str = "", message: dict[str, Any] | None = None):
        super().__init__(reason)
        self.code, self.reason, self.message = code, reason, message


def request_error(exc: ValidationError) -> InvalidRequest:
    """The first problem of a pydantic error, as the HTTP routes name it."""
    from fastapi.exceptions import RequestValidationError

    from tvm.utils.web import validation_message

    return InvalidRequest(*validation_message(RequestValidationError(exc.errors())))


async def receive_json(ws: WebSocket, timeout: float | None = None) -> Any:
    """The next message, parsed; None when the client closed. Not JSON: Close(4400)."""
    try:
        text = await asyncio.wait_for(ws.receive_text(), timeout)
    except WebSocketDisconnect:
        return None
    except KeyError as exc:  # a binary message
        raise InvalidRequest("message", "must be a JSON text message") from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidRequest("message", f"is not valid JSON: {exc}") from exc


async def close(ws: WebSocket, code: int, reason: str = "") -> None:
    if ws.application_state != WebSocketState.DISCONNECTED:
        with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
            await ws.close(code, reason[:120])


async def converse(
    ws: WebSocket,
    session: Session,
    on_message: Callable[[Any], None],
    on_event: Callable[[Event], Awaitable[None]],
) -> ExecutionResponse | None:
    """Run ``session`` while serving ``ws`` (see the module docstring); returns
    the result, or None when the client went away first. Raises what the run
    or ``on_message`` raised (``Close``, a :class:`~tvm.errors.TVMError`)."""

    async def read() -> None:
        while True:
            message = await receive_json(ws)
            if message is None:
                return
            on_message(message)

    runner = asyncio.create_task(session.run(), name="interactive-run")
    reader = asyncio.create_task(read(), name="interactive-read")
    getter: asyncio.Task[Event] | None = None
    try:
        while True:
            if getter is None:
                getter = asyncio.create_task(session.next_event())
            waiting = {getter, reader} | ({runner} if not runner.done() else set())
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                event = getter.result()
                getter = None
                await on_event(event)
                if isinstance(event, Finished):
                    return event.response
            elif reader in done:
                reader.result()  # raises what the client's message caused
                return None  # the client went away: the run is cancelled below
            elif runner.done() and runner.exception() is not None:
                raise runner.exception()  # type: ignore[misc]
    finally:
        tasks = [task for task in (runner, reader, getter) if task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


# -- the native protocol ---------------------------------------------------------------
def close_code(exc: TVMError) -> int:
    if isinstance(exc, Unauthorized):
        return 4401
    if isinstance(exc, CapacityError):
        return 4429
    if isinstance(exc, ImageError) or exc.status_code == 503:
        return 4503
    if 400 <= exc.status_code < 500:
        return 4400
    return 1011


def error_message(exc: TVMError) -> dict[str, Any]:
    return {"type": "error", **exc.to_dict()}


def parse_start(message: Any) -> tuple[CodeExecutionRequest, Terminal | None]:
    if not isinstance(message, dict) or message.get("type") != "start":
        raise InvalidRequest("type", 'the first message must be {"type": "start", ...}')
    try:
        request = CodeExecutionRequest.model_validate(message.get("request"))
    except ValidationError as exc:  # named as /api/v1/execute names its fields
        raise request_error(exc) from exc
    terminal = message.get("terminal")
    if terminal is None:
        return request, None
    if not isinstance(terminal, dict):
        raise InvalidRequest("terminal", 'must be null or {"rows": R, "cols": C}')
    rows, cols = terminal.get("rows", 24), terminal.get("cols", 80)
    for name, value in (("rows", rows), ("cols", cols)):
        if not isinstance(value, int) or not 1 <= value <= MAX_ROWS_COLS:
            raise InvalidRequest(
                f"terminal.{name}", f"must be an integer from 1 to {MAX_ROWS_COLS}"
            )
    return request, Terminal(rows, cols)


def native_handler(session: Session) -> Callable[[Any], None]:
    """The client's messages after ``start``."""

    def handle(message: Any) -> None:
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "stdin":
            data = message.get("data", "")
            if not isinstance(data, str):
                raise InvalidRequest("data", "must be a string")
            if message.get("encoding", "utf8") == "base64":
                try:
                    session.stdin(base64.b64decode(data, validate=True))
                except binascii.Error as exc:
                    raise InvalidRequest("data", f"is not valid base64: {exc}") from exc
            else:
                session.stdin(data.encode())
        elif kind == "eof":
            session.eof()
        elif kind == "signal":
            session.signal(message.get("signal"))
        elif kind == "resize":
            session.resize(message.get("rows"), message.get("cols"))
        else:
            raise InvalidRequest(
                "type", "must be one of stdin, eof, signal, resize (start only comes first)"
            )

    return handle


class NativeSender:
    """Events as native messages; text output is decoded per stream without
    splitting a character (``offset`` counts the bytes before ``data``)."""

    def __init__(self, ws: WebSocket, encoding: str) -> None:
        self.ws = ws
        self.encoding = encoding
        self.decoders: dict[tuple[str, str], codecs.IncrementalDecoder] = {}
        self.sent: dict[tuple[str, str], int] = {}

    async def __call__(self, event: Event) -> None:
        if isinstance(event, Output):
            await self._output(event)
        elif isinstance(event, Started):
            await self.send({"type": "started", "language": event.language,
                             "version": event.version})  # fmt: skip
        elif isinstance(event, StageStarted):
            await self.send({"type": "stage", "stage": event.stage})
        elif isinstance(event, StageEnded):
            await self._flush(event.stage)
            await self.send({"type": "exit", "stage": event.stage,
                             "result": event.result.model_dump(mode="json")})  # fmt: skip
        elif isinstance(event, Finished):
            await self.send({"type": "result", "result": event.response.model_dump(mode="json")})

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_text(json.dumps(message, separators=(",", ":")))

    async def _output(self, event: Output) -> None:
        key = (event.stage, event.stream)
        if self.encoding == "base64":
            data = base64.b64encode(event.data).decode()
            await self._send_output(key, event.offset, data)
            return
        decoder = self.decoders.setdefault(key, codecs.getincrementaldecoder("utf-8")("replace"))
        start = self.sent.get(key, event.offset)
        text = decoder.decode(event.data)
        held = len(decoder.getstate()[0])
        self.sent[key] = event.offset + len(event.data) - held
        if text:
            await self._send_output(key, start, text)

    async def _flush(self, stage: str) -> None:
        for key, decoder in list(self.decoders.items()):
            if key[0] == stage:
                text = decoder.decode(b"", final=True)
                if text:
                    await self._send_output(key, self.sent[key], text)
                del self.decoders[key]

    async def _send_output(self, key: tuple[str, str], offset: int, data: str) -> None:
        await self.send({"type": "output", "stage": key[0], "stream": key[1],
                         "offset": offset, "data": data})  # fmt: skip


async def serve_native(
    ws: WebSocket,
    open_session: Callable[[CodeExecutionRequest, Terminal | None], Awaitable[Session]],
) -> None:
    """One native conversation on an accepted socket. ``open_session`` validates
    the request (raising a :class:`~tvm.errors.TVMError`) and returns its run."""
    try:
        try:
            first = await receive_json(ws, START_DEADLINE_SECONDS)
        except TimeoutError as exc:
            raise Close(4408, "no start message in time", {
                "type": "error", "field": "start",
                "message": f"start: send the start message within {START_DEADLINE_SECONDS:g} s",
            }) from exc  # fmt: skip
        if first is None:
            return
        request, terminal = parse_start(first)
        session = await open_session(request, terminal)
        sender = NativeSender(ws, request.output_encoding)
        if await converse(ws, session, native_handler(session), sender) is not None:
            await close(ws, 1000, "finished")
    except Close as stop:
        if stop.message is not None:
            with contextlib.suppress(Exception):
                await ws.send_text(json.dumps(stop.message))
        await close(ws, stop.code, stop.reason)
    except TVMError as exc:
        with contextlib.suppress(Exception):
            await ws.send_text(json.dumps(error_message(exc)))
        await close(ws, close_code(exc), exc.message)
