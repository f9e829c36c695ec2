"""The embedded worker: the engine inside the gateway's own process.

``tvm start`` with ``--workers 0`` (the default) runs no worker process: the
gateway owns the sandboxes itself, so a request makes one HTTP hop instead of
two (no second HTTP server, no loopback connection, no JSON round trip). It is
the same engine and the same validation as in a worker process. It is a
:class:`~tvm.pyroshell.worker_client.WorkerClient` that calls the engine
directly; the gateway's :class:`~tvm.pyroshell.workers.WorkerPool` sees it as
one more worker, always healthy while the gateway runs. ``--workers N`` runs N supervised worker
processes instead (a crash of one then spares the gateway and the others).
"""

from __future__ import annotations

import logging
from typing import Any

from tvm.api import CodeExecutionRequest, ExecutionResponse, Job, build_job
from tvm.config.catalog import Catalog, load_catalog
from tvm.config.settings import Settings
from tvm.errors import CapacityError
from tvm.pyroshell.worker_client import Health, Refused, Unavailable
from tvm.pyrovm import drivers
from tvm.pyrovm.engine import Engine
from tvm.pyrovm.images import ImageStore
from tvm.pyrovm.listings import languages_table, runtimes_table
from tvm.pyrovm.live import LiveManager

log = logging.getLogger("tvm.gateway.embedded")

NAME = "embedded"


class EmbeddedWorker:
    def __init__(
        self, settings: Settings, catalog: Catalog | None = None, engine: Engine | None = None
    ) -> None:
        self.settings = settings
        self.catalog = catalog or load_catalog()
        self.images = engine.images if engine is not None else ImageStore(settings)
        self.engine = engine
        self.live: LiveManager | None = None  # live sandboxes (E2B, /api/v1/sandboxes)

    async def start(self) -> None:
        if self.engine is None:
            driver = drivers.choose(self.settings)
            self.engine = Engine(self.settings, self.catalog, driver, self.images)
        await self.engine.start()
        engine = self.engine
        self.live = LiveManager(
            self.settings, self.catalog, engine.driver, self.images, engine.sandboxes.uids
        )
        await self.live.start()
        log.info("embedded worker ready: driver=%s", self.engine.driver.name)

    async def close(self) -> None:
        if self.live is not None:
            await self.live.close()
        if self.engine is not None:
            await self.engine.close()

    def state(self) -> dict[str, Any]:
        """What a worker process's own ``/health`` would add (the gateway's /health shows it)."""
        engine = self._engine()
        return {
            "admitted": engine.admitted,
            "sandboxes": engine.sandboxes.stats(),
            "driver": engine.driver.name,
            "live": self.live.stats() if self.live is not None else None,
        }

    # -- the WorkerClient protocol ------------------------------------------------
    @property
    def name(self) -> str:
        return NAME

    @property
    def live_url(self) -> str | None:
        """None: its live sandboxes are served by this process's own routes."""
        return None

    async def health(self) -> Health:
        """Always healthy while the gateway runs: it is this process."""
        engine = self._engine()
        live = self.live
        boot, count = (live.boot, len(live.sandboxes)) if live is not None else ("", 0)
        return Health(engine.admitted, engine.sandboxes.count, engine.driver.name, boot, count)

    async def execute(
        self, payload: dict[str, Any], request_id: str, job: Job | None = None
    ) -> ExecutionResponse | Refused:
        """Run a native request (``job``: already validated from it); refused
        when the engine is full (like a worker's 429)."""
        engine = self._engine()
        if job is None:
            request = CodeExecutionRequest.model_validate(payload)
            job = build_job(request, self.settings, self.catalog)
        job.request_id = request_id
        try:
            return await engine.execute(job)
        except CapacityError as exc:
            return Refused(exc.message, down=False)

    async def languages(self, request_id: str) -> list[dict[str, Any]]:
        return languages_table(self.catalog, self.images)

    async def runtimes(self, request_id: str) -> list[dict[str, Any]]:
        return runtimes_table(self.catalog, self.images)

    def _engine(self) -> Engine:
        if self.engine is None:
            raise Unavailable("the embedded engine is not started")
        return self.engine
