"""The gateway service (pyroshell): FastAPI on uvicorn, the public entry point.

It validates (with the same :func:`tvm.api.build_job` as the worker), authenticates,
rate-limits, persists and routes; workers only execute. Routes:

* native and Piston v2, answered exactly as a worker answers them:
  ``POST /api/v1/execute``, ``GET /api/v1/languages``, ``POST /api/v2/execute``,
  ``GET /api/v2/runtimes`` (the lists come from a worker, which knows its images);
* Judge0 CE (:mod:`tvm.pyroshell.judge0_routes`);
* ``GET /health`` (200 while at least one worker is healthy, else 503) and
  ``GET /metrics``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client.metrics_core import Metric
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from tvm import __version__
from tvm.api import CodeExecutionRequest, ErrorBody, ExecutionResponse, build_job
from tvm.compat import piston
from tvm.config.catalog import load_catalog
from tvm.config.settings import Settings
from tvm.errors import InvalidRequest, TVMError
from tvm.pyroshell import openapi
from tvm.pyroshell.auth import Gatekeeper, Principal
from tvm.pyroshell.connect import connect_router
from tvm.pyroshell.deps import JUDGE0_TAG, Gateway, Who, gateway, principal
from tvm.pyroshell.dispatcher import Dispatcher, outcome_of
from tvm.pyroshell.embedded import EmbeddedWorker
from tvm.pyroshell.judge0_routes import judge0_router
from tvm.pyroshell.live_gate import KeyGate
from tvm.pyroshell.live_proxy import LiveProxy
from tvm.pyroshell.packages import packages_router
from tvm.pyroshell.playground import playground_router
from tvm.pyroshell.store import QUEUED, Store
from tvm.pyroshell.workers import Lost, WorkerPool, lost_response
from tvm.utils import metrics
from tvm.utils.methods import AllowedMethods
from tvm.utils.responses import errors
from tvm.utils.textguard import reject_unencodable
from tvm.utils.web import (
    AssumeJSON,
    error_response,
    http_error,
    install_error_handlers,
    install_request_id,
    render_error,
    validation_message,
    with_headers,
)

log = logging.getLogger("tvm.gateway")


class GatewayHealth(BaseModel):
    status: str = Field(description="ok, or why not")
    version: str
    role: str
    workers: list[dict[str, Any]]
    queue_depth: int
    embedded: dict[str, Any] | None = Field(None, description="the embedded worker's /health")


async def run_native(
    gw: Gateway,
    body: CodeExecutionRequest,
    who: Principal,
    request_id: str,
    rename: Callable[[InvalidRequest], TVMError] | None = None,
) -> ExecutionResponse:
    """Validate and run a native request on a worker (the sync path of both APIs);
    ``rename`` names a compatible API's field in a validation error."""
    try:
        job = build_job(body, gw.settings, gw.catalog)
    except InvalidRequest as exc:
        raise (rename(exc) if rename else exc) from exc
    await gw.gate.admit(who)
    started = time.perf_counter()
    async with gw.gate.limiter.running(who):
        payload = body.model_dump(mode="json", exclude_none=True)
        outcome = await gw.pool.execute(payload, request_id, job=job)
        attempts = 1
        while isinstance(outcome, Lost) and attempts < gw.settings.max_attempts:
            attempts += 1  # its worker died mid-run; a sandbox has no effect outside itself
            log.warning("worker %s went away during request %s; running it again (attempt %d)",
                        outcome.worker, request_id, attempts)  # fmt: skip
            outcome = await gw.pool.execute(payload, request_id, job=job)
    metrics.EXECUTIONS.labels(job.language.name, outcome_of(outcome)).inc()
    metrics.EXECUTION_LATENCY.labels(job.language.name).observe(time.perf_counter() - started)
    if isinstance(outcome, Lost):
        return lost_response(outcome, job.language.name, job.language.version, attempts)
    return outcome


NATIVE_ERRORS = errors(ErrorBody, 400, 401, 429, 503)
PISTON_ERRORS = errors(piston.PistonMessage, 400, 401, 429, 503)


def execution_router() -> APIRouter:
    router = APIRouter(dependencies=[Depends(principal)])

    # The execute routes answer with a ready Response: the result is already a
    # validated model, and FastAPI's re-validation and encoding of it cost more
    # than the rest of the route (the documented schema stays the model's).
    @router.post("/api/v1/execute", response_model=ExecutionResponse, responses=NATIVE_ERRORS)
    async def execute(body: CodeExecutionRequest, request: Request, who: Who) -> Response:
        result = await run_native(gateway(request), body, who, request.state.request_id)
        return Response(result.model_dump_json(), media_type="application/json")

    @router.post("/api/v2/execute", response_model=piston.PistonResult, responses=PISTON_ERRORS,
                 tags=[piston.PISTON_TAG])  # fmt: skip
    async def piston_execute(
        request: Request, who: Who, body: Annotated[Any, Body()] = None
    ) -> Response:
        native = piston.parse(body, gateway(request).catalog)
        result = await run_native(
            gateway(request), native, who, request.state.request_id, piston.rename_field
        )
        return JSONResponse(piston.from_native(result))

    @router.get(
        "/api/v2/runtimes",
        response_model=list[piston.PistonRuntime],
        responses=errors(piston.PistonMessage, 401, 503),
        tags=[piston.PISTON_TAG],
    )
    async def piston_runtimes(request: Request) -> Response:
        listed = await gateway(request).pool.runtimes(request.state.request_id)
        return JSONResponse(listed)  # as listed: no `runtime` key where there is none

    @router.get("/api/v1/languages", responses=errors(ErrorBody, 401, 503))
    async def languages(request: Request) -> list[dict[str, Any]]:
        return await gateway(request).pool.languages(request.state.request_id)

    return router


