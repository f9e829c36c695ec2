"""Judge0 CE routes of the gateway (translation rules: :mod:`tvm.compat.judge0`).

``POST /submissions`` stores the submission before answering; with ``wait=true``
it is run at once and answered with its result, otherwise the dispatcher runs it
and the client polls ``GET /submissions/{token}``. Query parameters are Judge0's:
``base64_encoded`` and ``wait`` are true only when exactly ``true``; ``fields``
is a comma-separated list or ``*``.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from tvm import __version__
from tvm.api import build_job
from tvm.compat import judge0
from tvm.compat import judge0_result as results
from tvm.errors import CapacityError, InvalidRequest, NotFound
from tvm.pyroshell.app import JUDGE0_TAG, Gateway, Principal, Who, gateway, principal
from tvm.pyroshell.store import PROCESSING, QUEUED
from tvm.utils import metrics

Base64Flag = Query(None, description="`true`: text attributes are base64 (in and out)")
FieldsParam = Query(None, description="comma-separated attribute names, or `*` for all")


def _flag(value: str | None) -> bool:
    return value == "true"


async def _check_queue(gw: Gateway, n: int) -> None:
    if await gw.store.count((QUEUED,)) + n > gw.settings.max_queue_size:
        metrics.REFUSED.labels("queue_full").inc()
        raise CapacityError("queue is full", retry_after=5, status_code=503)


def _prepare(gw: Gateway, sub: judge0.Judge0Submission, b64: bool) -> judge0.Accepted:
    accepted = judge0.accept(sub, b64, gw.catalog)
    try:
        build_job(accepted.native, gw.settings, gw.catalog)
    except InvalidRequest as exc:
        raise judge0.rename_field(exc) from exc
    return accepted


def _row(accepted: judge0.Accepted, who: Principal, request_id: str, status: int) -> dict[str, Any]:
    return {
        "token": str(uuid.uuid4()),
        "status_id": status,
        "params": accepted.params,
        "native": accepted.native.model_dump(mode="json", exclude_none=True),
        "key_id": who.key_id,
        "request_id": request_id,
    }


async def _render_one(
    gw: Gateway, token: str, fields: tuple[str, ...], b64: bool
) -> dict[str, Any]:
    row = await gw.store.get(token)
    if row is None:
        raise NotFound(f"submission {token} not found")
    return results.render(results.attributes(row, gw.catalog), fields, b64)


def judge0_router() -> APIRouter:
    router = APIRouter(tags=[JUDGE0_TAG], dependencies=[Depends(principal)])

    @router.post("/submissions", status_code=201)
    async def create(
        body: judge0.Judge0Submission,
        request: Request,
        who: Who,
        base64_encoded: str | None = Base64Flag,
        wait: str | None = Query(None, description="`true`: answer with the result"),
        fields: str | None = FieldsParam,
    ) -> JSONResponse:
        gw, b64 = gateway(request), _flag(base64_encoded)
        wanted = results.parse_fields(fields)
        await _check_queue(gw, 1)
        accepted = _prepare(gw, body, b64)
        await gw.gate.admit(who)
        waiting = _flag(wait)
        row = _row(accepted, who, request.state.request_id, PROCESSING if waiting else QUEUED)
        await gw.store.add([row])
        if not waiting:
            gw.dispatcher.notify()
            return JSONResponse({"token": row["token"]}, status_code=201)
        stored = await gw.store.get(row["token"])
        assert stored is not None
        async with gw.gate.limiter.running(who):
            # Shielded: the result is stored even if the client goes away meanwhile.
            await asyncio.shield(gw.dispatcher.run(stored))
        try:
            rendered = await _render_one(gw, row["token"], wanted, b64)
        except results.NotUtf8:
            rendered = {"token": row["token"], "error": judge0.NOT_UTF8}
        return JSONResponse(rendered, status_code=201)

    @router.post("/submissions/batch", status_code=201)
    async def create_batch(
        body: judge0.Judge0Batch,
        request: Request,
        who: Who,
        base64_encoded: str | None = Base64Flag,
    ) -> JSONResponse:
        gw, b64 = gateway(request), _flag(base64_encoded)
        count = len(body.submissions)
        if count > judge0.MAX_BATCH:
            raise InvalidRequest(
                "body",
                "number of submissions in a batch should be less than or equal to "
                f"{judge0.MAX_BATCH}",
            )
        if count == 0:
            raise InvalidRequest("body", "there should be at least one submission in a batch")
        await _check_queue(gw, count)
        answers: list[dict[str, Any]] = []
        rows: list[dict[str, Any]] = []
        for item in body.submissions:
            try:
                accepted = _prepare(gw, judge0.Judge0Submission.model_validate(item), b64)
            except InvalidRequest as exc:
                answers.append({exc.field: [exc.problem]})
                continue
            except ValidationError as exc:
                error = exc.errors()[0]
                field = ".".join(str(part) for part in error["loc"]) or "body"
                answers.append({field: [error["msg"]]})
                continue
            rows.append(_row(accepted, who, request.state.request_id, QUEUED))
            answers.append({"token": rows[-1]["token"]})
        if rows:
            await gw.gate.admit(who, len(rows))
            await gw.store.add(rows)
            gw.dispatcher.notify()
        return JSONResponse(answers, status_code=201 if rows else 422)

    @router.get("/submissions/batch")
    async def show_batch(
        request: Request,
        tokens: str = Query("", description="comma-separated tokens"),
        base64_encoded: str | None = Base64Flag,
        fields: str | None = FieldsParam,
    ) -> dict[str, Any]:
        gw, b64 = gateway(request), _flag(base64_encoded)
        wanted = results.parse_fields(fields)
        wanted_tokens = [token for token in tokens.strip().split(",") if token]
        if len(wanted_tokens) > judge0.MAX_BATCH:
            raise InvalidRequest(
                "tokens",
                "number of submissions in a batch should be less than or equal to "
                f"{judge0.MAX_BATCH}",
            )
        if not wanted_tokens:
            raise InvalidRequest("tokens", "there should be at least one submission in a batch")
        found = await gw.store.get_many(wanted_tokens)
        out: list[dict[str, Any] | None] = []
        try:
            for token in wanted_tokens:
                row = found.get(token)
                attrs = results.attributes(row, gw.catalog) if row else None
                out.append(results.render(attrs, wanted, b64) if attrs else None)
        except results.NotUtf8:
            raise InvalidRequest("body", judge0.NOT_UTF8_BATCH) from None
        return {"submissions": out}

    @router.get("/submissions/{token}")
    async def show(
        token: str,
        request: Request,
        base64_encoded: str | None = Base64Flag,
        fields: str | None = FieldsParam,
    ) -> dict[str, Any]:
        gw = gateway(request)
        wanted = results.parse_fields(fields)
        try:
            return await _render_one(gw, token, wanted, _flag(base64_encoded))
        except results.NotUtf8:
            raise InvalidRequest("body", judge0.NOT_UTF8) from None

    @router.delete("/submissions/{token}")
    async def destroy(token: str, request: Request, fields: str | None = FieldsParam) -> Any:
        gw = gateway(request)
        if not gw.settings.judge0_enable_delete:
            raise InvalidRequest("body", "delete not allowed")
        wanted = results.parse_fields(fields)
        row = await gw.store.get(token)
        if row is None:
            raise NotFound(f"submission {token} not found")
        status_id = row["status_id"]
        if status_id in (QUEUED, PROCESSING):
            raise InvalidRequest(
                "body",
                f"submission cannot be deleted because its status is {status_id} "
                f"({judge0.STATUSES[status_id]})",
            )
        await gw.store.delete(token)
        # base64 forced, as Judge0 does: the data must survive the delete whatever it is.
        return results.render(results.attributes(row, gw.catalog), wanted, base64_encoded=True)

    @router.get("/languages")
    async def languages(request: Request) -> list[dict[str, Any]]:
        return judge0.languages(gateway(request).catalog)

    @router.get("/languages/all")
    async def all_languages(request: Request) -> list[dict[str, Any]]:
        rows = judge0.languages(gateway(request).catalog)
        return [dict(row, is_archived=False) for row in rows]

    @router.get("/languages/{language_id}")
    async def language(language_id: int, request: Request) -> dict[str, Any]:
        found = judge0.language_detail(gateway(request).catalog, language_id)
        if found is None:
            raise NotFound(f"language with id {language_id} doesn't exist")
        return found

    @router.get("/statuses")
    async def statuses() -> list[dict[str, Any]]:
        return judge0.statuses()

    @router.get("/config_info")
    async def config_info(request: Request) -> dict[str, Any]:
        settings = gateway(request).settings
        return judge0.config_info(settings.max_queue_size, settings.judge0_enable_delete)

    @router.get("/about")
    async def about() -> dict[str, Any]:
        return {
            "version": __version__,
            "homepage": None,
            "source_code": None,
            "maintainer": "TVM",
            "judge0_compatible": judge0.COMPATIBLE_VERSION,
        }

    @router.get("/workers")
    async def workers(request: Request) -> list[dict[str, Any]]:
        gw = gateway(request)
        running = await gw.store.count((PROCESSING,))
        healthy = len(gw.pool.healthy())
        return [{
            "queue": judge0.COMPATIBLE_VERSION,
            "size": await gw.store.count((QUEUED,)),
            "available": healthy,
            "idle": max(0, gw.settings.dispatcher_concurrency - running),
            "working": running,
            "paused": 0,
            "failed": len(gw.pool.workers) - healthy,
        }]  # fmt: skip

    return router
