"""``tvm start --workers 2`` for real (gateway + two supervised workers, real sandboxes):
Judge0 statuses from real programs, base64 round trips, Piston through the gateway,
a killed worker restarted by the supervisor, and ``tvm stop`` cleaning up."""

from __future__ import annotations

import base64
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port, namespace_unavailable, require_languages
from tests.gateway_support import Service
from tvm.config.settings import Settings

pytestmark = pytest.mark.namespace


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    settings = Settings()
    reason = namespace_unavailable(settings)
    if reason:
        pytest.skip(reason)
    require_languages(settings, "python@3.11.2", "c@12.2.0")
    tmp = tmp_path_factory.mktemp("stack")
    port = free_port()
    env = dict(os.environ, TVM_LOG_JSON="true", TVM_DATABASE_URL=f"sqlite+aiosqlite:///{tmp}/db",
               TVM_WORKER_PORT=str(free_port()), TVM_HEALTH_INTERVAL_SECONDS="0.5")  # fmt: skip
    argv = [sys.executable, "-m", "tvm.cli", "start", "--port", str(port), "--workers", "2"]
    service = Service(argv, tmp / "stack.log", env, port)
    try:
        service.wait_ready(timeout=60)
        yield service
    finally:
        service.kill(signal.SIGTERM)
        print(service.log.read_text()[-3000:])


def judge(url: str, source: str, language_id: int = 71, **fields: Any) -> dict[str, Any]:
    reply = httpx.post(f"{url}/submissions", params={"wait": "true", "fields": "*"},
                       json={"source_code": source, "language_id": language_id, **fields},
                       timeout=120)  # fmt: skip
    assert reply.status_code == 201, reply.text
    return dict(reply.json())


PY = {
    3: "print(input())",
    5: "while True: pass",
    7: "import ctypes; ctypes.string_at(0)",
    9: "import os, signal; os.kill(os.getpid(), signal.SIGFPE)",
    10: "import os; os.abort()",
    11: "raise SystemExit(4)",
}


@pytest.mark.parametrize("status", sorted(PY))
def test_judge0_statuses_from_real_programs(stack: Service, status: int) -> None:
    body = judge(stack.url, PY[status], stdin="hi", cpu_time_limit=1, wall_time_limit=3)
    assert body["status"]["id"] == status, body
    if status == 3:
        assert body["stdout"] == "hi\n" and float(body["time"]) >= 0 and body["memory"] > 0
    if status == 11:
        assert body["exit_code"] == 4


def test_wrong_answer_and_compile_error(stack: Service) -> None:
    assert judge(stack.url, "print(2)", expected_output="3")["status"]["id"] == 4
    bad = judge(stack.url, "int main( { return 0; }", 50)
    assert bad["status"]["id"] == 6 and "error" in bad["compile_output"]
    good = judge(stack.url, '#include <stdio.h>\nint main(int c, char **v){printf("%s %d\\n", v[1], X);}',
                 50, compiler_options="-DX=7", command_line_arguments="arg")  # fmt: skip
    assert good["status"]["id"] == 3 and good["stdout"] == "arg 7\n"


def test_base64_binary_round_trip(stack: Service) -> None:
    source = base64.b64encode(b"import sys; sys.stdout.buffer.write(bytes(range(256)))").decode()
    reply = httpx.post(f"{stack.url}/submissions?wait=true&base64_encoded=true",
                       json={"source_code": source, "language_id": 71}, timeout=60)  # fmt: skip
    assert base64.b64decode(reply.json()["stdout"]) == bytes(range(256))


def test_piston_through_the_gateway(stack: Service) -> None:
    reply = httpx.post(f"{stack.url}/api/v2/execute", timeout=60, json={
        "language": "python", "version": "3.11", "files": [{"content": "import sys; print(sys.argv[1])"}],
        "args": ["x"]})  # fmt: skip
    assert reply.json()["run"]["stdout"] == "x\n"


def test_dead_worker_is_restarted(stack: Service) -> None:
    health = httpx.get(f"{stack.url}/health").json()
    assert len(health["workers"]) == 2
    port = int(health["workers"][0]["url"].rsplit(":", 1)[1])
    pids = [p for p in Path("/proc").iterdir() if p.name.isdigit()]
    victim = None
    for proc in pids:
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--role" in cmd and str(port).encode() in cmd:
            victim = int(proc.name)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    time.sleep(1.5)  # the next health round sees it gone
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        workers = httpx.get(f"{stack.url}/health").json()["workers"]
        if all(w["healthy"] for w in workers):
            break
        time.sleep(0.3)
    assert all(w["healthy"] for w in workers)
    assert judge(stack.url, "print(1)")["status"]["id"] == 3
