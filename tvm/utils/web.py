"""HTTP plumbing shared by the worker and the gateway.

One place for how a :class:`~tvm.errors.TVMError` or a pydantic validation error
becomes a JSON response, for the request id (``X-Request-ID``, carried from the
gateway to the worker and into every log line) and for treating POST bodies as
JSON whatever their Content-Type says.
"""

from __future__ import annotations

import contextvars
import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tvm.errors import CapacityError, InvalidRequest, TVMError

REQUEST_ID_HEADER = "X-Request-ID"
# Routes with this tag state errors as Piston does: 400 {"message": ...}, no other key.
PISTON_TAG = "piston"

# The id of the request being served, for log records (see `_install_log_factory`).
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


def error_response(exc: TVMError) -> JSONResponse:
    headers = {}
    if isinstance(exc, CapacityError):
        headers["Retry-After"] = str(exc.retry_after)
    return JSONResponse(exc.to_dict(), status_code=exc.status_code, headers=headers)


def route_tags(request: Request) -> list[str]:
    route = request.scope.get("route")
    return list(getattr(route, "tags", None) or [])


def render_error(request: Request, exc: TVMError) -> JSONResponse:
    """The error response of ``exc`` in the shape of the route's API."""
    if isinstance(exc, InvalidRequest) and PISTON_TAG in route_tags(request):
        return JSONResponse({"message": f"{exc.field} {exc.problem}"}, status_code=400)
    return error_response(exc)


def validation_message(exc: RequestValidationError) -> tuple[str, str]:
    """First pydantic error as ('field.path', 'problem')."""
    err = exc.errors()[0]
    loc = [str(p) for p in err.get("loc", ()) if p != "body"]
    field = ""
    for part in loc:
        field += f"[{part}]" if part.isdigit() else (f".{part}" if field else part)
    if err.get("type") == "json_invalid":
        return "body", "is not valid JSON"
    if err.get("type") == "missing":
        return field or "body", "is required"
    # A model's own validator says its problem itself; pydantic prefixes "Value error, ".
    return field or "body", str(err.get("msg", "is invalid")).removeprefix("Value error, ")


class AssumeJSON:
    """ASGI middleware: treat POST bodies as JSON whatever their Content-Type says
    (``curl -d`` sends form encoding); there are no form endpoints."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT"):
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            headers.append((b"content-type", b"application/json"))
            scope["headers"] = headers  # in place: outer middleware reads scope["route"]
        await self.app(scope, receive, send)


def http_error(exc: StarletteHTTPException) -> TVMError:
    """Starlette's own HTTP errors (a body that is not UTF-8, an unknown path) as
    ours, so that every error body has the API's shape."""
    if exc.status_code == 400:
        return InvalidRequest("body", f"is not valid JSON text: {exc.detail}")
    error = TVMError(str(exc.detail))
    error.status_code = exc.status_code
    return error


def with_headers(response: JSONResponse, exc: StarletteHTTPException) -> JSONResponse:
    response.headers.update(exc.headers or {})
    return response


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TVMError)
    async def _tvm_error(request: Request, exc: TVMError) -> JSONResponse:
        return render_error(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        field, problem = validation_message(exc)
        return render_error(request, InvalidRequest(field, problem))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return with_headers(render_error(request, http_error(exc)), exc)


def new_request_id() -> str:
    return uuid.uuid4().hex[:16]


def _clean_request_id(value: str | None) -> str:
    """A client's id is kept when it is short and printable, else a new one is made."""
    if value and len(value) <= 64 and value.isascii() and value.isprintable():
        return value
    return new_request_id()


def install_request_id(app: FastAPI) -> None:
    """Take ``X-Request-ID`` from the request (or make one), expose it as
    ``request.state.request_id``, put it on every log line and echo it back."""
    _install_log_factory()
    app.add_middleware(RequestIdMiddleware)


class RequestIdMiddleware:
    """Pure ASGI (no per-request task group, unlike ``@app.middleware``)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"")
        rid = _clean_request_id(given.decode("latin-1") or None)
        scope.setdefault("state", {})["request_id"] = rid
        raw = (REQUEST_ID_HEADER.lower().encode(), rid.encode())

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), raw]
            await send(message)

        token = request_id_var.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


_factory_installed = False


def _install_log_factory() -> None:
    """Give every log record a ``request_id`` attribute (the JSON formatter prints it)."""
    global _factory_installed
    if _factory_installed:
        return
    _factory_installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if not getattr(record, "request_id", None):
            record.request_id = request_id_var.get()
        return record

    logging.setLogRecordFactory(factory)
