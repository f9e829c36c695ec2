"""schemathesis ``--checks all`` against a real ``tvm start``, run as a user runs it
from the repository root: every response of the Piston, native, Judge0, packages,
health and live-sandbox routes matches the schema the server serves, every request
it allows is accepted and every other one refused, OPTIONS and 405 list every method.

The only settings are those of the repository's ``schemathesis.toml``, which a run
from the root picks up on its own: time bounds (a request's timeout and the
response time it may take, no coverage phase for the two execute routes) and
Judge0's two state-dependent 400s. No other answer is excused: the live routes say
409 for what the sandbox's state refuses (one that ended on its own included: the
stateful phase creates sandboxes that live 1 second and calls them after), and every
status a route sends is in its schema.

Bounded: a time budget for the whole run (``--max-time``, shared by the phases; the
fuzzing and stateful phases go on until it is spent) and a few examples per operation.
``make test`` runs it with the default budget (about 4 minutes, ~2,000-4,000 cases by the
host's load); ``make fuzz`` is the deep run, ``TVM_FUZZ_SECONDS=900`` (about 9,000 cases
on an idle host); ``TVM_FUZZ_SEED`` picks another seed.

The live sandboxes it creates (``/api/v1/sandboxes``)
live briefly (``LIVE``: a short default and maximum lifetime, which the served schema
then states), so a command's event stream or a watch ends with its sandbox, and
little memory; what is left at the end goes with the server, whose stop checks for
leftovers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Server
from tests.e2e.piston_stack import start_tvm

pytestmark = [pytest.mark.namespace, pytest.mark.slow, pytest.mark.fuzz]
REPO = Path(__file__).resolve().parents[2]
EXAMPLES = 8
BUDGET_S = int(os.environ.get("TVM_FUZZ_SECONDS", "210"))  # the whole run
SEED = os.environ.get("TVM_FUZZ_SEED", "7")
REQUEST_TIMEOUT_S = 150  # schemathesis.toml's request-timeout
LIVE = {"TVM_LIVE_TIMEOUT_SECONDS": "15", "TVM_LIVE_MAX_TIMEOUT_SECONDS": "30",
        "TVM_LIVE_MEMORY_MB": "128", "TVM_LIVE_MAX_MEMORY_MB": "256"}  # fmt: skip
DELETE_ON = {"TVM_JUDGE0_ENABLE_DELETE": "true"}  # Judge0's DELETE all the way, not only its 400


@pytest.fixture(scope="module")
def tvm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from start_tvm(
        tmp_path_factory.mktemp("schemathesis"), every_language=True, **LIVE, **DELETE_ON
    )


def test_schemathesis_finds_nothing(tvm: Server, tmp_path: Path) -> None:
    st = Path(sys.executable).with_name("st")
    if not st.exists():
        pytest.skip("schemathesis is not installed (it is a dev extra)")
    assert (REPO / "schemathesis.toml").is_file()
    argv = [str(st), "run", "--checks", "all", f"{tvm.url}/openapi.json",
            "--max-examples", str(EXAMPLES), "--seed", SEED,
            "--workers", "1", "--no-shrink", "--max-time", str(BUDGET_S),
            "--report-dir", str(tmp_path / "report")]  # fmt: skip
    # The budget is checked between requests: one last request may run to its timeout.
    limit = BUDGET_S + 2 * REQUEST_TIMEOUT_S + 60
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=limit)
    assert done.returncode == 0, done.stdout[-20000:] + done.stderr[-5000:]
    loaded = re.search(r"Configuration: +(\S+)", done.stdout)  # found on its own
    assert loaded and Path(loaded.group(1)) == REPO / "schemathesis.toml", done.stdout[:3000]
    selected = re.search(r"Selected: (\d+)/\d+", done.stdout)
    tested = re.search(r"Tested: (\d+)", done.stdout)
    assert selected and tested, done.stdout[-5000:]
    assert tested.group(1) == selected.group(1), done.stdout[-5000:]  # none left out


@pytest.mark.parametrize("operation", ["POST /api/v1/execute", "POST /api/v2/execute"])
def test_the_execute_routes_coverage_phase_finds_nothing(
    tvm: Server, tmp_path: Path, operation: str
) -> None:
    """The phase the repository's ``schemathesis.toml`` leaves out for the two execute
    routes, for time alone: its boundary cases of every catalog entry are thousands of
    requests and hundreds of real runs (measured 2026-12-02: /api/v1/execute 10,767
    cases in 2 min, /api/v2/execute 8,234 in 22 min, no issue). ``make fuzz`` runs it."""
    if os.environ.get("TVM_FUZZ_EXECUTE_COVERAGE") != "1":
        pytest.skip("make fuzz runs it (TVM_FUZZ_EXECUTE_COVERAGE=1): up to ~25 min")
    st = Path(sys.executable).with_name("st")
    if not st.exists():
        pytest.skip("schemathesis is not installed (it is a dev extra)")
    config = tmp_path / "schemathesis.toml"  # the root's time bounds, all phases on
    config.write_text(
        f"request-timeout = {REQUEST_TIMEOUT_S}\n[checks]\n"
        f"max_response_time = {REQUEST_TIMEOUT_S}\n"
    )
    argv = [str(st), "--config-file", str(config), "run", "--checks", "all",
            f"{tvm.url}/openapi.json", "--phases", "coverage", "--include-name", operation,
            "--seed", SEED, "--workers", "1", "--no-shrink",
            "--report-dir", str(tmp_path / "report")]  # fmt: skip
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stdout[-20000:] + done.stderr[-5000:]
    generated = re.search(r"(\d+) generated, (\d+) passed", done.stdout)
    assert generated and generated.group(1) == generated.group(2), done.stdout[-5000:]
    assert int(generated.group(1)) > 1000, done.stdout[-5000:]  # the phase really ran
