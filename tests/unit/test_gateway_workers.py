"""Routing to workers, the native and Piston APIs through the gateway, keys, limits,
callbacks and metrics (fake workers in process)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.fakeworker import create_fake_worker
from tests.gateway_support import gateway_client, gateway_settings, wait_done
from tests.unit.fakes import FakeDriver, stage_reply
from tests.unit.test_engine import make_engine
from tvm.pyroshell.auth import hash_secret
from tvm.pyrovm.service import create_app

A, B = "http://127.0.0.1:9", "http://127.0.0.1:10"

NATIVE = {"language": "python", "code": "out hi\nerr e", "stdin": "x", "args": ["1"]}
PISTON = {"language": "py", "version": "3.11", "files": [{"content": "exit 2"}]}


def fake_program(message: dict[str, Any], sandbox: Any) -> dict[str, Any]:
    code = b"".join(sandbox.files.values())
    if b"exit 2" in code:
        return stage_reply(b"out", status="runtime_error", exit_code=2, stderr=b"err")
    return stage_reply(b"hi\n", stderr=b"e\n")


def test_native_and_piston_answers_equal_the_workers(tmp_path: Path) -> None:
    """The real worker app (over a fake driver) and the gateway in front of it answer alike."""
    engine, worker_settings = make_engine(FakeDriver(fake_program))
    worker = create_app(worker_settings, engine)
    settings = gateway_settings(tmp_path)
    with TestClient(worker) as direct, gateway_client(settings, {A: worker}) as gw:
        for path, body in (("/api/v1/execute", NATIVE), ("/api/v2/execute", PISTON)):
            assert gw.post(path, json=body).json() == direct.post(path, json=body).json()
        bad = [
            ("/api/v1/execute", {"language": "python", "code": "x", "limits": {"memory_mb": 10**6}}),
            ("/api/v1/execute", {"language": "cobol-9000", "code": "x"}),
            ("/api/v2/execute", {"language": "py", "version": "*", "files": [],
                                 "run_memory_limit": 10**12}),
            ("/api/v2/execute", {"language": "py", "version": "*",
                                 "files": [{"content": "x"}], "run_timeout": 10**9}),
            ("/api/v1/execute", {"language": "python", "files": [{"name": "../x", "content": ""}]}),
        ]  # fmt: skip
        for path, body in bad:
            got, want = gw.post(path, json=body), direct.post(path, json=body)
            assert (got.status_code, got.json()) == (want.status_code, want.json()), body
            assert 400 <= got.status_code < 500
        assert gw.get("/api/v2/runtimes").json() == direct.get("/api/v2/runtimes").json()


def test_request_id_reaches_the_worker(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path)
    seen: list[str] = []
    worker = create_fake_worker(settings)

    @worker.middleware("http")
    async def record(request: Any, call_next: Any) -> Any:
        seen.append(request.headers.get("x-request-id", ""))
        return await call_next(request)

    with gateway_client(settings, {A: worker}) as gw:
        reply = gw.post("/api/v1/execute", json=NATIVE, headers={"X-Request-ID": "abc123"})
        assert reply.headers["X-Request-ID"] == "abc123"
    assert "abc123" in seen


class Refusing(FastAPI):
    """A worker that is healthy but refuses every job (429) and counts the attempts."""

    def __init__(self, status: int = 429) -> None:
        super().__init__()
        self.attempts = 0

        @self.get("/health")
        async def health() -> dict[str, Any]:
            return {"status": "ok", "admitted": 0, "sandboxes": {"sandboxes": 0}}

        @self.post("/api/v1/execute")
        async def execute() -> Any:
            from fastapi.responses import JSONResponse

            self.attempts += 1
            return JSONResponse({"message": "full"}, status_code=status,
                                headers={"Retry-After": "1"})  # fmt: skip


def test_refused_job_goes_to_another_worker(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path, workers=[A, B])
    refusing, good = Refusing(), create_fake_worker(settings)
    with gateway_client(settings, {A: refusing, B: good}) as gw:
        for _ in range(3):
            assert gw.post("/api/v1/execute", json=NATIVE).json()["status"] == "ok"
    assert len([e for e in good.state.executions if e[0] == "start"]) == 3


def test_all_workers_refusing_is_503_with_retry_after(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path, dispatch_wait_seconds=0.3)
    with gateway_client(settings, {A: Refusing(503)}) as gw:
        reply = gw.post("/api/v1/execute", json=NATIVE)
    assert reply.status_code == 503 and reply.headers["Retry-After"]


class Dying(httpx.AsyncBaseTransport):
    """Healthy, but the connection breaks after a job was sent (the worker died)."""

    def __init__(self) -> None:
        self.sent = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health":
            return httpx.Response(200, json={"admitted": 0, "sandboxes": {}})
        self.sent += 1
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")


def test_job_lost_with_its_worker_is_run_again_then_reported(tmp_path: Path) -> None:
    """A request whose worker dies mid-run is run again, ``max_attempts`` starts in all,
    then ends as internal_error (sync) or 13 (async) saying so."""
    import asyncio

    from tvm.pyroshell.app import create_gateway_app
    from tvm.pyroshell.store import Store
    from tvm.pyroshell.workers import WorkerPool

    settings = gateway_settings(tmp_path, max_attempts=2)
    dying = Dying()
    app = create_gateway_app(settings, pool=WorkerPool(settings, transport=dying))
    with TestClient(app) as gw:
        native = gw.post("/api/v1/execute", json=NATIVE).json()
        assert native["status"] == "internal_error" and "went away" in native["message"]
        assert "interrupted 2 time(s)" in native["message"]
        piston = gw.post("/api/v2/execute", json=PISTON).json()
        assert piston["run"]["status"] == "XX"
        body = {"source_code": "out x", "language_id": 71}
        token = gw.post("/submissions", json=body).json()["token"]
        done = wait_done(gw, token)
        assert done["status"]["id"] == 13 and "interrupted 2 time(s)" in done["message"]
    assert dying.sent == 2 + 2 + 2

    async def stored() -> dict[str, Any] | None:
        db = Store.from_settings(settings)
        try:
            return await db.get(token)
        finally:
            await db.close()

    row = asyncio.run(stored())
    assert row is not None and row["attempts"] == 2 and row["result"]["attempts"] == 2


def test_least_loaded_worker_is_chosen(tmp_path: Path) -> None:
    from tvm.pyroshell.http_worker import HttpWorker
    from tvm.pyroshell.workers import Worker, WorkerPool

    settings = gateway_settings(tmp_path, workers=[])
    pool = WorkerPool(settings)

    def worker(url: str, **state: Any) -> Worker:
        return Worker(HttpWorker(url, settings, pool.link), **state)

    pool.workers = {
        "a": worker("a", healthy=True, admitted=5),
        "b": worker("b", healthy=True, admitted=1, inflight=2),
        "c": worker("c", healthy=False),
    }
    assert [w.url for w in pool.healthy()] == ["b", "a"]


# -- keys and limits ---------------------------------------------------------------------
def add_key(gw: TestClient, secret: str, **limits: Any) -> None:
    values = {"name": "t", "prefix": secret[:8], "secret_hash": hash_secret(secret), **limits}
    gw.portal.call(gw.app.state.gateway.store.add_key, values)  # type: ignore[union-attr,attr-defined]


def test_keys_required_when_configured(tmp_path: Path) -> None:
    with gateway_client(gateway_settings(tmp_path, auth_required=True)) as gw:
        add_key(gw, "tvm_secret1")
        assert gw.post("/api/v1/execute", json=NATIVE).status_code == 401
        assert gw.get("/languages").status_code == 401
        wrong = gw.post("/api/v1/execute", json=NATIVE, headers={"X-API-Key": "tvm_nope"})
        assert wrong.status_code == 401 and "unknown" in wrong.json()["message"]
        ok = gw.post("/api/v1/execute", json=NATIVE, headers={"X-API-Key": "tvm_secret1"})
        assert ok.status_code == 200
        judge = gw.post("/submissions?wait=true", json={"source_code": "out", "language_id": 71},
                        headers={"X-Auth-Token": "tvm_secret1"})  # fmt: skip
        assert judge.status_code == 201
        assert gw.get("/health").status_code == 200  # probes need no key


def test_keys_off_by_default_on_loopback(tmp_path: Path) -> None:
    with gateway_client(gateway_settings(tmp_path)) as gw:
        add_key(gw, "tvm_secret2")
        assert gw.post("/api/v1/execute", json=NATIVE).status_code == 200


def test_rate_limit_is_429_with_retry_after(tmp_path: Path) -> None:
    with gateway_client(gateway_settings(tmp_path, auth_required=True)) as gw:
        add_key(gw, "tvm_slow", rate_per_minute=1, burst=2)
        headers = {"X-API-Key": "tvm_slow"}
        codes = [gw.post("/api/v1/execute", json=NATIVE, headers=headers) for _ in range(3)]
        assert [r.status_code for r in codes] == [200, 200, 429]
        assert int(codes[2].headers["Retry-After"]) >= 1
        judge = gw.post("/submissions", json={"source_code": "out", "language_id": 71},
                        headers=headers)  # fmt: skip
        assert judge.status_code == 429 and "rate limit" in judge.json()["error"]


def test_concurrency_quota(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path, auth_required=True, dispatch_wait_seconds=5)
    with gateway_client(settings, {A: Refusing()}) as gw:  # nothing ever finishes
        add_key(gw, "tvm_busy", max_concurrent=2)
        headers = {"X-API-Key": "tvm_busy"}
        body = {"source_code": "out", "language_id": 71}
        codes = [gw.post("/submissions", json=body, headers=headers).status_code for _ in range(3)]
        assert codes == [201, 201, 429]


def test_full_queue_is_503_with_retry_after(tmp_path: Path) -> None:
    settings = gateway_settings(
        tmp_path, max_queue_size=2, dispatch_wait_seconds=5, dispatcher_concurrency=1
    )
    with gateway_client(settings, {A: Refusing()}) as gw:
        body = {"source_code": "out", "language_id": 71}
        codes = [gw.post("/submissions", json=body) for _ in range(5)]
        statuses = [r.status_code for r in codes]
        assert statuses[-1] == 503 and statuses.count(201) >= 2
        assert codes[-1].json() == {"error": "queue is full"} and codes[-1].headers["Retry-After"]


def test_metrics(tmp_path: Path) -> None:
    with gateway_client(gateway_settings(tmp_path)) as gw:
        gw.post("/api/v1/execute", json=NATIVE)
        text = gw.get("/metrics").text
    for name in ("tvm_http_requests_total", "tvm_http_request_duration_seconds_bucket",
                 "tvm_executions_total", "tvm_queue_depth", "tvm_worker_up"):  # fmt: skip
        assert name in text
    assert 'route="/api/v1/execute"' in text


def test_the_embedded_worker_answers_as_a_worker_process_does(tmp_path: Path) -> None:
    """``--workers 0``: the engine in the gateway's own process, no HTTP hop, same answers."""
    from tvm.pyroshell.app import create_gateway_app
    from tvm.pyroshell.embedded import EmbeddedWorker
    from tvm.pyroshell.workers import WorkerPool

    engine, worker_settings = make_engine(FakeDriver(fake_program))
    worker = create_app(worker_settings, engine)
    settings = gateway_settings(tmp_path, workers=[])
    local_engine, _ = make_engine(FakeDriver(fake_program))
    pool = WorkerPool(settings, embedded=EmbeddedWorker(settings, engine=local_engine))
    with TestClient(worker) as direct, TestClient(create_gateway_app(settings, pool=pool)) as gw:
        for path, body in (("/api/v1/execute", NATIVE), ("/api/v2/execute", PISTON)):
            assert gw.post(path, json=body).json() == direct.post(path, json=body).json()
        for path in ("/api/v2/runtimes", "/api/v1/languages"):
            assert gw.get(path).json() == direct.get(path).json()
        health = gw.get("/health").json()
        assert [w["url"] for w in health["workers"]] == ["embedded"]
        assert health["workers"][0]["healthy"] and health["workers"][0]["driver"] == "fake"
        assert health["embedded"]["admitted"] == 0
        assert "tvm_worker_executions_total" in gw.get("/metrics").text
        # A full engine refuses like a worker's 429: the gateway answers 503, not a crash.
        local_engine.settings.max_concurrent_requests = 0
        refused = gw.post("/api/v1/execute", json=NATIVE)
        assert refused.status_code == 503 and "retry-after" in refused.headers
    assert local_engine.sandboxes.closed  # the gateway's stop closed the engine
