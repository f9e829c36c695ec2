"""Piston's ``/api/v2/connect``: an interactive run over a WebSocket, as Piston speaks it.

Client messages (JSON text)::

    {"type": "init", <the fields of POST /api/v2/execute>}    within 1 s of connecting
    {"type": "data", "stream": "stdin", "data": "text"}       written to stdin as is
    {"type": "signal", "signal": "SIGINT"}                     sent to the running stage

Server messages::

    {"type": "runtime", "language": "python", "version": "3.11.2"}
    {"type": "stage", "stage": "compile" | "run"}
    {"type": "data", "stream": "stdout" | "stderr", "data": "text"}   as it is written
    {"type": "exit", "stage": "run", "code": 0, "signal": null}      (+ status, message
                                                 as /api/v2/execute has them, when set)
    {"type": "error", "message": "..."}

Close codes, Piston's: 4000 already initialized, 4001 initialization timeout,
4002 notified error (after an ``error`` message), 4003 not yet initialized,
4004 can only write to stdin, 4005 invalid signal, 4999 job completed.
Unlike Piston's own server, signals reach the job. Messages of other types
are ignored, as Piston does; ``stdin`` in ``init`` is written first.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import WebSocket

from tvm.api import CodeExecutionRequest
from tvm.compat import piston
from tvm.config.catalog import Catalog, load_catalog
from tvm.errors import InvalidRequest, TVMError
from tvm.pyrovm.agent.stream import signal_number
from tvm.pyrovm.connect import Close, Session, close, converse, receive_json
from tvm.pyrovm.interactive import Event, Output, StageEnded, StageStarted, Started

INIT_DEADLINE_SECONDS = 1.0  # Piston's

ALREADY_INITIALIZED = Close(4000, "Already Initialized")
NOT_INITIALIZED = Close(4003, "Not yet initialized")
ONLY_STDIN = Close(4004, "Can only write to stdin")
INVALID_SIGNAL = Close(4005, "Invalid signal")
INIT_TIMEOUT = Close(4001, "Initialization Timeout")
JOB_COMPLETED = (4999, "Job Completed")
NOTIFIED_ERROR = 4002


def _refusal(message: Any) -> Close | None:
    """How Piston answers a message that comes before ``init``."""
    kind = message.get("type") if isinstance(message, dict) else None
    return NOT_INITIALIZED if kind in ("data", "signal") else None


def parse_init(message: Any, catalog: Catalog | None = None) -> CodeExecutionRequest:
    """The ``init`` message is checked as ``POST /api/v2/execute`` checks its body."""
    return piston.parse(message, catalog or load_catalog(), interactive=True)


def handler(session: Session) -> Callable[[Any], None]:
    def handle(message: Any) -> None:
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "init":
            raise ALREADY_INITIALIZED
        if kind == "data":
            if message.get("stream") != "stdin":
                raise ONLY_STDIN
            data = message.get("data", "")
            if not isinstance(data, str):
                raise InvalidRequest("data", "must be a string")
            session.stdin(data.encode())
        elif kind == "signal":
            name = message.get("signal")
            if not isinstance(name, str) or signal_number(name) is None:
                raise INVALID_SIGNAL
            session.signal(name)

    return handle


class Sender:
    """Events as Piston's messages (text decoded per stream, never splitting a character)."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.decoders: dict[str, codecs.IncrementalDecoder] = {}

    async def __call__(self, event: Event) -> None:
        if isinstance(event, Output):
            decoder = self.decoders.setdefault(
                event.stream, codecs.getincrementaldecoder("utf-8")("replace")
            )
            text = decoder.decode(event.data)
            if text:
                await self.send({"type": "data", "stream": event.stream, "data": text})
        elif isinstance(event, Started):
            await self.send({"type": "runtime", "language": event.language,
                             "version": event.version})  # fmt: skip
        elif isinstance(event, StageStarted):
            self.decoders.clear()
            await self.send({"type": "stage", "stage": event.stage})
        elif isinstance(event, StageEnded):
            for stream, decoder in self.decoders.items():
                if text := decoder.decode(b"", final=True):
                    await self.send({"type": "data", "stream": stream, "data": text})
            self.decoders.clear()
            stage = piston.stage_dict(event.result)
            message = {"type": "exit", "stage": event.stage,
                       "code": stage["code"], "signal": stage["signal"]}  # fmt: skip
            if stage["status"] is not None:
                message.update(status=stage["status"], message=stage["message"])
            await self.send(message)

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_text(json.dumps(message))


async def serve(
    ws: WebSocket,
    open_session: Callable[[CodeExecutionRequest], Awaitable[Session]],
) -> None:
    """One Piston conversation on an accepted socket."""
    try:
        deadline = asyncio.get_running_loop().time() + INIT_DEADLINE_SECONDS
        while True:  # what comes before init
            left = deadline - asyncio.get_running_loop().time()
            try:
                message = await receive_json(ws, max(left, 0.0))
            except TimeoutError as exc:
                raise INIT_TIMEOUT from exc
            if message is None:
                return
            if isinstance(message, dict) and message.get("type") == "init":
                break
            refusal = _refusal(message)
            if refusal is not None:
                raise refusal
        session = await open_session(parse_init(message))
        if await converse(ws, session, handler(session), Sender(ws)) is not None:
            await close(ws, *JOB_COMPLETED)
    except Close as stop:
        await close(ws, stop.code, stop.reason)
    except TVMError as exc:
        message_text = exc.message
        if isinstance(exc, InvalidRequest):
            message_text = piston.rename_field(exc).message
        with contextlib.suppress(Exception):
            await ws.send_text(json.dumps({"type": "error", "message": message_text}))
        await close(ws, NOTIFIED_ERROR, "Notified Error")
