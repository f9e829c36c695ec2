"""Refuse request bodies whose text cannot be encoded, on every route at once.

JSON may spell a lone UTF-16 surrogate (``"\\ud800"``); Python decodes it into a
``str`` that no UTF-8 encoder accepts, so it would fail later (writing a file,
rendering an error that quotes it) as a 500. :func:`reject_unencodable`, a
dependency of every route of an app, refuses such a body before the route runs
with an :class:`~tvm.errors.InvalidRequest` naming the field
(``files[0].content``), which each API renders in its own error shape (400, or
Judge0's 422).

The check costs one regular-expression scan of the raw body; only a body that
spells a surrogate escape is decoded to find the field.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import Request
from starlette.requests import HTTPConnection

from tvm.errors import InvalidRequest

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}")
PROBLEM = "must be valid Unicode text: it holds a lone UTF-16 surrogate (\\ud800-\\udfff)"


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown(key: str) -> str:
    return key.encode("utf-8", "backslashreplace").decode("utf-8")


def unencodable_field(value: Any, path: str = "") -> str | None:
    """Path (``a.b[0].c``) of the first string, or key, that UTF-8 cannot encode."""
    if isinstance(value, str):
        return None if _encodable(value) else (path or "body")
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = unencodable_field(item, f"{path}[{i}]")
            if found:
                return found
    elif isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{_shown(key)}" if path else _shown(key)
            if not _encodable(key):
                return here
            found = unencodable_field(item, here)
            if found:
                return found
    return None


def check_body(body: bytes) -> None:
    """Raise InvalidRequest when the JSON ``body`` holds text UTF-8 cannot encode."""
    if not _SURROGATE_ESCAPE.search(body):
        return
    try:
        decoded = json.loads(body)
    except ValueError:
        return  # not JSON: the route's own parsing says so
    field = unencodable_field(decoded)
    if field:
        raise InvalidRequest(field, PROBLEM)


# Routes that check each text attribute themselves (Judge0: one bad item of a batch
# is that item's error, in a 201).
OWN_CHECKS_TAG = "judge0"


async def reject_unencodable(connection: HTTPConnection) -> None:
    """App-wide dependency: ``FastAPI(dependencies=[Depends(reject_unencodable)])``.
    The body it reads is the one the route parses (Starlette keeps it). A
    WebSocket's messages are its route's to check."""
    if not isinstance(connection, Request):
        return
    request = connection
    route = request.scope.get("route")
    if OWN_CHECKS_TAG in (getattr(route, "tags", None) or []):
        return
    if request.method in ("POST", "PUT", "PATCH"):
        check_body(await request.body())
