"""The native API's WebSocket for a live sandbox's process, with a real
WebSocket client (``websockets``) against a real ``tvm start``: the embedded
worker, and two worker processes behind the gateway (relayed there)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.conftest import Server, namespace_unavailable
from tests.live_support import assert_nothing_left, wait_for_workers
from tvm.config.settings import Settings

pytestmark = pytest.mark.namespace


@pytest.fixture(scope="module", params=[0, 2], ids=["embedded", "workers"])
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    reason = namespace_unavailable(Settings())
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp(f"socket-{request.param}")
    env = {"TVM_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/db"}
    server = Server(tmp, env=env, args=["--driver", "namespace", "--workers", str(request.param)])
    try:
        if request.param:
            wait_for_workers(server, request.param)
        yield server
    finally:
        server.stop()
        print(f"--- server log ---\n{Path(server.log).read_text()[-3000:]}")


@pytest.fixture
def sandbox(service: Server) -> Iterator[str]:
    made = httpx.post(service.url + "/api/v1/sandboxes", json={}, timeout=60)
    assert made.status_code == 201, made.text
    sandbox_id = made.json()["id"]
    yield sandbox_id
    httpx.delete(f"{service.url}/api/v1/sandboxes/{sandbox_id}", timeout=60)
    assert_nothing_left(service)


def _start(service: Server, sandbox_id: str, cmd: str) -> int:
    reply = httpx.post(
        f"{service.url}/api/v1/sandboxes/{sandbox_id}/commands",
        json={"cmd": cmd, "background": True, "stdin": ""}, timeout=60,
    )  # fmt: skip
    assert reply.status_code == 200, reply.text
    return int(reply.json()["pid"])


def _socket(service: Server, sandbox_id: str, pid: int) -> ClientConnection:
    url = (
        service.url.replace("http://", "ws://")
        + f"/api/v1/sandboxes/{sandbox_id}/commands/{pid}/ws"
    )
    return connect(url, open_timeout=60)


def _until(ws: ClientConnection, kind: str) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    while True:
        message = json.loads(ws.recv(timeout=60))
        seen.append(message)
        if message["type"] == kind:
            return seen


def test_output_stdin_and_exit_over_one_socket(service: Server, sandbox: str) -> None:
    pid = _start(service, sandbox, "echo ready; read line; echo got $line; echo bye >&2")
    with _socket(service, sandbox, pid) as ws:
        assert _until(ws, "stdout")[-1] == {"type": "stdout", "data": "ready\n"}
        ws.send(json.dumps({"type": "stdin", "data": "hello\n"}))
        seen = _until(ws, "exit")
        out = "".join(m["data"] for m in seen if m["type"] == "stdout")
        err = "".join(m["data"] for m in seen if m["type"] == "stderr")
        assert (out, err) == ("got hello\n", "bye\n")
        assert seen[-1] == {"type": "exit", "exit_code": 0, "signal": None}
        with pytest.raises(Exception):  # closed by the server after the exit  # noqa: B017
            ws.recv(timeout=30)
        assert ws.close_code == 1000


def test_signals_close_stdin_and_bad_messages(service: Server, sandbox: str) -> None:
    pid = _start(service, sandbox, "cat; echo eof-seen; sleep 600")
    with _socket(service, sandbox, pid) as ws:
        ws.send("not json")
        assert json.loads(ws.recv(timeout=60))["field"] == "body"
        ws.send(json.dumps({"type": "signal", "signal": "SIGHUP"}))
        refused = json.loads(ws.recv(timeout=60))
        assert refused["type"] == "error" and refused["field"] == "signal"
        ws.send(json.dumps({"type": "close_stdin"}))
        assert _until(ws, "stdout")[-1]["data"] == "eof-seen\n"
        ws.send(json.dumps({"type": "signal", "signal": "SIGKILL"}))
        assert _until(ws, "exit")[-1] == {"type": "exit", "exit_code": -9, "signal": "SIGKILL"}


def test_unknown_process_or_sandbox_closes_with_4404(service: Server, sandbox: str) -> None:
    with _socket(service, sandbox, 999999) as ws:
        assert "not found" in json.loads(ws.recv(timeout=60))["message"]
        with pytest.raises(Exception):  # noqa: B017
            ws.recv(timeout=30)
        assert ws.close_code == 4404
    with _socket(service, "sb" + "0" * 24, 1) as ws:
        ws.recv(timeout=60)
        with pytest.raises(Exception):  # noqa: B017
            ws.recv(timeout=30)
        assert ws.close_code == 4404


def test_closing_the_socket_leaves_the_process_running(service: Server, sandbox: str) -> None:
    pid = _start(service, sandbox, "echo started; sleep 600")
    with _socket(service, sandbox, pid) as ws:
        assert _until(ws, "stdout")[-1]["data"] == "started\n"
    listed = httpx.get(f"{service.url}/api/v1/sandboxes/{sandbox}/commands", timeout=60).json()
    assert pid in [p["pid"] for p in listed]
