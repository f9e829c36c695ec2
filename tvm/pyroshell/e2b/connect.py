"""Connect RPC over HTTP/1.1 with the JSON codec, as E2B's daemon speaks it.

Unary calls are a JSON body in, a JSON body out; an error is a non-200
status with ``{"code": "<connect code>", "message"}``. Server-streaming calls
(``application/connect+json``) carry enveloped messages both ways: one flag
byte, a 4-byte big-endian length, the JSON; the response stream ends with a
frame of flag ``0x02`` whose JSON is ``{}`` or ``{"error": {...}}``.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from tvm.errors import InvalidRequest, LiveOperationError, SandboxEnded, TVMError

STREAM_TYPE = "application/connect+json"
END_STREAM = 0x02
_HEADER = struct.Struct(">BI")

# TVM's error kinds as Connect codes, and the HTTP status of each for unary calls.
CODES = {"not_found": 404, "already_exists": 409, "invalid_argument": 400,
         "internal": 500, "unavailable": 503, "resource_exhausted": 429,
         "unauthenticated": 401, "unimplemented": 501}  # fmt: skip
_LIVE_CODES = {"not_found": "not_found", "already_exists": "already_exists",
               "conflict": "invalid_argument", "forbidden": "invalid_argument",
               "invalid": "invalid_argument",
               "internal": "internal"}  # fmt: skip


def envelope(message: dict[str, Any], flags: int = 0) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    return _HEADER.pack(flags, len(body)) + body


def end_of_stream(error: TVMError | None = None) -> bytes:
    if error is None:
        return envelope({}, END_STREAM)
    code, message = connect_code(error)
    return envelope({"error": {"code": code, "message": message}}, END_STREAM)


def connect_code(error: TVMError) -> tuple[str, str]:
    if isinstance(error, LiveOperationError):
        return _LIVE_CODES.get(error.code, "internal"), error.message
    if isinstance(error, SandboxEnded):  # E2B's daemon: its sandbox is not found
        return "not_found", error.message
    by_status = {404: "not_found", 400: "invalid_argument", 409: "already_exists",
                 429: "resource_exhausted", 401: "unauthenticated", 503: "unavailable"}  # fmt: skip
    return by_status.get(error.status_code, "internal"), error.message


def unary_error(error: TVMError) -> JSONResponse:
    code, message = connect_code(error)
    return JSONResponse({"code": code, "message": message}, status_code=CODES[code])


async def read_request(request: Request) -> dict[str, Any]:
    """The request message of a unary or server-streaming call."""
    body = await request.body()
    streaming = request.headers.get("content-type", "").startswith(STREAM_TYPE)
    if streaming:
        if len(body) < _HEADER.size:
            raise InvalidRequest("body", "a Connect stream request needs one enveloped message")
        _, length = _HEADER.unpack_from(body)
        body = body[_HEADER.size : _HEADER.size + length]
    try:
        message = json.loads(body or b"{}")
    except ValueError as exc:
        raise InvalidRequest("body", f"not JSON: {exc}") from exc
    if not isinstance(message, dict):
        raise InvalidRequest("body", "must be a JSON object")
    return message
