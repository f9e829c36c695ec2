"""An interactive run on a worker process, through its native ``/api/v1/connect``.

The gateway's side of the conversation when it embeds no engine: the same
:class:`~tvm.pyrovm.connect.Session` as a local run, so both protocols serve it
alike. Events are read from the worker's socket only as fast as the client
takes them (a bounded queue), so backpressure reaches the worker and from
there the agent. A worker's error message becomes the same error here.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import websockets

from tvm.api import CodeExecutionRequest, ExecutionResponse, StageResult
from tvm.errors import (
    CapacityError,
    ImageNotBuilt,
    InvalidRequest,
    SandboxError,
    TVMError,
    Unauthorized,
)
from tvm.pyrovm.interactive import (
    Event,
    Finished,
    Output,
    StageEnded,
    StageStarted,
    Started,
    Terminal,
)
from tvm.utils.web import REQUEST_ID_HEADER

QUEUE_EVENTS = 16


def _ws_url(worker: str) -> str:
    return worker.replace("http://", "ws://", 1).replace("https://", "wss://", 1)


def _error(message: dict[str, Any], code: int | None) -> TVMError:
    text = str(message.get("message", "the worker ended the run"))
    if code == 4400 and message.get("field"):
        field = str(message["field"])
        return InvalidRequest(field, text.removeprefix(f"{field}: "))
    if code == 4401:
        return Unauthorized(text)
    if code == 4429:
        return CapacityError(text, retry_after=1)
    if code == 4503:
        return ImageNotBuilt(text)
    return SandboxError(f"worker: {text}")


class RemoteSession:
    def __init__(
        self,
        worker: str,
        request: CodeExecutionRequest,
        terminal: Terminal | None,
        request_id: str = "",
    ) -> None:
        self.url = _ws_url(worker) + "/api/v1/connect"
        self.request = request
        self.terminal = terminal
        self.request_id = request_id
        self._events: asyncio.Queue[Event] = asyncio.Queue(QUEUE_EVENTS)
        self._out: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    # -- the client's side (forwarded as native messages) ---------------------------
    def stdin(self, data: bytes, field: str = "data") -> None:
        self._out.put_nowait(
            {"type": "stdin", "data": base64.b64encode(data).decode(), "encoding": "base64"}
        )

    def eof(self) -> None:
        self._out.put_nowait({"type": "eof"})

    def signal(self, name: str, field: str = "signal") -> None:
        self._out.put_nowait({"type": "signal", "signal": name})

    def resize(self, rows: int, cols: int) -> None:
        self._out.put_nowait({"type": "resize", "rows": rows, "cols": cols})

    async def next_event(self) -> Event:
        return await self._events.get()

    # -- the worker's side ----------------------------------------------------------
    async def run(self) -> ExecutionResponse:
        headers = {REQUEST_ID_HEADER: self.request_id} if self.request_id else {}
        start = {
            "type": "start",
            "request": self.request.model_dump(mode="json", exclude_none=True),
            "terminal": vars(self.terminal) if self.terminal else None,
        }
        try:
            async with websockets.connect(
                self.url, additional_headers=headers, max_queue=QUEUE_EVENTS, max_size=1 << 24
            ) as ws:
                await ws.send(json.dumps(start))
                forward = asyncio.create_task(self._forward(ws))
                try:
                    return await self._receive(ws)
                finally:
                    forward.cancel()
        except (OSError, websockets.WebSocketException) as exc:
            raise SandboxError(f"the worker's connection failed: {exc}") from exc

    async def _forward(self, ws: Any) -> None:
        while True:
            await ws.send(json.dumps(await self._out.get()))

    async def _receive(self, ws: Any) -> ExecutionResponse:
        base64_output = self.request.output_encoding == "base64"
        async for text in ws:
            message = json.loads(text)
            kind = message.get("type")
            if kind == "output":
                data = message["data"]
                raw = base64.b64decode(data) if base64_output else data.encode()
                event: Event = Output(message["stage"], message["stream"], message["offset"], raw)
            elif kind == "started":
                event = Started(message["language"], message["version"])
            elif kind == "stage":
                event = StageStarted(message["stage"])
            elif kind == "exit":
                event = StageEnded(message["stage"], StageResult.model_validate(message["result"]))
            elif kind == "result":
                response = ExecutionResponse.model_validate(message["result"])
                await self._events.put(Finished(response))
                return response
            elif kind == "error":
                await ws.wait_closed()
                raise _error(message, ws.close_code)
            else:
                continue
            await self._events.put(event)
        raise SandboxError(f"the worker closed the run ({ws.close_code}) before its result")
