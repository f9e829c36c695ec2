"""schemathesis (every check) against a real ``tvm start``: every response of the
Piston, native, Judge0, packages, health and live-sandbox routes matches the schema
the server serves, every request it allows is accepted and every other one refused,
OPTIONS and 405 list every method.

Bounded: a time budget for the whole run (``--max-time``, shared by the phases), a few
examples per operation and a per-request timeout. Unbounded, the coverage phase of the
two execute routes alone sends thousands of real compile-and-run requests one at a
time (one alternative per catalog entry, each boundary case of each): a clean-clone CI
run was still in it when its 900 s timeout struck, which looked like a stall.
``schemathesis.toml`` beside this file turns that phase off for those two routes and
lists the few Judge0 and live-sandbox answers that depend on the server's state, not
on the request.

The live sandboxes it creates (``/api/v1/sandboxes``) live briefly (``LIVE``: a short
default and maximum lifetime, which the served schema then states), so a command's
event stream or a watch ends with its sandbox, and little memory; what is left at the
end goes with the server, whose stop checks for leftovers."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Server
from tests.e2e.piston_stack import start_tvm

pytestmark = [pytest.mark.namespace, pytest.mark.slow]
CONFIG = Path(__file__).with_name("schemathesis.toml")
EXAMPLES = 8
BUDGET_S = 210  # the whole run
REQUEST_TIMEOUT_S = 150  # a compile plus a run at their maxima (45 s + 30 s), queued
LIVE = {"TVM_LIVE_TIMEOUT_SECONDS": "15", "TVM_LIVE_MAX_TIMEOUT_SECONDS": "30",
        "TVM_LIVE_MEMORY_MB": "128", "TVM_LIVE_MAX_MEMORY_MB": "256"}  # fmt: skip


@pytest.fixture(scope="module")
def tvm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from start_tvm(tmp_path_factory.mktemp("schemathesis"), every_language=True, **LIVE)


def test_schemathesis_finds_nothing(tvm: Server, tmp_path: Path) -> None:
    st = Path(sys.executable).with_name("st")
    if not st.exists():
        pytest.skip("schemathesis is not installed (it is a dev extra)")
    argv = [str(st), "--config-file", str(CONFIG), "run", f"{tvm.url}/openapi.json",
            # Every check runs (schemathesis' default: the same set as `--checks all`, which
            # on the command line would overrule the checks schemathesis.toml turns off
            # for a few operations, with the reason).
            "--max-examples", str(EXAMPLES), "--seed", "7",
            "--workers", "1", "--no-shrink", "--max-time", str(BUDGET_S),
            "--request-timeout", str(REQUEST_TIMEOUT_S),
            # no response-time check: a slow answer on a busy host is not a wrong one
            "--max-response-time", str(REQUEST_TIMEOUT_S),
            "--report-dir", str(tmp_path / "report")]  # fmt: skip
    # The budget is checked between requests: one last request may run to its timeout.
    limit = BUDGET_S + 2 * REQUEST_TIMEOUT_S + 60
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=limit)
    assert done.returncode == 0, done.stdout[-20000:] + done.stderr[-5000:]
    selected = re.search(r"Selected: (\d+)/\d+", done.stdout)
    tested = re.search(r"Tested: (\d+)", done.stdout)
    assert selected and tested, done.stdout[-5000:]
    assert tested.group(1) == selected.group(1), done.stdout[-5000:]  # none left out
