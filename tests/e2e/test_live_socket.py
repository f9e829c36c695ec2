"""The native API's streams of a live sandbox against a real ``tvm start``
(the embedded worker, and two worker processes behind the gateway): a
process over a WebSocket, with a real WebSocket client (``websockets``), and
directory watches (inotify in the sandbox) as NDJSON."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.conftest import Server, namespace_unavailable
from tests.live_support import assert_nothing_left, wait_for_workers
from tvm.client import AsyncClient, Client, CommandEvent
from tvm.config.settings import Settings
from tvm.errors import NotFound

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


# -- directory watches (inotify in the sandbox), NDJSON ------------------------------------
def _watch(client: httpx.Client, sandbox_id: str, path: str, recursive: bool = False) -> Any:
    params = {"path": path, "recursive": str(recursive).lower()}
    return client.stream("GET", f"/api/v1/sandboxes/{sandbox_id}/files/watch", params=params)


def _next_of(lines: Iterator[str], kind: str) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    for line in lines:
        seen.append(json.loads(line))
        if seen[-1]["type"] == kind:
            return seen
    raise AssertionError(f"the stream ended before a {kind!r} event: {seen}")


def _cmd(client: httpx.Client, sandbox_id: str, cmd: str) -> None:
    reply = client.post(f"/api/v1/sandboxes/{sandbox_id}/commands", json={"cmd": cmd})
    assert reply.json()["exit_code"] == 0, reply.text


def test_watch_reports_each_change_as_it_happens(service: Server, sandbox: str) -> None:
    with httpx.Client(base_url=service.url, timeout=60) as client:
        _cmd(client, sandbox, "mkdir watched")
        with _watch(client, sandbox, "watched") as stream:
            assert stream.status_code == 200
            lines = stream.iter_lines()
            assert json.loads(next(lines)) == {"type": "start", "path": "/home/user/watched"}
            put = client.put(f"/api/v1/sandboxes/{sandbox}/files",
                             params={"path": "watched/a.txt"}, content=b"hello")  # fmt: skip
            assert put.status_code == 200
            assert _next_of(lines, "create")[-1] == {"type": "create", "name": "a.txt"}
            assert _next_of(lines, "write")[-1]["name"] == "a.txt"
            _cmd(client, sandbox, "chmod 600 watched/a.txt")
            assert _next_of(lines, "chmod")[-1]["name"] == "a.txt"
            _cmd(client, sandbox, "mv watched/a.txt watched/b.txt")
            assert _next_of(lines, "rename")[-1]["name"] == "a.txt"
            assert _next_of(lines, "create")[-1]["name"] == "b.txt"
            _cmd(client, sandbox, "rm watched/b.txt")
            assert _next_of(lines, "remove")[-1]["name"] == "b.txt"
            _cmd(client, sandbox, "rmdir watched")  # the watch ends with its directory
            assert _next_of(lines, "end")[-1] == {"type": "end"}


def test_recursive_watch_sees_what_is_made_in_new_directories(
    service: Server, sandbox: str
) -> None:
    client = httpx.Client(base_url=service.url, timeout=60)
    with client, _watch(client, sandbox, ".", recursive=True) as stream:
        lines = stream.iter_lines()
        next(lines)
        _cmd(client, sandbox, "mkdir -p a/b && echo x > a/b/c.txt")
        names: set[str] = set()
        while "a/b/c.txt" not in names:
            names |= {e["name"] for e in _next_of(lines, "create") if e["type"] == "create"}
        assert {"a", "a/b", "a/b/c.txt"} <= names


def test_watches_are_capped_per_sandbox_and_bad_paths_refused(
    service: Server, sandbox: str
) -> None:
    limits = httpx.Limits(max_connections=40)
    with httpx.Client(base_url=service.url, timeout=60, limits=limits) as client:
        missing = client.get(f"/api/v1/sandboxes/{sandbox}/files/watch", params={"path": "nope"})
        assert missing.status_code == 404 and "does not exist" in missing.json()["message"]
        client.put(f"/api/v1/sandboxes/{sandbox}/files", params={"path": "f.txt"}, content=b"x")
        a_file = client.get(f"/api/v1/sandboxes/{sandbox}/files/watch", params={"path": "f.txt"})
        assert a_file.status_code == 409, a_file.text  # the path's state, not the request
        assert a_file.json()["code"] == "conflict" and "not a directory" in a_file.text
        with contextlib.ExitStack() as open_watches:
            for _ in range(16):
                stream = open_watches.enter_context(_watch(client, sandbox, "."))
                assert stream.status_code == 200
            over = client.get(f"/api/v1/sandboxes/{sandbox}/files/watch", params={"path": "."})
            assert over.status_code == 409
            assert "at most 16 watches per sandbox" in over.json()["message"]
        deadline = time.monotonic() + 30  # closed watches are stopped in the sandbox
        while True:
            with _watch(client, sandbox, ".") as again:
                if again.status_code == 200 or time.monotonic() > deadline:
                    break
            time.sleep(0.2)
        assert again.status_code == 200


# -- tvm.client over the socket ------------------------------------------------------------
def test_client_sdk_talks_to_a_process_over_the_socket(service: Server) -> None:
    with Client(service.url) as tvm, tvm.sandboxes.create() as sbx:
        pid = sbx.commands.run("echo ready; read a; echo got $a", background=True, stdin="").pid
        with sbx.commands.connect(pid) as proc:
            events = iter(proc)
            assert next(events) == CommandEvent("stdout", "ready\n")
            proc.send_stdin("it\n")
            rest = list(events)
        assert [e.data for e in rest if e.type == "stdout"] == ["got it\n"]
        assert rest[-1] == CommandEvent("exit", exit_code=0)
        sleeper = sbx.commands.run("sleep 600", background=True).pid
        with sbx.commands.connect(sleeper) as proc:
            proc.signal("SIGTERM")
            assert list(proc)[-1] == CommandEvent("exit", exit_code=-15, signal="SIGTERM")
        with pytest.raises(NotFound), sbx.commands.connect(999999) as proc:
            list(proc)

    async def scenario() -> list[CommandEvent]:
        async with AsyncClient(service.url) as tvm, await tvm.sandboxes.create() as sbx:
            started = await sbx.commands.run("cat; echo done", background=True, stdin="")
            async with sbx.commands.connect(started.pid) as proc:
                await proc.send_stdin("typed\n")
                await proc.close_stdin()
                return [e async for e in proc]

    events = asyncio.run(scenario())
    assert "".join(e.data for e in events if e.type == "stdout") == "typed\ndone\n"
    assert events[-1].type == "exit"
    assert_nothing_left(service)
