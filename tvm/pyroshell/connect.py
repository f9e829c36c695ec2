"""The gateway's WebSocket routes: ``/api/v1/connect`` (native) and
``/api/v2/connect`` (Piston), interactive runs.

Both authenticate as the HTTP routes do (``X-API-Key`` / ``X-Auth-Token``, or
``?api_key=`` since a browser cannot set a WebSocket's headers), count against
the same rate limit and concurrency quota, validate with the same
:func:`~tvm.api.build_job`, and run on the embedded engine or, without one, on a
worker's own ``/api/v1/connect`` (:mod:`.connect_remote`). The protocols:
:mod:`tvm.pyrovm.connect` and :mod:`tvm.compat.piston_connect`.
"""

from __future__ import annotations

import contextlib
import json

from fastapi import APIRouter, WebSocket

from tvm.api import CodeExecutionRequest, build_job
from tvm.compat import piston, piston_connect
from tvm.errors import CapacityError, InvalidRequest, TVMError
from tvm.pyroshell.auth import Principal
from tvm.pyroshell.connect_remote import RemoteSession
from tvm.pyrovm.connect import Session, close, close_code, error_message, serve_native
from tvm.pyrovm.interactive import Terminal
from tvm.utils.web import REQUEST_ID_HEADER

KEY_QUERY = "api_key"


async def _principal(ws: WebSocket) -> Principal:
    gw = ws.app.state.gateway
    who: Principal = await gw.gate.principal(ws, ws.query_params.get(KEY_QUERY))
    return who


async def _open(
    ws: WebSocket, who: Principal, request: CodeExecutionRequest, terminal: Terminal | None
) -> Session:
    gw = ws.app.state.gateway
    job = build_job(request, gw.settings, gw.catalog)
    await gw.gate.admit(who)
    local = gw.pool.embedded
    if local is not None and local.engine is not None:
        session: Session = local.engine.interactive(job, terminal)
        return session
    workers = gw.pool.healthy()
    if not workers:
        raise CapacityError("no healthy worker; retry later", retry_after=2, status_code=503)
    request_id = ws.headers.get(REQUEST_ID_HEADER) or ""
    return RemoteSession(workers[0].url, request, terminal, request_id)


def connect_router() -> APIRouter:
    router = APIRouter()

    @router.websocket("/api/v1/connect")
    async def native_connect(ws: WebSocket) -> None:
        await ws.accept()
        try:
            who = await _principal(ws)
        except TVMError as exc:
            with contextlib.suppress(Exception):
                await ws.send_text(json.dumps(error_message(exc)))
            await close(ws, close_code(exc), exc.message)
            return

        async def open_session(request: CodeExecutionRequest, terminal: Terminal | None) -> Session:
            return await _open(ws, who, request, terminal)

        async with ws.app.state.gateway.gate.limiter.running(who):
            await serve_native(ws, open_session)

    @router.websocket("/api/v2/connect")
    async def piston_connect_route(ws: WebSocket) -> None:
        await ws.accept()
        try:
            who = await _principal(ws)
        except TVMError as exc:
            with contextlib.suppress(Exception):
                await ws.send_text(json.dumps({"type": "error", "message": exc.message}))
            await close(ws, piston_connect.NOTIFIED_ERROR, "Notified Error")
            return

        async def open_session(request: CodeExecutionRequest) -> Session:
            try:
                return await _open(ws, who, request, None)
            except InvalidRequest as exc:
                raise piston.rename_field(exc) from exc

        async with ws.app.state.gateway.gate.limiter.running(who):
            await piston_connect.serve(ws, open_session)

    return router
