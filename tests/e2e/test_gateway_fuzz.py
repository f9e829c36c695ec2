"""Schemathesis against the running gateway (a real ``tvm start --role gateway`` in
front of a fake worker process): no generated input may cause a 5xx."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.gateway_support import Service, start_fake_worker, start_gateway

EXAMPLES = 30


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("fuzz")
    worker = start_fake_worker(tmp, Path(tmp / "journal"))
    service = start_gateway(tmp, [worker.url], TVM_DISPATCH_WAIT_SECONDS="5")
    try:
        service.wait_ready()
        yield service
    finally:
        service.kill(signal.SIGTERM)
        worker.kill()


@pytest.mark.slow
def test_no_server_errors(gateway: Service) -> None:
    """Every operation of the schema, EXAMPLES generated cases each (Schemathesis'
    pytest plugin does not run under this pytest, so Hypothesis drives it directly)."""
    schema = schemathesis.openapi.from_url(f"{gateway.url}/openapi.json")
    failures: list[str] = []
    calls = 0
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15

    for operation in operations:

        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(case=operation.as_strategy())
        def check(case: schemathesis.Case) -> None:
            nonlocal calls
            calls += 1
            response = case.call(timeout=60)
            if response.status_code >= 500 and response.status_code != 503:
                failures.append(f"{case.method} {case.formatted_path} -> "
                                f"{response.status_code}: {response.text[:300]}")  # fmt: skip

        check()
    assert calls >= len(operations) * 5
    assert not failures, "\n".join(failures[:10])
