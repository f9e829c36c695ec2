"""The worker's HTTP layer over a fake driver: shapes, status codes, error messages."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.unit.fakes import FakeDriver, stage_reply
from tests.unit.test_engine import make_engine
from tvm.pyrovm.service import create_app


@pytest.fixture
def client() -> Iterator[TestClient]:
    def behaviour(message, sandbox):  # type: ignore[no-untyped-def]
        if message["name"] == "compile":
            return stage_reply()
        code = sandbox.files.get("main.py", b"") + sandbox.files.get("main.c", b"")
        if b"segv" in code:
            return stage_reply(status="signal", exit_code=None, signal="SIGSEGV")
        if b"fail" in code:
            return stage_reply(b"out", status="runtime_error", exit_code=3, stderr=b"err")
        if b"flood" in code:
            reply = stage_reply(b"x" * 10, status="output_limit")
            reply["stdout_truncated"] = True
            return reply
        return stage_reply(b"hello\n")

    engine, settings = make_engine(FakeDriver(behaviour))
    with TestClient(create_app(settings, engine)) as c:
        yield c


def test_piston_execute_shape(client: TestClient) -> None:
    r = client.post(
        "/api/v2/execute",
        json={"language": "py", "version": "*", "files": [{"content": "print('hello')"}]},
    )
    assert r.status_code == 200
    body = r.json()
    assert body["language"] == "python" and "compile" not in body
    run = body["run"]
    assert run["stdout"] == "hello\n" and run["output"] == "hello\n"
    assert run["code"] == 0 and run["signal"] is None and run["status"] is None
    assert run["memory"] == 3 * 1024 and run["cpu_time"] == 1 and run["wall_time"] == 2


@pytest.mark.parametrize(
    ("code", "status", "signal"),
    [("fail", "RE", None), ("segv", "SG", "SIGSEGV"), ("flood", "OL", "SIGKILL")],
)
def test_piston_statuses(client: TestClient, code: str, status: str, signal: str | None) -> None:
    r = client.post(
        "/api/v2/execute", json={"language": "python", "version": "3", "files": [{"content": code}]}
    )
    run = r.json()["run"]
    assert run["status"] == status and run["signal"] == signal and run["message"]


def test_piston_compiled_language_has_compile_stage(client: TestClient) -> None:
    r = client.post(
        "/api/v2/execute",
        json={"language": "cpp", "version": "*", "files": [{"name": "main.cpp", "content": "x"}]},
    )
    assert r.status_code == 200 and r.json()["compile"]["code"] == 0


PY = {"language": "python", "version": "*"}
FILES = {"files": [{"content": "x"}]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"version": "*", **FILES}, "language is required as a string"),
        ({"language": "", "version": "*", **FILES}, "language is required as a string"),
        ({"language": 3, "version": "*", **FILES}, "language is required as a string"),
        ({"language": "python", **FILES}, "version is required as a string"),
        (PY, "files is required as an array"),
        ({**PY, "files": {"content": "x"}}, "files is required as an array"),
        ({**PY, "files": [{"name": "x"}]}, "files[0].content is required as a string"),
        ({**PY, "files": [{"content": "x"}, "y"]}, "files[1].content is required as a string"),
        ({"language": "python", "version": "0.0.1", **FILES}, "python-0.0.1 runtime is unknown"),
        ({"language": "brainfudge", "version": "1.0.0", **FILES},
         "brainfudge-1.0.0 runtime is unknown"),
        ({**PY, "files": []}, "files must include at least one utf8 encoded file"),
        ({**PY, "files": [{"content": "eA==", "encoding": "base64"}]},
         "files must include at least one utf8 encoded file"),
        ({**PY, **FILES, "run_timeout": "1000"}, "If specified, run_timeout must be a number"),
        ({**PY, **FILES, "compile_memory_limit": True},
         "If specified, compile_memory_limit must be a number"),
        ({**PY, **FILES, "run_cpu_time": ""}, "If specified, run_cpu_time must be a number"),
        ({**PY, **FILES, "run_timeout": 10**9},
         "run_timeout cannot exceed the configured limit of 30000"),
        ({**PY, **FILES, "run_timeout": 30000.5},
         "run_timeout cannot exceed the configured limit of 30000"),
        ({**PY, **FILES, "run_memory_limit": 10**12},
         f"run_memory_limit cannot exceed the configured limit of {1024 << 20}"),
        ({**PY, **FILES, "run_timeout": -5}, "run_timeout must be non-negative"),
        ({**PY, **FILES, "run_cpu_time": -0.5}, "run_cpu_time must be non-negative"),
        ({**PY, **FILES, "run_memory_limit": -2}, "run_memory_limit must be non-negative"),
        ({**PY, **FILES, "stdin": 5}, "stdin must be a string"),
        ({**PY, **FILES, "args": [1]}, "args must be an array of strings"),
        ({**PY, "files": [{"content": "x", "name": "/abs"}]},
         "files[0].name must be a relative path, not absolute"),
        ({**PY, "files": [{"content": "x", "name": 7}]}, "files[0].name must be a string"),
    ],
)  # fmt: skip
def test_piston_bad_requests_have_pistons_messages(
    client: TestClient, body: dict, message: str
) -> None:
    r = client.post("/api/v2/execute", json=body)
    assert r.status_code == 400, r.text
    assert r.json() == {"message": message}


def test_piston_body_that_is_not_json(client: TestClient) -> None:
    r = client.post("/api/v2/execute", content=b"{nope")
    assert r.status_code == 400 and r.json() == {"message": "body is not valid JSON"}


@pytest.mark.parametrize("value", [0, None])
def test_piston_unset_limits_take_the_default(client: TestClient, value: object) -> None:
    body = {**PY, **FILES, "run_timeout": value, "compile_timeout": value,
            "run_memory_limit": value, "run_cpu_time": value}  # fmt: skip
    r = client.post("/api/v2/execute", json=body)
    assert r.status_code == 200, r.text


def test_piston_fractional_limits_and_minus_one_memory(client: TestClient) -> None:
    body = {**PY, **FILES, "run_timeout": 2500.5, "run_cpu_time": 1000.9,
            "compile_timeout": 10000, "run_memory_limit": -1,
            "compile_memory_limit": 134217728.7}  # fmt: skip
    r = client.post("/api/v2/execute", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["run"]["stdout"] == "hello\n"


def test_native_execute_and_errors(client: TestClient) -> None:
    r = client.post("/api/v1/execute", json={"language": "python", "code": "fail"})
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "runtime_error" and body["run"]["exit_code"] == 3
    r = client.post("/api/v1/execute", content=b"{not json")
    assert r.status_code == 400 and r.json()["field"] == "body"
    r = client.post("/api/v1/execute", json={"language": "python", "code": 5})
    assert r.status_code == 400 and r.json()["field"] == "code"
    r = client.post("/api/v1/execute", json={"language": "python", "code": "x", "bogus": 1})
    assert r.status_code == 400 and r.json()["field"] == "bogus"
    r = client.post(
        "/api/v1/execute",
        json={"language": "python", "code": "x", "limits": {"timeout_ms": 999999}},
    )
    assert r.status_code == 400
    assert r.json()["message"].startswith("limits.timeout_ms: must be between 1 and")


def test_form_encoded_json_is_accepted(client: TestClient) -> None:
    r = client.post(
        "/api/v1/execute",
        content=b'{"language":"bash","code":"x"}',
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200


def test_runtimes_languages_health(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from tvm.compat import piston

    monkeypatch.setattr(piston, "verified_keys", lambda catalog: {lang.key for lang in catalog})
    runtimes = client.get("/api/v2/runtimes").json()
    python = [r for r in runtimes if r["language"] == "python"]
    assert python and any("py" in r["aliases"] for r in python)
    languages = client.get("/api/v1/languages").json()
    c = next(lang for lang in languages if lang["name"] == "c")
    assert c["compiled"] and c["limits"]["run"]["max"]["memory_mb"] >= 256
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["driver"] == "fake"
