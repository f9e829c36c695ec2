"""``OPTIONS`` and ``405`` that list every method of a path (RFC 9110 ``Allow``).

Starlette answers a method a path lacks from the first route of that path, so
``GET`` and ``POST /submissions``, two routes, gave ``Allow: GET``. This ASGI
middleware knows each path's methods from the app's OpenAPI schema (the one
list of what is served) and answers, for a path it knows:

* ``OPTIONS``: ``204`` with ``Allow``;
* a method the path does not have: ``405`` ``{"message"}`` with ``Allow``.

Everything else goes on to the app.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

_METHODS = ("get", "put", "post", "delete", "patch")


def _template(path: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", path)
    return re.compile(
        "^" + "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts) + "$"
    )


class AllowedMethods:
    def __init__(self, app: ASGIApp, schema: Callable[[], dict[str, Any]]) -> None:
        self.app = app
        self.schema = schema
        self._paths: list[tuple[re.Pattern[str], tuple[str, ...]]] | None = None

    def _allowed(self, path: str) -> tuple[str, ...] | None:
        if self._paths is None:
            paths = self.schema().get("paths", {})
            self._paths = [
                (_template(p), tuple(m.upper() for m in _METHODS if m in ops))
                for p, ops in paths.items()
            ]
            # a literal path wins over a template (/submissions/batch vs /submissions/{token})
            self._paths.sort(key=lambda entry: "[^/]+" in entry[0].pattern)
        for pattern, methods in self._paths:
            if pattern.match(path):
                return methods
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        methods = self._allowed(scope["path"])
        method = scope["method"]
        if methods is None or method in methods or (method == "HEAD" and "GET" in methods):
            await self.app(scope, receive, send)
            return
        allow = ", ".join(
            (*methods, "HEAD", "OPTIONS") if "GET" in methods else (*methods, "OPTIONS")
        )
        if method == "OPTIONS":
            status, body = 204, b""
        else:
            status = 405
            message = f"method {method} is not allowed on {scope['path']}; allowed: {allow}"
            body = json.dumps({"message": message}).encode()
        headers = [(b"allow", allow.encode())]
        if body:
            headers += [(b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode())]  # fmt: skip
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
