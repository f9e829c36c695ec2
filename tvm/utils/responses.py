"""The error responses a route can send, for its ``responses=`` (the OpenAPI schema).

``errors(Model, 400, 401, 429, 503)`` documents each status with the body model
the error handlers send for it; 429 and 503 carry ``Retry-After``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

_WHY = {
    400: "a field is wrong (the body names it), or no catalog entry matches",
    401: "a valid API key is required (only when keys are required: see docs/api.md)",
    403: "the key is not allowed to do this",
    404: "no such thing",
    409: "it conflicts with what exists (the body says what)",
    410: "it was lost with the worker process that held it",
    429: "over a rate limit or concurrency quota; retry after Retry-After seconds",
    500: "the operation failed on the server",
    503: "no worker can take it now, or the language's image is not built",
}
_RETRY_AFTER = {
    "Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}
}


def errors(model: type[BaseModel], *codes: int) -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry: dict[str, Any] = {"model": model, "description": _WHY[code]}
        if code in (429, 503):
            entry["headers"] = _RETRY_AFTER
        out[code] = entry
    return out
