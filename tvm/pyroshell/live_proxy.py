"""Live sandboxes behind worker processes: the gateway forwards every call to
the worker that holds the sandbox.

With ``tvm start --workers N`` (or ``TVM_WORKERS``) the sandboxes live in the
worker processes, which serve the same live routes as the gateway (the
native ``/api/v1/sandboxes``, E2B's control plane, and E2B's in-sandbox
daemon and code interpreter, chosen by ``E2b-Sandbox-Id``). This ASGI
middleware, in front of those routes on the gateway:

* **creates** on the healthy worker holding the fewest live sandboxes, and
  on the next one when a worker answers 429 (its cap or memory budget);
* **lists** by asking every healthy worker and merging (E2B's paging too);
* sends **everything else** to the worker named inside the sandbox id (its
  boot tag, :func:`tvm.pyrovm.live.boot_of`): no routing table, so nothing
  to lose or share between gateway replicas. The request and the answer
  are streamed both ways (uploads, downloads, NDJSON and Connect streams).

It checks the caller's API key (native and control-plane routes) and names
the owner to the worker in ``X-TVM-Live-Owner``; E2B's per-sandbox access
token is checked by the worker. A sandbox whose worker process is gone (its
boot tag retired by a restart, or its worker not answering) is reported
lost: 410 on the native API, E2B's 404 body on the control plane, and the
daemon's 502 "was not found" (the SDK's "sandbox is not running") on
in-sandbox routes. Each forwarded call lives as long as the worker's route,
whose streams end with their process, their sandbox, or the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import websockets
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tvm.errors import CapacityError, InvalidRequest, NotFound, SandboxLost, TVMError
from tvm.pyroshell.e2b.sandboxes import SANDBOX_HEADER, SandboxGone, error_body
from tvm.pyroshell.live_gate import OWNER_HEADER, live_gate
from tvm.pyroshell.workers import Worker, WorkerPool
from tvm.pyrovm.connect import close_code, error_message
from tvm.pyrovm.live import boot_of, lost
from tvm.utils.web import error_response

Family = Literal["native", "e2b", "envd"]
ROOTS: tuple[tuple[str, Family], ...] = (
    ("/api/v1/sandboxes", "native"),
    ("/v2/sandboxes", "e2b"),
    ("/sandboxes", "e2b"),
)
# Not forwarded: they describe one connection, not the request.
HOP = {"host", "connection", "keep-alive", "transfer-encoding", "te", "upgrade",
       "proxy-connection", "proxy-authorization", OWNER_HEADER}  # fmt: skip
CREATE_BODY_MAX = 1 << 20
E2B_PAGE = 100


@dataclass(frozen=True)
class Target:
    family: Family
    sandbox_id: str | None  # None: the collection (create, list)


def classify(scope: Scope) -> Target | None:
    """Which live call a request is, if any."""
    for name, value in scope.get("headers") or ():
        if name == SANDBOX_HEADER.encode():
            return Target("envd", value.decode("latin-1"))
    path: str = scope.get("path", "")
    for root, family in ROOTS:
        if path in (root, root + "/"):
            return Target(family, None)
        if path.startswith(root + "/"):
            return Target(family, path[len(root) + 1 :].split("/", 1)[0])
    return None


def render(family: Family, error: TVMError) -> Response:
    if family == "native":
        return error_response(error)
    if family == "envd" and isinstance(error, NotFound):
        return error_body(SandboxGone(f"The sandbox was not found: {error.message}"))
    if family == "e2b" and isinstance(error, SandboxLost):
        return error_body(NotFound(error.message))
    return error_body(error)


class LiveProxy:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = classify(scope) if scope["type"] in ("http", "websocket") else None
        state = scope["app"].state if target is not None else None
        pool: WorkerPool | None = getattr(getattr(state, "gateway", None), "pool", None)
        remote = [w for w in pool.workers.values() if w.client.live_url] if pool else []
        if target is None or pool is None or not remote:
            await self.app(scope, receive, send)  # this process serves them (or no live call)
            return
        if scope["type"] == "websocket":
            await self._socket(target, pool, scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            owner = "" if target.family == "envd" else await live_gate(request).owner(request)
            if target.sandbox_id is None:
                await self._collection(target, pool, remote, owner, scope, receive, send)
                return
            worker = self._holder(pool, target.sandbox_id)
            if worker is None:  # another kind of worker holds it: this process
                await self.app(scope, receive, send)
                return
            url = worker.client.live_url or ""
            sent = await forward(pool.live_link.client(), url, scope, receive, send, owner)
            if not sent:
                why = f"its worker {url} does not answer (it died or is restarting)"
                raise lost(target.sandbox_id, why)
        except TVMError as exc:
            await render(target.family, exc)(scope, receive, send)

    async def _socket(
        self, target: Target, pool: WorkerPool, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """A native WebSocket route of a sandbox (:mod:`tvm.pyroshell.live_ws`), relayed."""
        connection = HTTPConnection(scope)
        try:
            owner = await live_gate(connection).owner(connection)
            worker = self._holder(pool, target.sandbox_id or "")
            if worker is None:
                await self.app(scope, receive, send)
                return
            url = worker.client.live_url or ""
            if not await relay_socket(url, scope, receive, send, owner):
                raise lost(target.sandbox_id or "", f"its worker {url} does not answer")
        except TVMError as exc:
            await refuse_socket(receive, send, exc)

    @staticmethod
    def _holder(pool: WorkerPool, sandbox_id: str) -> Worker | None:
        boot = boot_of(sandbox_id)
        worker = pool.by_boot(boot) if boot else None
        if worker is not None and worker.client.live_url is None:
            return None
        if worker is not None:
            return worker
        if boot in pool.retired:
            raise lost(sandbox_id)
        if pool.embedded is not None:
            return None
        raise NotFound(
            f"sandbox {sandbox_id} was not found: no running worker holds it "
            "(it ended, never existed, or its worker stopped)"
        )

    async def _collection(
        self,
        target: Target,
        pool: WorkerPool,
        remote: list[Worker],
        owner: str,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        request = Request(scope, receive)
        ready = sorted((w for w in remote if w.healthy), key=lambda w: (w.live, w.load, w.url))
        if scope["method"] == "POST":
            await live_gate(request).admit(request)
            body = await request.body()
            if len(body) > CREATE_BODY_MAX:
                raise InvalidRequest("body", f"must be at most {CREATE_BODY_MAX} bytes")
            reply = await create(pool.live_link.client(), ready, scope, body, owner)
        elif scope["method"] == "GET":
            reply = await list_all(pool.live_link.client(), ready, target.family, scope, owner)
        else:
            await self.app(scope, receive, send)  # 405, as the route itself answers
            return
        await reply(scope, receive, send)


def _headers(scope: Scope, owner: str) -> list[tuple[bytes, bytes]]:
    kept = [(k, v) for k, v in scope.get("headers") or () if k.decode("latin-1").lower() not in HOP]
    return [*kept, (OWNER_HEADER.encode(), owner.encode())]


def _url(base: str, scope: Scope) -> str:
    query = scope.get("query_string", b"").decode("latin-1")
    return base + scope["path"] + (f"?{query}" if query else "")


TIMEOUT = httpx.Timeout(connect=5.0, read=None, write=60.0, pool=10.0)
# The worker went before it answered (a kept-alive connection to a killed
# worker fails on reading, not connecting): for a live call, the sandbox is lost.
NOT_REACHED = (httpx.TransportError,)


async def forward(
    client: httpx.AsyncClient, base: str, scope: Scope, receive: Receive, send: Send, owner: str
) -> bool:
    """Send the request to ``base`` and stream its answer back; False if the
    worker could not be reached (nothing was sent to the client then)."""
    done = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            yield message.get("body", b"")
            if not message.get("more_body", False):
                done.set()
                return

    request = client.build_request(
        scope["method"], _url(base, scope), headers=_headers(scope, owner),
        content=body(), timeout=TIMEOUT,
    )  # fmt: skip
    try:
        upstream = await client.send(request, stream=True)
    except NOT_REACHED:
        return False
    try:
        await _relay(upstream, receive, send, watch=done.is_set())
    finally:
        await upstream.aclose()
    return True


async def _relay(upstream: httpx.Response, receive: Receive, send: Send, watch: bool) -> None:
    """Stream ``upstream`` to the client until it ends or the client goes."""
    headers = [(k, v) for k, v in upstream.headers.raw if k.decode().lower() not in HOP]

    async def pump() -> None:
        await send({"type": "http.response.start", "status": upstream.status_code,
                    "headers": headers})  # fmt: skip
        with contextlib.suppress(httpx.HTTPError):  # the worker went mid-answer: end it
            async for chunk in upstream.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def gone() -> None:
        while watch:
            message: Message = await receive()
            if message["type"] == "http.disconnect":
                return
        await asyncio.Event().wait()

    tasks = [asyncio.create_task(pump()), asyncio.create_task(gone())]
    try:
        finished, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in finished:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def create(
    client: httpx.AsyncClient, ready: list[Worker], scope: Scope, body: bytes, owner: str
) -> Response:
    """On the least-loaded worker that takes it; the last refusal if none does."""
    refusal: Response | None = None
    for worker in ready:
        try:
            reply = await client.request(
                "POST", _url(worker.client.live_url or "", scope), content=body,
                headers=_headers(scope, owner), timeout=TIMEOUT,
            )  # fmt: skip
        except NOT_REACHED:
            continue
        answer = Response(reply.content, reply.status_code, _kept(reply))
        if reply.status_code != 429:
            worker.live += 1 if reply.status_code < 300 else 0
            return answer
        refusal = answer
    if refusal is not None:
        return refusal
    raise CapacityError("no worker for live sandboxes is running; retry later", 5, 503)


def _kept(reply: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in reply.headers.items()
            if k.lower() not in HOP and k.lower() != "content-length"}  # fmt: skip


async def list_all(
    client: httpx.AsyncClient, ready: list[Worker], family: Family, scope: Scope, owner: str
) -> Response:
    """Every healthy worker's list, merged (E2B's: one page of the merged order)."""

    async def one(worker: Worker) -> httpx.Response | None:
        with contextlib.suppress(*NOT_REACHED):
            return await client.get(
                _url(worker.client.live_url or "", scope), headers=_headers(scope, owner),
                timeout=TIMEOUT,
            )  # fmt: skip
        return None

    replies = [r for r in await asyncio.gather(*(one(w) for w in ready)) if r is not None]
    failed = next((r for r in replies if r.status_code != 200), None)
    if failed is not None:
        return Response(failed.content, failed.status_code, _kept(failed))
    found: list[dict[str, Any]] = [item for r in replies for item in r.json()]
    if family == "native":
        return JSONResponse(sorted(found, key=lambda s: str(s["id"])))
    found.sort(key=lambda s: str(s["sandboxID"]))
    limit = _limit(scope)
    page = found[:limit]
    more = len(found) > limit or any("x-next-token" in r.headers for r in replies)
    headers = {"x-next-token": page[-1]["sandboxID"]} if more and page else {}
    return Response(json.dumps(page), 200, headers, media_type="application/json")


def _limit(scope: Scope) -> int:
    """The page size the workers already checked (so a bad one failed there)."""
    query = Request(scope).query_params
    try:
        return max(1, min(int(query.get("limit", E2B_PAGE)), E2B_PAGE))
    except ValueError:
        return E2B_PAGE


SOCKET_HOP = HOP | {"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
                    "sec-websocket-protocol", "origin"}  # fmt: skip


async def refuse_socket(receive: Receive, send: Send, error: TVMError) -> None:
    """Accept, say why in the route's error message, and close (as the route does)."""
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": json.dumps(error_message(error))})
    code = 4404 if isinstance(error, NotFound) else close_code(error)
    await send({"type": "websocket.close", "code": code, "reason": error.message[:120]})


async def relay_socket(base: str, scope: Scope, receive: Receive, send: Send, owner: str) -> bool:
    """Open the same socket on the worker and relay both ways until either
    side closes; False if the worker could not be reached."""
    url = base.replace("http://", "ws://", 1) + scope["path"]
    query = scope.get("query_string", b"").decode("latin-1")
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers") or ()
               if k.decode("latin-1").lower() not in SOCKET_HOP]  # fmt: skip
    headers.append((OWNER_HEADER, owner))
    try:
        upstream = await websockets.connect(
            url + (f"?{query}" if query else ""), additional_headers=headers, max_size=1 << 24
        )
    except (OSError, websockets.WebSocketException):
        return False
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})

    async def up() -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await upstream.send(message.get("text") or message.get("bytes") or b"")

    async def down() -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for data in upstream:
                key = "text" if isinstance(data, str) else "bytes"
                await send({"type": "websocket.send", key: data})
        code = upstream.close_code or 1000
        code = code if code in (1000, 1001, 1008, 1011) or 3000 <= code < 5000 else 1011
        await send({"type": "websocket.close", "code": code, "reason": upstream.close_reason or ""})

    tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await upstream.close()
    return True
