"""A lone UTF-16 surrogate in any text field is a 400 (Judge0: 422) naming the field,
never a 500: worker and gateway, native, Piston and (their own check) Judge0 routes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.gateway_support import gateway_client, gateway_settings
from tests.unit.fakes import FakeDriver, echo_behaviour
from tests.unit.test_engine import make_engine
from tvm.pyrovm.service import create_app
from tvm.utils.textguard import PROBLEM, unencodable_field

S = "\\ud800"  # as JSON spells it

NATIVE = [
    (f'{{"language": "python", "code": "x", "stdin": "a{S}"}}', "stdin"),
    (f'{{"language": "python", "files": [{{"content": "print(1)"}}, {{"content": "{S}"}}]}}',
     "files[1].content"),
    (f'{{"language": "python", "files": [{{"name": "{S}.py", "content": "x"}}]}}',
     "files[0].name"),
    (f'{{"language": "py{S}", "code": "x"}}', "language"),
    (f'{{"language": "python", "code": "x", "args": ["ok", "{S}"]}}', "args[1]"),
    (f'{{"language": "python", "code": "x", "tests": [{{"stdin": "{S}"}}]}}', "tests[0].stdin"),
    (f'{{"language": "python", "code": "x", "{S}": 1}}', "\\ud800"),
]  # fmt: skip
PISTON = [
    (f'{{"language": "python", "version": "*", "files": [{{"content": "x"}}], "stdin": "{S}"}}',
     "stdin"),
    (f'{{"language": "python", "version": "*", "files": [{{"content": "{S}"}}]}}',
     "files[0].content"),
    (f'{{"language": "python", "version": "{S}", "files": [{{"content": "x"}}]}}', "version"),
]  # fmt: skip


def test_a_paired_surrogate_is_fine_and_a_lone_one_is_found() -> None:
    assert unencodable_field({"a": ["\U0001f600"]}) is None
    assert unencodable_field({"a": [{"b": "\ud800"}]}) == "a[0].b"


@pytest.fixture
def worker() -> Iterator[TestClient]:
    engine, settings = make_engine(FakeDriver(echo_behaviour))
    with TestClient(create_app(settings, engine)) as c:
        yield c


@pytest.mark.parametrize(("body", "field"), NATIVE)
def test_worker_native(worker: TestClient, body: str, field: str) -> None:
    r = worker.post("/api/v1/execute", content=body.encode())
    assert r.status_code == 400, r.text
    assert r.json() == {"field": field, "message": f"{field}: {PROBLEM}"}


@pytest.mark.parametrize(("body", "field"), PISTON)
def test_worker_piston(worker: TestClient, body: str, field: str) -> None:
    r = worker.post("/api/v2/execute", content=body.encode())
    assert r.status_code == 400, r.text
    assert r.json() == {"message": f"{field} {PROBLEM}"}


def test_worker_emoji_still_runs(worker: TestClient) -> None:
    r = worker.post("/api/v1/execute", content=b'{"language": "python", "code": "x", '
                    b'"stdin": "\\ud83d\\ude00"}')  # fmt: skip
    assert r.status_code == 200 and r.json()["run"]["stdout"] == "\U0001f600"


def test_gateway_every_api(tmp_path: Path) -> None:
    with gateway_client(gateway_settings(tmp_path)) as gw:
        for body, field in NATIVE:
            r = gw.post("/api/v1/execute", content=body.encode())
            assert r.status_code == 400 and r.json()["field"] == field, r.text
        for body, field in PISTON:
            r = gw.post("/api/v2/execute", content=body.encode())
            assert r.status_code == 400 and r.json() == {"message": f"{field} {PROBLEM}"}
        for field in ("source_code", "stdin", "expected_output"):
            others = {"source_code": "x", "stdin": "x", "expected_output": "x"}
            others[field] = S
            fields = ", ".join(f'"{k}": "{v}"' for k, v in others.items())
            r = gw.post(
                "/submissions?wait=true", content=f'{{"language_id": 71, {fields}}}'.encode()
            )
            assert r.status_code == 422 and "surrogate" in r.json()[field][0], r.text
