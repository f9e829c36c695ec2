"""What both APIs over live sandboxes (native and E2B) do the same way:
find the manager, move files in pieces, find a sandbox's default code context."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import HTTPConnection

from tvm.errors import CapacityError, LiveOperationError
from tvm.pyrovm.live import LiveManager, LiveSandbox

# Pieces in which files travel between the gateway and the agent.
PIECE = 4 << 20


def live_manager(request: HTTPConnection) -> LiveManager:
    """The live sandboxes of this process: a worker's own, or the gateway's
    embedded worker's (with worker processes the gateway forwards the calls,
    :mod:`tvm.pyroshell.live_proxy`)."""
    app = getattr(request.app.state, "tvm_gateway_app", request.app)
    own: LiveManager | None = getattr(app.state, "live_manager", None)
    if own is not None:
        return own
    local = app.state.gateway.pool.embedded
    live: LiveManager | None = getattr(local, "live", None) if local is not None else None
    if live is None:
        raise CapacityError(
            "no worker for live sandboxes is running; retry later",
            retry_after=60,
            status_code=503,
        )
    return live


async def download(live: LiveSandbox, path: str) -> tuple[int, AsyncIterator[bytes]]:
    """The file's size and its content, read in pieces (a missing file fails here)."""
    first = await live.session.request("file_read", path=path, offset=0, length=PIECE)
    size = int(first["size"])

    async def pieces() -> AsyncIterator[bytes]:
        data = base64.b64decode(first["data"])
        offset = len(data)
        yield data
        while offset < size and data:
            reply = await live.session.request("file_read", path=path, offset=offset, length=PIECE)
            data = base64.b64decode(reply["data"])
            offset += len(data)
            yield data

    return size, pieces()


async def upload(live: LiveSandbox, path: str, stream: AsyncIterator[bytes]) -> dict[str, Any]:
    """Write what ``stream`` yields to ``path``, in pieces; the agent's entry of it."""
    pending = b""
    written = False
    entry: dict[str, Any] = {}
    async for chunk in stream:
        pending += chunk
        while len(pending) >= PIECE:
            piece, pending = pending[:PIECE], pending[PIECE:]
            entry = await _write(live, path, piece, append=written)
            written = True
    if pending or not written:
        entry = await _write(live, path, pending, append=written)
    return entry


async def one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _write(live: LiveSandbox, path: str, data: bytes, append: bool) -> dict[str, Any]:
    reply = await live.session.request(
        "file_write", path=path, data=base64.b64encode(data).decode(), append=append
    )
    entry: dict[str, Any] = reply["entry"]
    return entry


async def default_context(live: LiveSandbox, language: str = "python") -> str:
    """The context a cell without one runs in (made on first use)."""
    ident = f"default-{language}"
    try:
        await live.session.request("ctx_create", ctx=ident, language=language)
    except LiveOperationError as exc:
        if exc.code != "already_exists":
            raise
    return ident
