"""A live sandbox's process over a WebSocket: its output as it comes, and
stdin and signals sent to it, on one connection (beside the NDJSON events).

``WS /api/v1/sandboxes/{sandbox_id}/commands/{pid}/ws`` (start the process
with ``"background": true`` first; give ``"stdin": ""`` to keep its stdin
open). Keys as for HTTP (``X-API-Key``), or ``?api_key=`` (a browser cannot
set a WebSocket's headers). All messages are JSON text.

Server to client: ``{"type": "stdout"|"stderr", "data": text}`` (everything
since the start, for the first one to attach), then ``{"type": "exit",
"exit_code", "signal"}`` and a normal close (1000); a refused message
answers ``{"type": "error", "message", "field"}`` and the stream goes on;
an unknown sandbox or process closes with 4404 (4401: no valid key).

Client to server: ``{"type": "stdin", "data": text}``, ``{"type":
"close_stdin"}``, ``{"type": "signal", "signal": "SIGTERM"|"SIGKILL"|"SIGINT"}``.

Lifetime: the socket closes when the process ends, which is at the latest
when its sandbox ends (its timeout, at most ``live_max_timeout_seconds``, or
a kill), or when the client closes it (the process runs on).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import signal
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from tvm.errors import InvalidRequest, NotFound, TVMError
from tvm.pyroshell.live_gate import live_gate
from tvm.pyroshell.live_ops import live_manager
from tvm.pyrovm.connect import close, close_code, error_message
from tvm.pyrovm.live import LiveSandbox
from tvm.pyrovm.live_session import Output, ProcessRecord

SIGNALS = {"SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL, "SIGINT": signal.SIGINT}
NOT_FOUND = 4404


async def _find(ws: WebSocket, sandbox_id: str, pid: int) -> tuple[LiveSandbox, ProcessRecord]:
    owner = await live_gate(ws).owner(ws)
    live = live_manager(ws).get(sandbox_id)
    if owner and live.owner != owner:
        raise NotFound(f"sandbox {sandbox_id} was not found (it ended, or never existed)")
    record = live.session.processes.get(pid)
    if record is None:
        raise NotFound(f"process {pid} not found in sandbox {sandbox_id}")
    return live, record


async def _act(live: LiveSandbox, pid: int, message: Any) -> None:
    """One client message, applied to the process."""
    kind = message.get("type") if isinstance(message, dict) else None
    if kind == "stdin":
        data = message.get("data")
        if not isinstance(data, str):
            raise InvalidRequest("data", "must be a string (the text for its stdin)")
        encoded = base64.b64encode(data.encode()).decode()
        await live.session.request("proc_input", pid=pid, data=encoded)
    elif kind == "close_stdin":
        await live.session.request("proc_close_stdin", pid=pid)
    elif kind == "signal":
        name = message.get("signal")
        if name not in SIGNALS:
            raise InvalidRequest("signal", f"must be one of {', '.join(SIGNALS)}")
        await live.session.request("proc_signal", pid=pid, signal=int(SIGNALS[name]))
    else:
        raise InvalidRequest("type", "must be stdin, close_stdin or signal")


def router() -> APIRouter:
    """Mounted under the native prefix by :func:`tvm.pyroshell.live_routes.router`."""
    routes = APIRouter()

    @routes.websocket("/{sandbox_id}/commands/{pid}/ws")
    async def command_socket(ws: WebSocket, sandbox_id: str, pid: int) -> None:
        await ws.accept()
        try:
            live, record = await _find(ws, sandbox_id, pid)
        except TVMError as exc:
            code = NOT_FOUND if isinstance(exc, NotFound) else close_code(exc)
            await ws.send_json(error_message(exc))
            await close(ws, code, exc.message)
            return

        async def client() -> None:
            while True:
                text = await ws.receive_text()
                try:
                    await _act(live, pid, json.loads(text))
                except (TVMError, ValueError) as exc:
                    error = exc if isinstance(exc, TVMError) else InvalidRequest("body", "not JSON")
                    await ws.send_json(error_message(error))

        reader = asyncio.create_task(client())
        queue = record.attach()
        try:
            while True:
                event = await _next(queue, reader)
                if event is None:
                    return  # the client went; the process runs on
                if isinstance(event, Output):
                    text = event.data.decode(errors="replace")
                    await ws.send_json({"type": event.stream, "data": text})
                    continue
                await ws.send_json(
                    {"type": "exit", "exit_code": event.exit_code, "signal": event.signal}
                )
                await close(ws, 1000)
                return
        except (WebSocketDisconnect, RuntimeError, OSError):
            return
        finally:
            record.detach(queue)
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader

    return routes


async def _next(queue: asyncio.Queue[Any], reader: asyncio.Task[None]) -> Any:
    """The process's next event, or None once the client is gone."""
    getter = asyncio.ensure_future(queue.get())
    done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
    if getter in done:
        return getter.result()
    getter.cancel()
    return None
