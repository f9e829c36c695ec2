"""E2B's code interpreter on a live sandbox: ``/execute`` (NDJSON) and ``/contexts``.

Each context is a Python interpreter, or a Node.js one for ``javascript``
(``js``), in the sandbox that keeps its state
(:mod:`tvm.pyrovm.agent.live_code`). ``/execute`` streams one JSON object a
line: ``stdout``/``stderr`` (with a nanosecond ``timestamp``) as the cell
prints, then its ``result`` (``is_main_result``) or ``error``, the
``number_of_executions``, and ``end_of_execution``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from tvm.errors import InvalidRequest, LiveOperationError, TVMError
from tvm.pyroshell.e2b.sandboxes import e2b_errors, error_body, health_route, sandbox_for
from tvm.pyroshell.live_ops import default_context
from tvm.pyrovm.live import LiveSandbox
from tvm.pyrovm.live_session import Output

# What the SDK may send, and the context language it means.
LANGUAGES = {"python": "python", "javascript": "javascript", "js": "javascript"}


def _language(value: object) -> str:
    language = str(value or "python").lower()
    if language not in LANGUAGES:
        raise InvalidRequest(
            "language", f"{language!r} is not supported; supported: python, javascript (js)"
        )
    return LANGUAGES[language]


def _context(reply: dict[str, Any]) -> dict[str, Any]:
    return {"id": reply["ctx"], "language": reply["language"], "cwd": reply["cwd"]}


def _line(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode() + b"\n"


async def execute_lines(live: LiveSandbox, body: dict[str, Any]) -> AsyncIterator[bytes]:
    code = body.get("code")
    if not isinstance(code, str):
        raise InvalidRequest("code", "must be a string")
    ident = body.get("context_id") or await default_context(live, _language(body.get("language")))
    env = {str(k): str(v) for k, v in (body.get("env_vars") or {}).items()}
    cells = live.session.run_cell({"ctx": ident, "code": code, "env": env})
    reply: dict[str, Any] = {}
    try:
        async for item in cells:
            if isinstance(item, Output):
                text = item.data.decode(errors="replace")
                yield _line({"type": item.stream, "text": text, "timestamp": time.time_ns()})
            else:
                reply = item
    except LiveOperationError as exc:
        error = {"name": "ContextError", "value": exc.message, "traceback": exc.message}
        yield _line({"type": "error", **error})
        return
    if reply.get("error"):
        yield _line({"type": "error", **reply["error"]})
    elif reply.get("result") is not None:
        yield _line({"type": "result", "text": reply["result"], "is_main_result": True})
    yield _line({"type": "number_of_executions", "execution_count": reply.get("count", 0)})
    yield _line({"type": "end_of_execution"})


def router() -> APIRouter:
    """The interpreter's routes (where ``E2b-Sandbox-Port`` is the interpreter's)."""
    routes = APIRouter()

    routes.get("/health")(health_route(lambda: JSONResponse({"status": "ok"})))

    @routes.post("/execute")
    async def execute(request: Request) -> Response:
        try:
            live = sandbox_for(request)
            body = await request.json()
            lines = execute_lines(live, body)
            first = await anext(lines)  # bad input fails here, as a 400
        except TVMError as exc:
            return error_body(exc)
        except (ValueError, StopAsyncIteration) as exc:
            return error_body(InvalidRequest("body", f"not a JSON object: {exc}"))

        async def stream() -> AsyncIterator[bytes]:
            yield first
            async for line in lines:
                yield line

        return StreamingResponse(stream(), media_type="application/x-ndjson")

    # The SDK's /contexts calls carry no access token: the sandbox id chooses.
    @routes.post("/contexts")
    @e2b_errors
    async def create_context(request: Request) -> Response:
        live = sandbox_for(request, token_required=False)
        body = await request.json()
        reply = await live.session.request(
            "ctx_create", language=_language(body.get("language")), cwd=body.get("cwd")
        )
        return JSONResponse(_context(reply))

    @routes.get("/contexts")
    @e2b_errors
    async def list_contexts(request: Request) -> Response:
        live = sandbox_for(request, token_required=False)
        reply = await live.session.request("ctx_list")
        return JSONResponse([_context(ctx) for ctx in reply["contexts"]])

    @routes.delete("/contexts/{context_id}")
    @e2b_errors
    async def delete_context(context_id: str, request: Request) -> Response:
        live = sandbox_for(request, token_required=False)
        await live.session.request("ctx_delete", ctx=context_id)
        return Response(status_code=204)

    @routes.post("/contexts/{context_id}/restart")
    @e2b_errors
    async def restart_context(context_id: str, request: Request) -> Response:
        live = sandbox_for(request, token_required=False)
        await live.session.request("ctx_restart", ctx=context_id)
        return Response(status_code=204)

    return routes
