"""The worker service: FastAPI on uvicorn.

Routes: ``POST /api/v1/execute`` (native), ``POST /api/v2/execute`` and
``GET /api/v2/runtimes`` (Piston v2), ``GET /api/v1/languages``, ``GET /health``,
and the live sandboxes this worker holds: the native ``/api/v1/sandboxes``
and E2B's routes, as the gateway serves them and forwards them here
(:mod:`tvm.pyroshell.live_proxy`; the gateway checked the API key, names the
owner, and E2B's per-sandbox access token is checked here).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Request, WebSocket

from tvm import __version__
from tvm.api import CodeExecutionRequest, ExecutionResponse, build_job
from tvm.compat import piston
from tvm.config.catalog import load_catalog
from tvm.config.settings import Settings
from tvm.errors import InvalidRequest
from tvm.pyroshell import e2b
from tvm.pyroshell.live_gate import ForwardedGate
from tvm.pyroshell.live_routes import router as live_router
from tvm.pyrovm import drivers
from tvm.pyrovm.connect import Session, serve_native
from tvm.pyrovm.engine import Engine
from tvm.pyrovm.images import ImageStore
from tvm.pyrovm.interactive import Terminal
from tvm.pyrovm.listings import languages_table, runtimes_table
from tvm.pyrovm.live import LiveManager
from tvm.utils import metrics
from tvm.utils.textguard import reject_unencodable
from tvm.utils.web import (
    REQUEST_ID_HEADER,
    AssumeJSON,
    install_error_handlers,
    install_request_id,
)

log = logging.getLogger("tvm.api")


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    """The worker app. ``engine`` may be injected (tests); else built from settings."""
    catalog = load_catalog()
    images = ImageStore(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nonlocal engine
        if engine is None:
            engine = Engine(settings, catalog, drivers.choose(settings), images)
        app.state.engine = engine
        await engine.start()
        live = LiveManager(settings, catalog, engine.driver, engine.images, engine.sandboxes.uids)
        app.state.live_manager = live
        await live.start()
        log.info("worker ready: driver=%s boot=%s", engine.driver.name, live.boot)
        try:
            yield
        finally:
            await live.close()
            await engine.close()

    app = FastAPI(
        title="TVM worker (pyrovm)",
        version=__version__,
        lifespan=lifespan,
        dependencies=[Depends(reject_unencodable)],
    )
    install_error_handlers(app)
    app.add_middleware(AssumeJSON)

    install_request_id(app)
    app.state.live_gate = ForwardedGate()
    app.include_router(live_router())
    e2b.install(app)
    metrics.instrument(app, "worker", lambda req: metrics.worker_metrics(req.app.state.engine))

    @app.post("/api/v1/execute", response_model=ExecutionResponse)
    async def execute(body: CodeExecutionRequest, request: Request) -> ExecutionResponse:
        job = build_job(body, settings, catalog)
        job.request_id = request.state.request_id
        result: ExecutionResponse = await request.app.state.engine.execute(job)
        return result

    @app.post("/api/v2/execute", tags=[piston.PISTON_TAG])
    async def piston_execute(
        request: Request, body: Annotated[Any, Body()] = None
    ) -> dict[str, Any]:
        try:
            job = build_job(piston.parse(body, catalog), settings, catalog)
        except InvalidRequest as exc:
            raise piston.rename_field(exc) from exc
        job.request_id = request.state.request_id
        return piston.from_native(await request.app.state.engine.execute(job))

    @app.get("/api/v2/runtimes", tags=[piston.PISTON_TAG])
    async def piston_runtimes() -> list[dict[str, Any]]:
        return runtimes_table(catalog, images)

    @app.get("/api/v1/languages")
    async def languages() -> list[dict[str, Any]]:
        return languages_table(catalog, images)

    @app.websocket("/api/v1/connect")
    async def connect(ws: WebSocket) -> None:
        """An interactive run (:mod:`tvm.pyrovm.connect`); the gateway's way in."""
        await ws.accept()

        async def open_session(request: CodeExecutionRequest, terminal: Terminal | None) -> Session:
            job = build_job(request, settings, catalog)
            job.request_id = ws.headers.get(REQUEST_ID_HEADER) or ""
            session: Session = ws.app.state.engine.interactive(job, terminal)
            return session

        await serve_native(ws, open_session)

    @app.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        eng: Engine = request.app.state.engine
        live: LiveManager = request.app.state.live_manager
        return {
            "boot": live.boot,
            "live": live.stats(),
            "status": "ok",
            "version": __version__,
            "driver": eng.driver.name,
            "admitted": eng.admitted,
            "sandboxes": eng.sandboxes.stats(),
            "outcomes": eng.outcomes,
        }

    return app
