"""Judge0 CE submission routes of the gateway (translation rules:
:mod:`tvm.compat.judge0`; the other Judge0 routes: :mod:`.judge0_info_routes`).

``POST /submissions`` stores the submission before answering; with ``wait=true``
it is run at once and answered with its result, otherwise the dispatcher runs it
and the client polls ``GET /submissions/{token}``. Query parameters are Judge0's:
``base64_encoded`` and ``wait`` are true only when exactly ``true``; ``fields``
is a comma-separated list or ``*``.

A submission made with a key is seen and deleted only with that key or an admin
key (another key gets the 404 of an unknown token, so tokens leak nothing); one
made without a key, by its token alone. ``GET /submissions`` lists them all,
paged, for an admin key only (403 otherwise), as Judge0 lists them for its
authorised user.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from tvm.api import build_job
from tvm.compat import judge0
from tvm.compat import judge0_result as results
from tvm.compat.judge0_status import DESCRIPTIONS, Status
from tvm.errors import CapacityError, DestinationRefused, Forbidden, InvalidRequest, NotFound
from tvm.pyroshell.auth import Principal
from tvm.pyroshell.deps import JUDGE0_TAG, Gateway, Who, gateway, principal
from tvm.pyroshell.judge0_info_routes import judge0_info_router
from tvm.pyroshell.store import PROCESSING, QUEUED
from tvm.utils import metrics

Base64Flag = Query(None, description="`true`: text attributes are base64 (in and out)")
FieldsParam = Query(
    None,
    description="comma-separated attribute names, or `*` for all",
    json_schema_extra={"pattern": results.fields_pattern()},
)


DEFAULT_PER_PAGE, MAX_PER_PAGE = 20, 100


def _flag(value: str | None) -> bool:
    return value == "true"


async def _check_queue(gw: Gateway, n: int) -> None:
    if await gw.store.count((QUEUED,)) + n > gw.settings.max_queue_size:
        metrics.REFUSED.labels("queue_full").inc()
        raise CapacityError("queue is full", retry_after=5, status_code=503)


def _prepare(gw: Gateway, sub: judge0.Judge0Submission, b64: bool) -> judge0.Accepted:
    accepted = judge0.accept(sub, b64, gw.catalog, gw.settings)
    if sub.callback_url:
        try:
            gw.dispatcher.outbound.check_literal(sub.callback_url)
        except DestinationRefused as exc:
            raise InvalidRequest("callback_url", exc.message) from exc
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


async def _owned(gw: Gateway, token: str, who: Principal) -> dict[str, Any]:
    """The stored submission, if ``who`` may see it; else the 404 of an unknown token."""
    row = await gw.store.get(token)
    if row is None or not who.owns(row["key_id"]):
        raise NotFound(f"submission {token} not found")
    return row


async def _render_one(
    gw: Gateway, token: str, who: Principal, fields: tuple[str, ...], b64: bool
) -> dict[str, Any]:
    row = await _owned(gw, token, who)
    return results.render(results.attributes(row, gw.catalog), fields, b64)


def _page_number(name: str, value: str | None, default: int, low: int, high: int) -> int:
    """Judge0's ``page``/``per_page`` (Ruby's ``to_i``: a non-number is 0)."""
    text = (value or "").strip()
    digits = text[1:] if text[:1] in "+-" else text
    number = default if value is None else (int(text) if digits.isdigit() else 0)
    if not low <= number <= high:
        raise InvalidRequest("body", f"invalid {name}: {number} (from {low} to {high})")
    return number


def judge0_router() -> APIRouter:
    router = APIRouter(tags=[JUDGE0_TAG], dependencies=[Depends(principal)])

    @router.post(
        "/submissions", status_code=201, responses=judge0.responses(400, 401, 422, 429, 503)
    )
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
            rendered = await _render_one(gw, row["token"], who, wanted, b64)
        except results.NotUtf8:
            rendered = {"token": row["token"], "error": judge0.NOT_UTF8}
        return JSONResponse(rendered, status_code=201)

    @router.post(
        "/submissions/batch",
        status_code=201,
        responses={
            **judge0.responses(400, 401, 429, 503),
            422: {"model": judge0.BatchErrors, "description": "no submission was valid"},
        },
    )
    async def create_batch(
        body: judge0.Judge0Batch,
        request: Request,
        who: Who,
        base64_encoded: str | None = Base64Flag,
    ) -> JSONResponse:
        gw, b64 = gateway(request), _flag(base64_encoded)
        submissions = body.submissions or []
        count = len(submissions)
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
        for item in submissions:
            try:
                accepted = _prepare(gw, judge0.Judge0Submission.model_validate(item), b64)
            except InvalidRequest as exc:
                answers.append({exc.field: [exc.problem]})
                continue
            except ValidationError as exc:
                error = exc.errors()[0]
                field = ".".join(str(part) for part in error["loc"]) or "body"
                answers.append({field: [str(error["msg"]).removeprefix("Value error, ")]})
                continue
            rows.append(_row(accepted, who, request.state.request_id, QUEUED))
            answers.append({"token": rows[-1]["token"]})
        if rows:
            await gw.gate.admit(who, len(rows))
            await gw.store.add(rows)
            gw.dispatcher.notify()
        return JSONResponse(answers, status_code=201 if rows else 422)

    @router.get("/submissions/batch", responses=judge0.responses(400, 401, 422))
    async def show_batch(
        request: Request,
        who: Who,
        tokens: str = Query(
            ...,
            description=f"comma-separated tokens, 1 to {judge0.MAX_BATCH} (an empty one is "
            "an unknown token; trailing commas are ignored)",
            json_schema_extra={"pattern": judge0.BATCH_TOKENS_PATTERN},
        ),
        base64_encoded: str | None = Base64Flag,
        fields: str | None = FieldsParam,
    ) -> dict[str, Any]:
        gw, b64 = gateway(request), _flag(base64_encoded)
        wanted = results.parse_fields(fields)
        wanted_tokens = judge0.batch_tokens(tokens)
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
                row = row if row is not None and who.owns(row["key_id"]) else None
                attrs = results.attributes(row, gw.catalog) if row else None
                out.append(results.render(attrs, wanted, b64) if attrs else None)
        except results.NotUtf8:
            raise InvalidRequest("body", judge0.NOT_UTF8_BATCH) from None
        return {"submissions": out}

    @router.get("/submissions", responses=judge0.responses(400, 401, 403, 422))
    async def index(
        request: Request,
        who: Who,
        page: str | None = Query(None, description="page number, from 1"),
        per_page: str | None = Query(None, description=f"from 0 to {MAX_PER_PAGE}"),
        base64_encoded: str | None = Base64Flag,
        fields: str | None = FieldsParam,
    ) -> dict[str, Any]:
        if not who.admin:
            raise Forbidden("listing submissions needs an admin key (admin_keys)")
        gw, b64 = gateway(request), _flag(base64_encoded)
        wanted = results.parse_fields(fields)
        number = _page_number("page", page, 1, 1, 1 << 31)
        size = _page_number("per_page", per_page, DEFAULT_PER_PAGE, 0, MAX_PER_PAGE)
        rows, total = await gw.store.page((number - 1) * size, size)
        try:
            out = [results.render(results.attributes(row, gw.catalog), wanted, b64) for row in rows]
        except results.NotUtf8:
            raise InvalidRequest("body", judge0.NOT_UTF8_BATCH) from None
        pages = -(-total // size) if size else 0
        meta = {
            "current_page": number,
            "next_page": number + 1 if number < pages else None,
            "prev_page": number - 1 if number > 1 else None,
            "total_pages": pages,
            "total_count": total,
        }
        return {"submissions": out, "meta": meta}

    @router.get("/submissions/{token}", responses=judge0.responses(400, 401, 404))
    async def show(
        token: str,
        request: Request,
        who: Who,
        base64_encoded: str | None = Base64Flag,
        fields: str | None = FieldsParam,
    ) -> dict[str, Any]:
        gw = gateway(request)
        wanted = results.parse_fields(fields)
        try:
            return await _render_one(gw, token, who, wanted, _flag(base64_encoded))
        except results.NotUtf8:
            raise InvalidRequest("body", judge0.NOT_UTF8) from None

    @router.delete("/submissions/{token}", responses=judge0.responses(400, 401, 404))
    async def destroy(
        token: str, request: Request, who: Who, fields: str | None = FieldsParam
    ) -> Any:
        gw = gateway(request)
        if not gw.settings.judge0_enable_delete:
            raise InvalidRequest("body", "delete not allowed")
        wanted = results.parse_fields(fields)
        row = await _owned(gw, token, who)
        status_id = row["status_id"]
        if status_id in (QUEUED, PROCESSING):
            raise InvalidRequest(
                "body",
                f"submission cannot be deleted because its status is {status_id} "
                f"({DESCRIPTIONS[Status(status_id)]})",
            )
        await gw.store.delete(token)
        # base64 forced, as Judge0 does: the data must survive the delete whatever it is.
        return results.render(results.attributes(row, gw.catalog), wanted, base64_encoded=True)

    router.include_router(judge0_info_router())
    return router
