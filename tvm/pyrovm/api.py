"""The worker service: FastAPI on uvicorn.

Routes: ``POST /api/v1/execute`` (native), ``POST /api/v2/execute`` and
``GET /api/v2/runtimes`` (Piston v2), ``GET /api/v1/languages``, ``GET /health``.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from tvm import __version__
from tvm.api import CodeExecutionRequest, ExecutionResponse, build_job
from tvm.compat import piston
from tvm.config.catalog import Catalog, load_catalog
from tvm.config.settings import Settings
from tvm.errors import CapacityError, InvalidRequest, TVMError
from tvm.pyrovm import drivers
from tvm.pyrovm.engine import Engine
from tvm.pyrovm.images import ImageStore

log = logging.getLogger("tvm.api")

# The seed's worker constants (defaults of the settings of the same name).
MAX_CONCURRENT_VMS = 10
MAX_CONCURRENT_REQUESTS = 20
MAX_VM_LIFETIME_SECONDS = 60


def error_response(exc: TVMError) -> JSONResponse:
    headers = {}
    if isinstance(exc, CapacityError):
        headers["Retry-After"] = str(exc.retry_after)
    return JSONResponse(exc.to_dict(), status_code=exc.status_code, headers=headers)


def validation_message(exc: RequestValidationError) -> tuple[str, str]:
    """First pydantic error as ('field.path', 'problem')."""
    err = exc.errors()[0]
    loc = [str(p) for p in err.get("loc", ()) if p != "body"]
    field = ""
    for part in loc:
        field += f"[{part}]" if part.isdigit() else (f".{part}" if field else part)
    if err.get("type") == "json_invalid":
        return "body", "is not valid JSON"
    if err.get("type") == "missing":
        return field or "body", "is required"
    return field or "body", err.get("msg", "is invalid")


class AssumeJSON:
    """ASGI middleware: treat POST bodies as JSON whatever their Content-Type says
    (``curl -d`` sends form encoding); there are no form endpoints."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT"):
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            headers.append((b"content-type", b"application/json"))
            scope = dict(scope, headers=headers)
        await self.app(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TVMError)
    async def _tvm_error(request: Request, exc: TVMError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        field, problem = validation_message(exc)
        return error_response(InvalidRequest(field, problem))


def languages_table(catalog: Catalog, images: ImageStore) -> list[dict[str, Any]]:
    out = []
    for lang in catalog:
        out.append(
            {
                "name": lang.name,
                "version": lang.version,
                "display_name": lang.display_name,
                "aliases": list(lang.aliases),
                "runtime": lang.runtime,
                "compiled": lang.compiled,
                "image": lang.image.name,
                "image_built": images.is_built(lang.image),
                "limits": {
                    stage: {"default": vars(spec.default), "max": vars(spec.maximum)}
                    for stage, spec in (("run", lang.run_limits), ("compile", lang.compile_limits))
                },
            }
        )
    return out


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    """The worker app. ``engine`` may be injected (tests); else built from settings."""
    catalog = load_catalog()
    images = ImageStore(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nonlocal engine
        if engine is None:
            driver_cls = drivers.choose(settings.driver)
            engine = Engine(settings, catalog, driver_cls(), images)
        app.state.engine = engine
        await engine.start()
        log.info("worker ready: driver=%s", engine.driver.name)
        try:
            yield
        finally:
            await engine.close()

    app = FastAPI(title="TVM worker (pyrovm)", version=__version__, lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(AssumeJSON)

    def built() -> set[str]:
        return {lang.key for lang in catalog if images.is_built(lang.image)}

    @app.middleware("http")
    async def request_id(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex[:16]
        request.state.request_id = rid
        response = await call_next(request)
        response.headers["X-Request-ID"] = rid
        return response

    @app.post("/api/v1/execute", response_model=ExecutionResponse)
    async def execute(body: CodeExecutionRequest, request: Request) -> ExecutionResponse:
        job = build_job(body, settings, catalog)
        job.request_id = request.state.request_id
        result: ExecutionResponse = await request.app.state.engine.execute(job)
        return result

    @app.post("/api/v2/execute")
    async def piston_execute(body: piston.PistonRequest, request: Request) -> dict[str, Any]:
        try:
            job = build_job(piston.to_native(body), settings, catalog)
        except InvalidRequest as exc:
            raise piston.rename_field(exc) from exc
        job.request_id = request.state.request_id
        return piston.from_native(await request.app.state.engine.execute(job))

    @app.get("/api/v2/runtimes")
    async def piston_runtimes() -> list[dict[str, Any]]:
        return piston.runtimes(catalog, built())

    @app.get("/api/v1/languages")
    async def languages() -> list[dict[str, Any]]:
        return languages_table(catalog, images)

    @app.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        eng: Engine = request.app.state.engine
        return {
            "status": "ok",
            "version": __version__,
            "driver": eng.driver.name,
            "admitted": eng.admitted,
            "sandboxes": eng.sandboxes.stats(),
            "outcomes": eng.outcomes,
        }

    return app
