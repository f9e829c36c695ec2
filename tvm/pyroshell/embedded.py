"""The embedded worker: the engine inside the gateway's own process.

``tvm start`` with ``--workers 0`` (the default) runs no worker process: the
gateway owns the sandboxes itself, so a request makes one HTTP hop instead of
two (no second HTTP server, no loopback connection, no JSON round trip). It is
the same engine and the same validation as in a worker process; the gateway's
:class:`~tvm.pyroshell.workers.WorkerPool` sees it as one more worker, always
healthy while the gateway runs. ``--workers N`` runs N supervised worker
processes instead (a crash of one then spares the gateway and the others).
"""

from __future__ import annotations

import logging
from typing import Any

from tvm.api import CodeExecutionRequest, ExecutionResponse, Job, build_job
from tvm.config.catalog import Catalog, load_catalog
from tvm.config.settings import Settings
from tvm.errors import CapacityError, NotFound
from tvm.pyrovm import drivers
from tvm.pyrovm.api import languages_table, runtimes_table
from tvm.pyrovm.engine import Engine
from tvm.pyrovm.images import ImageStore

log = logging.getLogger("tvm.gateway.embedded")

URL = "embedded"


class EmbeddedWorker:
    def __init__(
        self, settings: Settings, catalog: Catalog | None = None, engine: Engine | None = None
    ) -> None:
        self.settings = settings
        self.catalog = catalog or load_catalog()
        self.images = engine.images if engine is not None else ImageStore(settings)
        self.engine = engine

    async def start(self) -> None:
        if self.engine is None:
            driver = drivers.choose(self.settings)
            self.engine = Engine(self.settings, self.catalog, driver, self.images)
        await self.engine.start()
        log.info("embedded worker ready: driver=%s", self.engine.driver.name)

    async def close(self) -> None:
        if self.engine is not None:
            await self.engine.close()

    def health(self) -> dict[str, Any]:
        assert self.engine is not None
        return {
            "admitted": self.engine.admitted,
            "sandboxes": self.engine.sandboxes.stats(),
            "driver": self.engine.driver.name,
        }

    async def execute(
        self, payload: dict[str, Any], request_id: str, job: Job | None = None
    ) -> ExecutionResponse | None:
        """Run a native request (``job``: already validated from it); None when
        the engine is full (like a worker's 429)."""
        assert self.engine is not None
        if job is None:
            request = CodeExecutionRequest.model_validate(payload)
            job = build_job(request, self.settings, self.catalog)
        job.request_id = request_id
        try:
            return await self.engine.execute(job)
        except CapacityError:
            return None

    def get_json(self, path: str) -> Any:
        """What a worker answers on its read-only routes."""
        if path == "/api/v1/languages":
            return languages_table(self.catalog, self.images)
        if path == "/api/v2/runtimes":
            return runtimes_table(self.catalog, self.images)
        raise NotFound(f"no route {path}")
