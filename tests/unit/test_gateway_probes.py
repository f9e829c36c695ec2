"""The gateway's probes: readiness follows the workers, liveness only the process."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from tests.gateway_support import gateway_client, gateway_settings


def sick_worker() -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse({"status": "sick"}, status_code=503)

    return app


def test_liveness_holds_while_no_worker_is_healthy(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path)
    with gateway_client(settings, {url: sick_worker() for url in settings.workers}) as gw:
        time.sleep(0.5)  # a few health rounds
        ready = gw.get("/health")
        assert ready.status_code == 503 and ready.json()["status"] == "no healthy worker"
        live = gw.get("/health", params={"probe": "live"})
        assert live.status_code == 200 and live.json()["role"] == "gateway"
        bad = gw.get("/health", params={"probe": "lively"})
        assert bad.status_code in (400, 422) and "probe" in bad.text


def test_readiness_is_200_with_a_healthy_worker(tmp_path: Path) -> None:
    with gateway_client(gateway_settings(tmp_path)) as gw:
        deadline = time.monotonic() + 10
        while gw.get("/health").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert gw.get("/health").status_code == 200
        assert gw.get("/health", params={"probe": "live"}).status_code == 200
