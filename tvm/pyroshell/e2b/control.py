"""E2B's control plane on TVM: create, get, list, set the timeout of, connect
to and kill live sandboxes (E2B's ``openapi.yml``, the routes its SDKs use).

The caller's ``X-API-KEY`` is a TVM API key when the gateway requires keys
(one key, one owner: a key lists and kills only its own sandboxes); errors are
E2B's body ``{"code": <HTTP status>, "message"}``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from tvm.errors import InvalidRequest, NotFound
from tvm.pyroshell.e2b.sandboxes import e2b_errors
from tvm.pyroshell.live_gate import live_gate
from tvm.pyroshell.live_ops import live_manager
from tvm.pyrovm.live import LiveManager, LiveRequest, LiveSandbox

# The daemon version TVM answers as: new enough that the SDKs use octet-stream
# uploads and no default-user auth, old enough that they ask for nothing newer.
ENVD_VERSION = "0.5.7"
CLIENT_ID = "tvm"
PAGE_LIMIT = 100


def _time(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def created(live: LiveSandbox) -> dict[str, Any]:
    return {
        "templateID": live.template,
        "sandboxID": live.id,
        "clientID": CLIENT_ID,
        "envdVersion": ENVD_VERSION,
        "envdAccessToken": live.token,
        "alias": live.template,
        "domain": None,
    }


def listed(live: LiveSandbox) -> dict[str, Any]:
    return {
        "templateID": live.template,
        "alias": live.template,
        "sandboxID": live.id,
        "clientID": CLIENT_ID,
        "startedAt": _time(live.started_at),
        "endAt": _time(live.end_datetime),
        "cpuCount": live.cpus,
        "memoryMB": live.memory_mb,
        "diskSizeMB": live.disk_mb,
        "state": "running",
        "envdVersion": ENVD_VERSION,
        "metadata": live.metadata,
    }


def detail(live: LiveSandbox) -> dict[str, Any]:
    return {**listed(live), "envdAccessToken": live.token, "allowInternetAccess": False}


async def _owner(request: Request) -> str:
    return await live_gate(request).owner(request)


async def _mine(request: Request, sandbox_id: str) -> tuple[LiveManager, LiveSandbox]:
    live = live_manager(request)
    owner = await _owner(request)
    sandbox = live.get(sandbox_id)
    if owner and sandbox.owner != owner:
        raise NotFound(f"sandbox {sandbox_id} was not found")
    return live, sandbox


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json() if await request.body() else {}
    except ValueError as exc:
        raise InvalidRequest("body", f"not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("body", "must be a JSON object")
    return body


def _strings(body: dict[str, Any], field: str) -> dict[str, str]:
    value = body.get(field) or {}
    if not isinstance(value, dict):
        raise InvalidRequest(field, "must be an object of strings")
    return {str(k): str(v) for k, v in value.items()}


def _seconds(body: dict[str, Any], field: str) -> int | None:
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(field, "must be a number of seconds")
    return int(value)


def router() -> APIRouter:
    routes = APIRouter(tags=["e2b"])

    async def create(request: Request) -> Response:
        live = live_manager(request)
        owner = await _owner(request)
        await live_gate(request).admit(request)
        body = await _body(request)
        sandbox = await live.create(
            LiveRequest(
                template=str(body.get("templateID") or "base"),
                timeout=_seconds(body, "timeout"),
                env=_strings(body, "envVars"),
                metadata=_strings(body, "metadata"),
                internet=body.get("allow_internet_access"),
                owner=owner,
            )
        )
        return JSONResponse(created(sandbox), status_code=201)

    routes.post("/sandboxes", include_in_schema=False)(e2b_errors(create))
    routes.post("/v2/sandboxes", include_in_schema=False)(e2b_errors(create))

    async def list_sandboxes(request: Request) -> Response:
        live = live_manager(request)
        owner = await _owner(request)
        query = request.query_params
        states = {s for v in query.getlist("state") for s in v.split(",") if s}
        wanted = dict(parse_qsl(unquote(query.get("metadata", ""))))
        try:
            limit = max(1, min(int(query.get("limit", PAGE_LIMIT)), PAGE_LIMIT))
        except ValueError as exc:
            raise InvalidRequest("limit", f"must be an integer 1-{PAGE_LIMIT}") from exc
        found = [
            sb for sb in sorted(live.sandboxes.values(), key=lambda s: s.id)
            if (not owner or sb.owner == owner)
            and (not states or "running" in states)
            and all(sb.metadata.get(k) == v for k, v in wanted.items())
        ]  # fmt: skip
        after = query.get("nextToken") or ""
        if after:
            found = [sb for sb in found if sb.id > after]
        page = found[:limit]
        headers = {"x-next-token": page[-1].id} if len(found) > limit else {}
        return JSONResponse([listed(sb) for sb in page], headers=headers)

    routes.get("/sandboxes", include_in_schema=False)(e2b_errors(list_sandboxes))
    routes.get("/v2/sandboxes", include_in_schema=False)(e2b_errors(list_sandboxes))

    @routes.get("/sandboxes/{sandbox_id}", include_in_schema=False)
    @e2b_errors
    async def get_sandbox(sandbox_id: str, request: Request) -> Response:
        _, sandbox = await _mine(request, sandbox_id)
        return JSONResponse(detail(sandbox))

    @routes.delete("/sandboxes/{sandbox_id}", include_in_schema=False)
    @e2b_errors
    async def kill_sandbox(sandbox_id: str, request: Request) -> Response:
        live, sandbox = await _mine(request, sandbox_id)
        await live.kill(sandbox.id)
        return Response(status_code=204)

    @routes.post("/sandboxes/{sandbox_id}/timeout", include_in_schema=False)
    @e2b_errors
    async def set_timeout(sandbox_id: str, request: Request) -> Response:
        live, sandbox = await _mine(request, sandbox_id)
        seconds = _seconds(await _body(request), "timeout")
        if seconds is None:
            raise InvalidRequest("timeout", "is required (seconds)")
        live.set_timeout(sandbox.id, seconds)
        return Response(status_code=204)

    @routes.post("/sandboxes/{sandbox_id}/refreshes", include_in_schema=False)
    @e2b_errors
    async def refresh(sandbox_id: str, request: Request) -> Response:
        live, sandbox = await _mine(request, sandbox_id)
        seconds = _seconds(await _body(request), "duration")
        live.set_timeout(sandbox.id, seconds or live.settings.live_timeout_seconds)
        return Response(status_code=204)

    async def connect(sandbox_id: str, request: Request) -> Response:
        live, sandbox = await _mine(request, sandbox_id)
        seconds = _seconds(await _body(request), "timeout")
        if seconds is not None:
            live.set_timeout(sandbox.id, seconds)
        return JSONResponse(created(sandbox), status_code=200)

    routes.post("/sandboxes/{sandbox_id}/connect", include_in_schema=False)(e2b_errors(connect))
    routes.post("/v2/sandboxes/{sandbox_id}/connect", include_in_schema=False)(e2b_errors(connect))

    # Metrics and logs: none are kept (the SDKs get empty lists, not an error).
    @routes.get("/sandboxes/{sandbox_id}/metrics", include_in_schema=False)
    @e2b_errors
    async def metrics(sandbox_id: str, request: Request) -> Response:
        await _mine(request, sandbox_id)
        return JSONResponse([])

    async def logs(sandbox_id: str, request: Request) -> Response:
        await _mine(request, sandbox_id)
        return JSONResponse({"logs": [], "logEntries": []})

    routes.get("/sandboxes/{sandbox_id}/logs", include_in_schema=False)(e2b_errors(logs))
    routes.get("/v2/sandboxes/{sandbox_id}/logs", include_in_schema=False)(e2b_errors(logs))

    @routes.post("/sandboxes/{sandbox_id}/pause", include_in_schema=False)
    @e2b_errors
    async def pause(sandbox_id: str, request: Request) -> Response:
        await _mine(request, sandbox_id)
        raise InvalidRequest("pause", "TVM sandboxes cannot be paused; set a timeout instead")

    return routes
