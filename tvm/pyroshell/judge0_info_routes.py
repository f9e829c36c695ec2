"""Judge0 CE's other routes: languages, statuses, configuration, information,
workers and sessions (shapes: :mod:`tvm.compat.judge0_info`).

``POST /authenticate`` answers 200 to a request the gateway accepts (401 where a
key is required and missing); ``POST /authorize`` 200 to an admin key, else 403,
as Judge0 answers its authentication and authorisation tokens.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy.engine import make_url

from tvm.compat import judge0, judge0_info
from tvm.compat import judge0_languages as langs
from tvm.compat.judge0_status import DESCRIPTIONS
from tvm.errors import Forbidden, NotFound
from tvm.pyroshell.deps import JUDGE0_TAG, Gateway, Who, gateway, principal
from tvm.pyroshell.store import PROCESSING, QUEUED


def _database_bytes(gw: Gateway) -> int | None:
    url = make_url(gw.store.url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    try:
        from pathlib import Path

        return Path(url.database).stat().st_size
    except OSError:
        return None


class StatisticsCache:
    """Judge0 recomputes ``/statistics`` at most every 10 minutes (or on
    ``invalidate_cache=true``)."""

    def __init__(self) -> None:
        self.body: dict[str, Any] | None = None
        self.until = 0.0

    async def get(self, gw: Gateway, invalidate: bool) -> dict[str, Any]:
        if self.body is not None and not invalidate and time.monotonic() < self.until:
            return dict(self.body, cached=True)
        now = dt.datetime.now(dt.UTC)
        since = dt.datetime.combine(now.date(), dt.time(), dt.UTC) - dt.timedelta(
            days=judge0_info.STATISTICS_DAYS
        )
        tallies = await gw.store.tallies(since)
        self.body = judge0_info.statistics(tallies, gw.catalog, now, _database_bytes(gw))
        self.until = time.monotonic() + judge0_info.STATISTICS_CACHE.total_seconds()
        return self.body


def judge0_info_router() -> APIRouter:
    router = APIRouter(tags=[JUDGE0_TAG], dependencies=[Depends(principal)])
    stats = StatisticsCache()

    @router.get("/languages", responses=judge0.responses(401))
    async def languages(request: Request) -> list[dict[str, Any]]:
        return langs.languages(gateway(request).catalog)

    @router.get("/languages/all", responses=judge0.responses(401))
    async def all_languages(request: Request) -> list[dict[str, Any]]:
        return langs.all_languages(gateway(request).catalog)

    @router.get("/languages/{language_id}", responses=judge0.responses(401, 404, 422))
    async def language(language_id: int, request: Request) -> dict[str, Any]:
        found = langs.language_detail(gateway(request).catalog, language_id)
        if found is None:
            raise NotFound(f"language with id {language_id} doesn't exist")
        return found

    @router.get("/statuses", responses=judge0.responses(401))
    async def statuses() -> list[dict[str, Any]]:
        return [{"id": int(i), "description": d} for i, d in DESCRIPTIONS.items()]

    @router.get("/config_info", responses=judge0.responses(401))
    async def config_info(request: Request) -> dict[str, Any]:
        return judge0.config_info(gateway(request).settings)

    @router.get("/about", responses=judge0.responses(401))
    async def about() -> dict[str, Any]:
        return judge0_info.about()

    @router.get("/version", response_class=PlainTextResponse, responses=judge0.responses(401))
    async def version() -> str:
        return judge0.COMPATIBLE_VERSION

    @router.get("/license", response_class=PlainTextResponse, responses=judge0.responses(401))
    async def license_text() -> str:
        return judge0_info.LICENSE

    @router.get("/isolate", response_class=PlainTextResponse, responses=judge0.responses(401))
    async def isolate(request: Request) -> str:
        return judge0_info.isolate(gateway(request).settings.driver)

    @router.get("/system_info", responses=judge0.responses(401))
    async def system_info() -> dict[str, str]:
        return await asyncio.to_thread(judge0_info.system_info)

    @router.get("/statistics", responses=judge0.responses(401, 422))
    async def statistics(
        request: Request,
        invalidate_cache: str | None = Query(None, description="`true`: recompute now"),
    ) -> dict[str, Any]:
        return await stats.get(gateway(request), invalidate_cache == "true")

    @router.get("/workers", responses=judge0.responses(401, 500))
    async def workers(request: Request) -> JSONResponse:
        gw = gateway(request)
        running = await gw.store.count((PROCESSING,))
        healthy = len(gw.pool.healthy())
        total = len(gw.pool.workers)
        body = [{
            "queue": judge0.COMPATIBLE_VERSION,
            "size": await gw.store.count((QUEUED,)),
            "available": healthy,
            "idle": max(0, gw.settings.dispatcher_concurrency - running),
            "working": running,
            "paused": 0,
            "failed": total - healthy,
        }]  # fmt: skip
        # Judge0 answers 500 while not every worker it should have is up.
        return JSONResponse(body, status_code=200 if healthy == total else 500)

    @router.post(
        "/authenticate",
        response_class=Response,
        responses={
            200: {"description": "the key is accepted", "content": {}},
            **judge0.responses(401),
        },
    )
    async def authenticate(who: Who) -> Response:
        return Response(status_code=200)

    @router.post(
        "/authorize",
        response_class=Response,
        responses={
            200: {"description": "an admin key", "content": {}},
            **judge0.responses(401, 403),
        },
    )
    async def authorize(who: Who) -> Response:
        if not who.admin:
            raise Forbidden("this key is not an admin key (admin_keys)")
        return Response(status_code=200)

    return router
