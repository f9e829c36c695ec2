"""Which live sandbox a call is for, and whether the caller may use it.

E2B's SDKs send every in-sandbox call to one origin and name the sandbox in
``E2b-Sandbox-Id`` (the port in ``E2b-Sandbox-Port``: 49983 for the daemon,
49999 for the code interpreter); ``X-Access-Token`` must be the token the
sandbox was created with. A sandbox that is gone answers 502 with "was not
found", which is what makes the SDK say the sandbox is not running.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from tvm.errors import (
    LiveOperationError,
    NotFound,
    SandboxEnded,
    SandboxLost,
    TVMError,
    Unauthorized,
)
from tvm.pyroshell.live_ops import live_manager
from tvm.pyrovm.live import LiveSandbox

SANDBOX_HEADER = "e2b-sandbox-id"
PORT_HEADER = "e2b-sandbox-port"
TOKEN_HEADER = "x-access-token"
ENVD_PORT = 49983
INTERPRETER_PORT = 49999


class SandboxGone(TVMError):
    """The sandbox a call names does not exist (any more)."""

    status_code = 502


def sandbox_for(request: Request, token_required: bool = True) -> LiveSandbox:
    sandbox_id = request.headers.get(SANDBOX_HEADER, "")
    try:
        live = live_manager(request).get(sandbox_id)
    except SandboxLost as exc:
        raise SandboxGone(f"The sandbox {sandbox_id} was not found: {exc.message}") from exc
    except NotFound as exc:
        raise SandboxGone(f"The sandbox {sandbox_id} was not found") from exc
    if token_required:
        given = request.headers.get(TOKEN_HEADER, "")
        if not hmac.compare_digest(given.encode(), live.token.encode()):
            raise Unauthorized(f"X-Access-Token: not the access token of sandbox {live.id}")
    return live


def e2b_status(error: TVMError) -> int:
    """The HTTP status E2B's daemon gives: a request the sandbox's state or its
    user's rights refuse (a directory read as a file) is its 400, where TVM's
    native API says 409 or 403."""
    if isinstance(error, LiveOperationError) and error.code in ("conflict", "forbidden"):
        return 400
    return error.status_code


def error_body(error: TVMError) -> JSONResponse:
    """E2B's error body: ``{"code": <HTTP status>, "message"}``."""
    headers = {}
    retry = getattr(error, "retry_after", None)
    if retry is not None:
        headers["Retry-After"] = str(retry)
    status = e2b_status(error)
    return JSONResponse({"code": status, "message": error.message}, status_code=status,
                        headers=headers)  # fmt: skip


Route = Callable[..., Awaitable[Response]]


def e2b_errors(route: Route) -> Route:
    """Answer TVM's errors in E2B's error body (a lost or ended sandbox as the SDKs'
    404 on the control plane; :class:`SandboxGone` stays the daemon's 502)."""

    @functools.wraps(route)
    async def wrapper(*args: Any, **kwargs: Any) -> Response:
        try:
            return await route(*args, **kwargs)
        except (SandboxLost, SandboxEnded) as exc:  # the SDKs read a 404 as "not found"
            return error_body(NotFound(exc.message))  # (kill -> False), as E2B answers
        except TVMError as exc:
            return error_body(exc)

    return wrapper


def health_route(ok: Callable[[], Response]) -> Route:
    """``GET /health`` of the daemon or the interpreter: ``ok()`` while the
    sandbox the call names exists (no access token needed)."""

    @e2b_errors
    async def health(request: Request) -> Response:
        sandbox_for(request, token_required=False)
        return ok()

    return health
