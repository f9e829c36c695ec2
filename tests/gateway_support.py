"""Helpers for gateway tests: an in-process gateway over in-process fake workers, the
databases to test against, and subprocess services for the integration tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.conftest import free_port
from tests.fakeworker import create_fake_worker
from tvm.config.settings import Settings
from tvm.pyroshell.app import create_gateway_app
from tvm.pyroshell.workers import WorkerPool

REPO = Path(__file__).resolve().parent.parent
POSTGRES_ENV = "TVM_TEST_POSTGRES_URL"


def database_urls(tmp: Path) -> Iterator[str]:
    yield f"sqlite+aiosqlite:///{tmp / 'tvm.db'}"


def postgres_url() -> str:
    url = os.environ.get(POSTGRES_ENV, "")
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set (scripts/ci-postgres.sh prints it)")
    return url


def gateway_settings(tmp: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "home": tmp,
        "workers": ["http://127.0.0.1:9"],
        "health_interval_seconds": 0.2,
        "dispatch_wait_seconds": 2,
        "log_json": False,
    }
    values.update(overrides)
    return Settings(**values)


class Routed(httpx.AsyncBaseTransport):
    """Routes each worker URL to its own in-process app (the URLs are never dialled)."""

    def __init__(self, apps: dict[str, FastAPI]) -> None:
        self.transports = {url: httpx.ASGITransport(app=app) for url, app in apps.items()}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        base = f"{request.url.scheme}://{request.url.host}:{request.url.port}"
        return await self.transports[base].handle_async_request(request)


def gateway_client(settings: Settings, workers: dict[str, FastAPI] | None = None) -> TestClient:
    """A gateway (its lifespan runs when the client is entered) over fake workers."""
    if workers is None:
        workers = {url: create_fake_worker(settings) for url in settings.workers}
    pool = WorkerPool(settings, transport=Routed(workers))
    return TestClient(create_gateway_app(settings, pool=pool))


def wait_done(client: TestClient | httpx.Client, token: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/submissions/{token}", params={"fields": "*"}).json()
        if body["status"]["id"] >= 3:
            return dict(body)
        time.sleep(0.05)
    raise AssertionError(f"submission {token} not finished after {timeout}s: {body}")


# -- subprocess services (integration tests) ---------------------------------------------
class Service:
    """A subprocess on a free loopback port, stopped (and its group killed) on exit."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str], port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                start_new_session=True,
            )  # fmt: skip

    def wait_ready(self, path: str = "/health", timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
                )
            try:
                if httpx.get(self.url + path, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"not ready after {timeout}s:\n{self.log.read_text()[-3000:]}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def start_fake_worker(tmp: Path, journal: Path, port: int | None = None) -> Service:
    port = port or free_port()
    argv = [
        sys.executable,
        "-m",
        "tests.fakeworker",
        "--port",
        str(port),
        "--journal",
        str(journal),
    ]
    service = Service(argv, tmp / f"fakeworker-{port}.log", dict(os.environ), port)
    service.wait_ready()
    return service


def start_gateway(tmp: Path, workers: list[str], **env: str) -> Service:
    port = free_port()
    full_env = dict(os.environ, TVM_HOME=str(tmp), TVM_WORKERS=",".join(workers),
                    TVM_LOG_JSON="false", TVM_HEALTH_INTERVAL_SECONDS="0.3", **env)  # fmt: skip
    full_env["TVM_WORKERS"] = "[" + ",".join(f'"{url}"' for url in workers) + "]"
    argv = [sys.executable, "-m", "tvm.cli", "start", "--role", "gateway", "--port", str(port)]
    return Service(argv, tmp / f"gateway-{port}.log", full_env, port)
