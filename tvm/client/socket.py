"""A live sandbox's process over its WebSocket
(``/api/v1/sandboxes/{id}/commands/{pid}/ws``): its output as it comes, and
stdin, end of input and signals sent to it on the same connection.

:class:`CommandSocket` (blocking) and :class:`AsyncCommandSocket` share the
messages and their reading (:func:`message`, :func:`event`); only the
transport differs. Iterating one yields :class:`CommandEvent` objects until
the process's ``exit`` (the last one).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection as AsyncConnection
from websockets.asyncio.client import connect as async_connect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tvm.errors import InvalidRequest, NotFound, TVMError
from tvm.live_api import CommandSignal

MAX_MESSAGE = 1 << 24


@dataclass(frozen=True)
class CommandEvent:
    type: str  # stdout | stderr | exit
    data: str = ""
    exit_code: int | None = None
    signal: str | None = None


def socket_target(
    http: httpx.Client | httpx.AsyncClient, sandbox_id: str, pid: int
) -> tuple[str, dict[str, str]]:
    """The socket's URL and the headers (the API key) of ``http``'s client."""
    base = str(http.base_url).rstrip("/").replace("http://", "ws://", 1)
    url = (
        base.replace("https://", "wss://", 1) + f"/api/v1/sandboxes/{sandbox_id}/commands/{pid}/ws"
    )
    return url, {k: v for k, v in http.headers.items() if k.lower() == "x-api-key"}


def message(kind: str, data: str | None = None, signal: str | None = None) -> str:
    body: dict[str, Any] = {"type": kind}
    if data is not None:
        body["data"] = data
    if signal is not None:
        body["signal"] = CommandSignal.model_validate({"signal": signal}).signal
    return json.dumps(body)


def event(text: str | bytes, close_code: int | None = None) -> CommandEvent:
    """One server message; TVM's error for an ``error`` one."""
    body = json.loads(text)
    if body.get("type") == "error":
        problem = str(body.get("message", body))
        if close_code == 4404 or "not found" in problem:
            raise NotFound(problem)
        if body.get("field"):
            raise InvalidRequest(str(body["field"]), problem)
        raise TVMError(problem)
    return CommandEvent(
        type=str(body["type"]), data=str(body.get("data", "")),
        exit_code=body.get("exit_code"), signal=body.get("signal"),
    )  # fmt: skip


class CommandSocket:
    def __init__(self, http: httpx.Client, sandbox_id: str, pid: int) -> None:
        url, headers = socket_target(http, sandbox_id, pid)
        opened = connect(url, additional_headers=headers, max_size=MAX_MESSAGE)
        self.ws: ClientConnection = opened.__enter__()  # this object is the context manager

    def __iter__(self) -> Iterator[CommandEvent]:
        try:
            for text in self.ws:
                found = event(text)
                yield found
                if found.type == "exit":
                    return
        except ConnectionClosed:
            return

    def send_stdin(self, data: str) -> None:
        self.ws.send(message("stdin", data))

    def close_stdin(self) -> None:
        self.ws.send(message("close_stdin"))

    def signal(self, name: str = "SIGTERM") -> None:
        self.ws.send(message("signal", signal=name))

    def close(self) -> None:
        """Leaves the process running."""
        self.ws.close()

    def __enter__(self) -> CommandSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncCommandSocket:
    def __init__(self, http: httpx.AsyncClient, sandbox_id: str, pid: int) -> None:
        self.target = socket_target(http, sandbox_id, pid)
        self.ws: AsyncConnection | None = None

    async def open(self) -> AsyncCommandSocket:
        url, headers = self.target
        self.ws = await async_connect(url, additional_headers=headers, max_size=MAX_MESSAGE)
        return self

    def _ws(self) -> AsyncConnection:
        if self.ws is None:
            raise RuntimeError("open() it first (or use `async with`)")
        return self.ws

    async def __aiter__(self) -> AsyncIterator[CommandEvent]:
        try:
            async for text in self._ws():
                found = event(text)
                yield found
                if found.type == "exit":
                    return
        except ConnectionClosed:
            return

    async def send_stdin(self, data: str) -> None:
        await self._ws().send(message("stdin", data))

    async def close_stdin(self) -> None:
        await self._ws().send(message("close_stdin"))

    async def signal(self, name: str = "SIGTERM") -> None:
        await self._ws().send(message("signal", signal=name))

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()

    async def __aenter__(self) -> AsyncCommandSocket:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