def _is_judge0(request: Request) -> bool:
    route = request.scope.get("route")
    return JUDGE0_TAG in (getattr(route, "tags", None) or [])


def judge0_error(exc: TVMError) -> JSONResponse:
    """Judge0's error shapes: 422 ``{field: [problem]}`` for a bad attribute, else
    ``{"error": message}`` with the status code of the error."""
    response = error_response(exc)
    if isinstance(exc, InvalidRequest) and exc.field not in ("fields", "body", "tokens"):
        body: dict[str, Any] = {exc.field: [exc.problem]}
        return JSONResponse(body, status_code=422)
    message = exc.problem if isinstance(exc, InvalidRequest) else exc.message
    return JSONResponse({"error": message}, status_code=exc.status_code,
                        headers={k: v for k, v in response.headers.items()
                                 if k.lower() == "retry-after"})  # fmt: skip


def install_gateway_errors(app: FastAPI) -> None:
    """The worker's error handling, plus Judge0's shapes on Judge0 routes."""
    install_error_handlers(app)

    @app.exception_handler(TVMError)
    async def _tvm_error(request: Request, exc: TVMError) -> JSONResponse:
        return judge0_error(exc) if _is_judge0(request) else render_error(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        field, problem = validation_message(exc)
        error = InvalidRequest(field, problem)
        return judge0_error(error) if _is_judge0(request) else render_error(request, error)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error = http_error(exc)
        response = judge0_error(error) if _is_judge0(request) else render_error(request, error)
        return with_headers(response, exc)


def _engine_metrics(request: Request) -> list[Metric]:
    local = gateway(request).pool.embedded
    return metrics.worker_metrics(local.engine) if local and local.engine else []


def create_gateway_app(
    settings: Settings,
    pool: WorkerPool | None = None,
    store: Store | None = None,
    embedded: bool = False,
) -> FastAPI:
    """The gateway app; ``pool`` and ``store`` may be injected (tests).
    ``embedded``: run sandboxes in this process too (:mod:`.embedded`)."""
    from tvm.pyroshell import e2b
    from tvm.pyroshell.live_routes import router as live_router

    catalog = load_catalog()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = store or Store.from_settings(settings)
        local = EmbeddedWorker(settings, catalog) if embedded else None
        workers = pool or WorkerPool(settings, embedded=local)
        await db.open()
        dispatcher = Dispatcher(settings, db, workers, catalog)
        app.state.gateway = Gateway(
            settings, catalog, db, workers, dispatcher, Gatekeeper(settings, db)
        )
        app.state.live_gate = KeyGate(app.state.gateway.gate)
        await workers.start()
        await dispatcher.start()
        log.info("gateway ready: %d worker(s) configured, database %s",
                 len(workers.workers), db.safe_url)  # fmt: skip
        try:
            yield
        finally:
            await dispatcher.close()
            await workers.close()
            await db.close()

    app = FastAPI(
        title="TVM gateway (pyroshell)",
        version=__version__,
        lifespan=lifespan,
        dependencies=[Depends(reject_unencodable)],
    )
    install_gateway_errors(app)
    app.add_middleware(AssumeJSON)
    app.add_middleware(AllowedMethods, schema=lambda: app.openapi())
    install_request_id(app)
    metrics.instrument(app, "gateway", _engine_metrics)
    app.include_router(execution_router())
    app.include_router(judge0_router())
    app.include_router(connect_router())
    app.include_router(playground_router())
    app.include_router(live_router())
    e2b.install(app)
    app.add_middleware(LiveProxy)  # outermost: with worker processes, live calls go there
    app.include_router(packages_router(catalog))

    @app.get(
        "/health",
        response_model=GatewayHealth,
        responses={
            503: {"model": GatewayHealth, "description": "no healthy worker"},
            **errors(ErrorBody, 400),
        },
    )
    async def health(request: Request, probe: Literal["ready", "live"] = "ready") -> JSONResponse:
        """``probe=live`` (a liveness probe) answers 200 while the process serves, even
        with no healthy worker: restarting the gateway would not bring one back."""
        gw = gateway(request)
        workers = [worker.describe() for worker in gw.pool.workers.values()]
        ready = any(worker["healthy"] for worker in workers)
        body: dict[str, Any] = {
            "status": "ok" if ready else "no healthy worker",
            "version": __version__,
            "role": "gateway",
            "workers": workers,
            "queue_depth": await gw.store.count((QUEUED,)),
        }
        if gw.pool.embedded is not None:  # what a worker's own /health says
            body["embedded"] = gw.pool.embedded.state()
        return JSONResponse(body, status_code=200 if ready or probe == "live" else 503)

    openapi.install(app, settings, catalog)
    return app
