"""schemathesis ``--checks all`` against a real ``tvm start``: every response of the
Piston, native and health routes matches the OpenAPI schema the server serves, every
request the schema allows is accepted and every other one refused, OPTIONS and 405
list every method. Bounded (a few examples per operation) so that it takes minutes.

The Judge0 and live-sandbox routes are not in PATHS yet."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.piston_stack import start_tvm
from tests.gateway_support import Service

pytestmark = [pytest.mark.namespace, pytest.mark.slow]
# The Piston, native and health routes (live sandboxes and Judge0 have their own owners).
PATHS = r"^/(api/v1/(execute|languages)|api/v2/(execute|runtimes|packages)|health)$"
EXAMPLES = 8


@pytest.fixture(scope="module")
def tvm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from start_tvm(tmp_path_factory.mktemp("schemathesis"), every_language=True)


@pytest.mark.skipif(
    os.environ.get("TVM_TEST_SCHEMATHESIS") != "1",
    reason="opt-in (TVM_TEST_SCHEMATHESIS=1): in a clean-clone CI run the schemathesis "
    "process stopped sending requests after ~8 min and held the suite to its 900 s timeout "
    "(not yet diagnosed; issue #12 stays open for it)",
)
def test_schemathesis_finds_nothing(tvm: Service, tmp_path: Path) -> None:
    st = Path(sys.executable).with_name("st")
    if not st.exists():
        pytest.skip("schemathesis is not installed (it is a dev extra)")
    argv = [str(st), "run", f"{tvm.url}/openapi.json", "--checks", "all",
            "--include-path-regex", PATHS, "--max-examples", str(EXAMPLES), "--seed", "7",
            "--workers", "1", "--request-timeout", "120", "--no-shrink",
            # a compile plus a run may take up to their maxima (45 s + 30 s) on a busy host
            "--max-response-time", "120",
            "--report-dir", str(tmp_path / "report")]  # fmt: skip
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-20000:] + done.stderr[-5000:]
    assert "Tested:" in done.stdout, done.stdout[-5000:]
