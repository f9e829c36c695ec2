"""Accepted work survives crashes, for real: ``tvm start`` processes running real
sandboxes, async Judge0 submissions with callbacks to a receiver on loopback.

* The whole service SIGKILLed with submissions running and queued, then started
  again: every one completes with its own output, the interrupted ones say they
  took two starts, and each callback arrives exactly once.
* Two gateway replicas on one PostgreSQL: both accept work, one is SIGKILLed while
  it runs some; the other finishes them once its leases expire. Every submission
  completes, each result and callback exactly once.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port, namespace_unavailable, require_languages
from tests.gateway_support import POSTGRES_ENV, Service
from tvm.config.settings import Settings
from tvm.pyroshell.store import Store

pytestmark = [pytest.mark.namespace, pytest.mark.slow]

SLEEPER = "import time\ntime.sleep({sleep})\nprint('done-{tag}')\n"


@pytest.fixture(autouse=True)
def _images() -> None:
    settings = Settings()
    reason = namespace_unavailable(settings)
    if reason:
        pytest.skip(reason)
    require_languages(settings, "python@3.11.2")


class Receiver:
    """Judge0 callbacks: records the token of every PUT it gets."""

    def __init__(self) -> None:
        self.tokens: collections.Counter[str] = collections.Counter()
        self.bodies: dict[str, dict[str, Any]] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.tokens[body["token"]] += 1
                receiver.bodies[body["token"]] = body
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/judge0"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, tokens: list[str], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not all(self.tokens[token] for token in tokens):
            if time.monotonic() > deadline:
                missing = [token for token in tokens if not self.tokens[token]]
                raise AssertionError(f"{len(missing)} callbacks never came")
            time.sleep(0.1)
        time.sleep(1.0)  # a duplicate would come now


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    try:
        yield found
    finally:
        found.server.shutdown()
        found.server.server_close()


def start_tvm(tmp: Path, database: str, port: int, **env: str) -> Service:
    # The callback receiver is on loopback, which callbacks may reach only when allowed.
    full = dict(os.environ, TVM_DATABASE_URL=database, TVM_LOG_JSON="false",
                TVM_POOL_SIZE="0", TVM_POOL_LANGUAGES="[]",
                TVM_OUTBOUND_ALLOW='["127.0.0.1/32"]', **env)  # fmt: skip
    argv = [sys.executable, "-m", "tvm.cli", "start", "--port", str(port)]
    service = Service(argv, tmp / f"tvm-{port}.log", full, port)
    service.wait_ready(timeout=90)
    return service


def submit(url: str, callback: str, n: int, sleep: float, tag: str) -> list[str]:
    tokens = []
    for i in range(n):
        body = {"source_code": SLEEPER.format(sleep=sleep, tag=f"{tag}-{i}"),
                "language_id": 71, "callback_url": callback}  # fmt: skip
        reply = httpx.post(f"{url}/submissions", json=body, timeout=30)
        assert reply.status_code == 201, reply.text
        tokens.append(reply.json()["token"])
    return tokens


def statuses(url: str, tokens: list[str]) -> dict[str, dict[str, Any]]:
    reply = httpx.get(f"{url}/submissions/batch", timeout=30,
                      params={"tokens": ",".join(tokens), "fields": "token,status,stdout,message"})  # fmt: skip
    return {sub["token"]: sub for sub in reply.json()["submissions"]}


def wait_for(url: str, tokens: list[str], done: int, timeout: float = 120) -> dict[str, Any]:
    """Until at least ``done`` of ``tokens`` are finished (status >= 3)."""
    deadline = time.monotonic() + timeout
    while True:
        found = statuses(url, tokens)
        if sum(sub["status"]["id"] >= 3 for sub in found.values()) >= done:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not {done} finished after {timeout}s: {found}")
        time.sleep(0.2)


def wait_running(url: str, tokens: list[str], running: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        found = statuses(url, tokens)
        if sum(sub["status"]["id"] == 2 for sub in found.values()) >= running:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not {running} running after {timeout}s: {found}")
        time.sleep(0.05)


def stored(database: str, tokens: list[str]) -> dict[str, dict[str, Any]]:
    async def read() -> dict[str, dict[str, Any]]:
        db = Store(database)
        try:
            return await db.get_many(tokens)
        finally:
            await db.close()

    return asyncio.run(read())


def check_completed(url: str, tokens: list[str], tag: str) -> None:
    found = wait_for(url, tokens, len(tokens))
    for i, token in enumerate(tokens):
        sub = found[token]
        assert sub["status"]["id"] == 3, sub
        assert sub["stdout"] == f"done-{tag}-{i}\n", sub


def test_service_killed_with_running_and_queued_work(tmp_path: Path, receiver: Receiver) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path / 'tvm.db'}"
    port = free_port()
    env = {"TVM_DISPATCHER_CONCURRENCY": "3"}
    service = start_tvm(tmp_path, database, port, **env)
    try:
        tokens = submit(service.url, receiver.url, 9, 2.0, "kill")
        wait_running(service.url, tokens, 3)
        service.kill(signal.SIGKILL)  # three running, six queued, nothing finished
        before = stored(database, tokens)
        interrupted = {t for t, row in before.items() if row["status_id"] == 2}
        assert len(interrupted) == 3 and all(r["status_id"] < 3 for r in before.values())
        service = start_tvm(tmp_path, database, port, **env)
        check_completed(service.url, tokens, "kill")
        receiver.wait(tokens)
    finally:
        service.kill(signal.SIGTERM)
    rows = stored(database, tokens)
    for token, row in rows.items():
        expected = 2 if token in interrupted else 1
        assert row["attempts"] == expected and row["result"]["attempts"] == expected, row
    assert set(receiver.tokens) == set(tokens) and max(receiver.tokens.values()) == 1
    assert all(receiver.bodies[t]["status"]["id"] == 3 for t in tokens)
    stdout = base64.b64decode(receiver.bodies[tokens[0]]["stdout"]).decode()
    assert stdout == "done-kill-0\n"


@pytest.fixture
def postgres() -> Iterator[str]:
    """A database of its own on the test server (other suites share ``tvm_test``)."""
    url = os.environ.get(POSTGRES_ENV, "")
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set (scripts/ci-postgres.sh prints it)")
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    name = f"tvm_replicas_{uuid.uuid4().hex[:8]}"

    async def admin(statement: str) -> None:
        engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(text(statement))
        finally:
            await engine.dispose()

    try:
        asyncio.run(admin(f"CREATE DATABASE {name}"))
    except Exception as exc:
        pytest.skip(f"cannot create a test database (scripts/ci-postgres.sh grants it): {exc}")
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def test_two_replicas_one_killed(tmp_path: Path, receiver: Receiver, postgres: str) -> None:
    env = {"TVM_DISPATCHER_CONCURRENCY": "2", "TVM_LEASE_SECONDS": "3"}
    ports = [free_port(), free_port()]
    a = start_tvm(tmp_path, postgres, ports[0], TVM_UID_BASE="60400", TVM_UID_COUNT="200", **env)
    b = start_tvm(tmp_path, postgres, ports[1], TVM_UID_BASE="60600", TVM_UID_COUNT="200", **env)
    try:
        tokens = []
        for i in range(5):  # both accept work
            tokens += submit(a.url, receiver.url, 1, 2.0, f"r-{2 * i}")
            tokens += submit(b.url, receiver.url, 1, 2.0, f"r-{2 * i + 1}")
        wait_running(a.url, tokens, 4)
        owner_a = f"{socket.gethostname()}:{ports[0]}"
        held = {t for t, row in stored(postgres, tokens).items()
                if row["status_id"] == 2 and row["lease_owner"] == owner_a}  # fmt: skip
        a.kill(signal.SIGKILL)
        assert held, "replica a was running nothing when it was killed"
        found = wait_for(b.url, tokens, len(tokens))
        for i, token in enumerate(tokens):
            assert found[token]["status"]["id"] == 3, found[token]
            tag = f"r-{i}-0"
            assert found[token]["stdout"] == f"done-{tag}\n", found[token]
        receiver.wait(tokens)
    finally:
        a.kill(signal.SIGTERM)
        b.kill(signal.SIGTERM)
    rows = stored(postgres, tokens)
    for token in held:
        assert rows[token]["attempts"] == 2, rows[token]
    assert all(row["lease_owner"] is None for row in rows.values())
    assert set(receiver.tokens) == set(tokens) and max(receiver.tokens.values()) == 1
