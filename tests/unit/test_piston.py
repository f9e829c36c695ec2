"""Piston v2 translation: limits as Piston reads them, and a failed compile repeated
as ``run`` (through the worker app over a fake driver)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.unit.fakes import FakeDriver, echo_behaviour
from tests.unit.test_engine import make_engine
from tvm.api import ExecutionResponse, StageResult
from tvm.compat import piston
from tvm.config.catalog import load_catalog
from tvm.pyrovm.service import create_app

BASE: dict[str, Any] = {"language": "py", "version": "3", "files": [{"content": "print(1)"}]}


def test_fractions_are_truncated_as_piston_does() -> None:
    request = piston.parse(
        {**BASE, "run_timeout": 2500.9, "run_cpu_time": 1000.5, "compile_timeout": 7000.2,
         "run_memory_limit": 134217728.7, "compile_memory_limit": 1}, load_catalog(),
    )  # fmt: skip
    assert request.limits.timeout_ms == 2500 and request.limits.cpu_time_ms == 1000
    assert request.compile_limits.timeout_ms == 7000
    # 134217728.7 bytes -> 134217 kB of 1000 bytes -> 128 MiB (rounded up to whole MiB)
    assert request.limits.memory_mb == 128 and request.compile_limits.memory_mb == 1


@pytest.mark.parametrize("unset", [0, 0.0, None])
def test_unset_values_take_the_defaults(unset: object) -> None:
    request = piston.parse(
        {**BASE, "run_timeout": unset, "run_memory_limit": unset}, load_catalog()
    )
    assert request.limits.timeout_ms is None and request.limits.memory_mb is None


@pytest.mark.parametrize(("stdin", "written"), [
    (None, "\n"), ("", "\n"), ("a", "a\n"), ("a\n", "a\n"), ("a\n\n", "a\n\n")])  # fmt: skip
def test_stdin_ends_with_a_newline_as_in_piston(stdin: str | None, written: str) -> None:
    assert piston.parse({**BASE, "stdin": stdin}, load_catalog()).stdin == written


def test_interactive_stdin_is_as_written() -> None:
    assert piston.parse({**BASE, "stdin": "a"}, load_catalog(), interactive=True).stdin == "a"
    assert piston.parse(BASE, load_catalog(), interactive=True).stdin == ""


def test_the_request_names_the_resolved_runtime() -> None:
    catalog = load_catalog()
    request = piston.parse(BASE, catalog)
    newest = catalog.resolve("py", "3")
    assert (request.language, request.version) == (newest.name, newest.version)
    assert request.files and request.files[0].name is None  # the language's source file


def test_unknown_encodings_are_utf8_as_in_piston() -> None:
    request = piston.parse(
        {**BASE, "files": [{"content": "x", "encoding": "latin1"}, {"content": "y"}]},
        load_catalog(),
    )
    assert request.files and [f.encoding for f in request.files] == ["utf8", "utf8"]


@pytest.mark.parametrize("memory", [-1, -0.5])
def test_minus_one_memory_is_the_default(memory: float) -> None:
    request = piston.parse({**BASE, "compile_memory_limit": memory}, load_catalog())
    assert request.compile_limits.memory_mb is None


def _stage(status: str, **fields: Any) -> StageResult:
    values: dict[str, Any] = {"stdout": "", "stderr": "", "exit_code": None, "signal": None,
                              "cpu_ms": 1, "wall_ms": 2, "memory_kb": 3, "truncated": False}  # fmt: skip
    values.update(fields)
    return StageResult(status=status, **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("stage", "status", "signal", "message"),
    [
        (_stage("runtime_error", exit_code=3), "RE", None, "Exited with error status 3"),
        (_stage("signal", signal="SIGSEGV"), "SG", "SIGSEGV", "Caught fatal signal 11"),
        (_stage("memory_limit", signal="SIGKILL"), "SG", "SIGKILL", "Caught fatal signal 9"),
        (_stage("timeout", signal="SIGKILL"), "TO", "SIGKILL", "Time limit exceeded"),
        (_stage("output_limit", stdout="x" * 9), "OL", "SIGKILL", "stdout length exceeded"),
        (_stage("output_limit", stderr="x" * 9), "EL", "SIGKILL", "stderr length exceeded"),
        (_stage("ok", exit_code=0), None, None, None),
    ],
)
def test_stage_status_signal_and_message(
    stage: StageResult, status: str | None, signal: str | None, message: str | None
) -> None:
    body = piston.from_native(
        ExecutionResponse(language="python", version="3", status=stage.status, run=stage)
    )
    assert (body["run"]["status"], body["run"]["signal"], body["run"]["message"]) == (
        status, signal, message,
    )  # fmt: skip


@pytest.fixture
def client() -> Iterator[TestClient]:
    engine, settings = make_engine(FakeDriver(echo_behaviour))
    with TestClient(create_app(settings, engine)) as c:
        yield c


def test_a_failed_compile_is_repeated_as_run(client: TestClient) -> None:
    r = client.post("/api/v2/execute", json={
        "language": "c", "version": "*", "files": [{"content": "SYNTAX"}]})  # fmt: skip
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["compile"]["code"] == 1 and body["compile"]["status"] == "RE"
    assert body["run"] == body["compile"]


def test_a_good_compile_has_its_own_run(client: TestClient) -> None:
    r = client.post("/api/v2/execute", json={
        "language": "c", "version": "*", "files": [{"content": "ok"}], "stdin": "in",
        "args": ["a"]})  # fmt: skip
    body = r.json()
    assert body["compile"]["code"] == 0 and body["run"] != body["compile"]
    assert body["run"]["code"] == 0
