"""Interactive runs over WebSocket against a real ``tvm start``, with the real
``websockets`` client: Piston's ``/api/v2/connect`` and the native
``/api/v1/connect`` (echo line by line, output before exit, signals, every
close code, disconnect mid-run, an output flood with a slow reader, timeouts,
a terminal, API keys, and the same through a worker process)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tests.conftest import Server, descendants, own_database, require_languages
from tvm.config.settings import Settings

pytestmark = pytest.mark.namespace

PY = "python@3.11.2"
C = "c@12.2.0"
ECHO = """import sys
print("ready", flush=True)
for line in sys.stdin:
    print("echo:" + line.strip(), flush=True)
print("bye", flush=True)
"""
SLEEPER = """import os, time
print("uid", os.getuid(), flush=True)
time.sleep(25)
"""
# 1000 lines of 1 KiB, each with the time it was written.
FLOOD = """import sys, time
t0 = time.monotonic()
for i in range(1000):
    sys.stdout.write(("%4d %8.3f " % (i, time.monotonic() - t0)).ljust(1023, ".") + "\\n")
    sys.stdout.flush()
"""
TRAP = """import signal, sys, time
def caught(signum, frame):
    print("caught", signal.Signals(signum).name, flush=True)
    sys.exit(0)
signal.signal(signal.SIGINT, caught)
signal.signal(signal.SIGUSR1, caught)
print("ready", flush=True)
time.sleep(20)
"""


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    settings = Settings()
    require_languages(settings, PY, C)
    tmp = tmp_path_factory.mktemp("connect")
    srv = Server(tmp, env=own_database(tmp))
    try:
        yield srv
    finally:
        srv.stop()
        print(f"--- server log ---\n{srv.log.read_text()[-3000:]}")


def ws_url(server: Server, path: str) -> str:
    return server.url.replace("http://", "ws://") + path


@pytest.fixture
async def native(live_server: Server) -> AsyncIterator[ClientConnection]:
    async with websockets.connect(ws_url(live_server, "/api/v1/connect")) as ws:
        yield ws


@pytest.fixture
async def piston(live_server: Server) -> AsyncIterator[ClientConnection]:
    async with websockets.connect(ws_url(live_server, "/api/v2/connect")) as ws:
        yield ws


async def recv(ws: ClientConnection, timeout: float = 30) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    return message


async def until(ws: ClientConnection, kind: str, **match: Any) -> dict[str, Any]:
    """Read until a message of ``kind`` whose fields contain ``match`` (substring for data)."""
    while True:
        message = await recv(ws)
        if message["type"] == "error" and kind != "error":
            raise AssertionError(f"error while waiting for {kind}: {message}")
        if message["type"] != kind:
            continue
        if all(
            (v in message.get(k, "")) if k == "data" else message.get(k) == v
            for k, v in match.items()
        ):
            return message


class Screen:
    """A terminal's output as it accumulates (a pty delivers it in any chunks)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws, self.text = ws, ""

    async def shows(self, wanted: str) -> None:
        while wanted not in self.text:
            message = await recv(self.ws)
            if message["type"] == "output":
                self.text += message["data"]
            elif message["type"] in ("result", "error"):
                raise AssertionError(f"{wanted!r} never shown: {self.text!r} then {message}")


async def closed(ws: ClientConnection, timeout: float = 30) -> tuple[int | None, str | None]:
    """Drain the socket until the server closes it; (code, reason)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            await asyncio.wait_for(ws.recv(), deadline - time.monotonic())
        except websockets.ConnectionClosed:
            break
    return ws.close_code, ws.close_reason


def start(code: str, language: str = "python", version: str = "3.11.2", **extra: Any) -> str:
    request = {"language": language, "version": version, "code": code, **extra}
    return json.dumps({"type": "start", "request": request})


def init(code: str, language: str = "python", version: str = "3.11.2", **extra: Any) -> str:
    body = {"type": "init", "language": language, "version": version,
            "files": [{"content": code}], **extra}  # fmt: skip
    return json.dumps(body)


# -- native ----------------------------------------------------------------------------
async def test_native_echo_line_by_line_with_output_before_exit(native: ClientConnection) -> None:
    await native.send(start(ECHO))
    started = await recv(native)
    assert started == {"type": "started", "language": "python", "version": "3.11.2"}
    assert await recv(native) == {"type": "stage", "stage": "run"}
    first = await until(native, "output", data="ready")
    assert (first["stream"], first["offset"]) == ("stdout", 0)
    offset = len(first["data"])
    for word in ("one", "two", "three"):
        await native.send(json.dumps({"type": "stdin", "data": word + "\n"}))
        echoed = await until(native, "output", data=f"echo:{word}")  # the program still runs
        assert echoed["offset"] == offset
        offset += len(echoed["data"].encode())
    await native.send(json.dumps({"type": "eof"}))
    await until(native, "output", data="bye")
    exit_message = await until(native, "exit")
    assert exit_message["result"]["status"] == "ok"
    result = (await until(native, "result"))["result"]
    assert result["status"] == "ok"
    assert result["run"]["stdout"] == "ready\necho:one\necho:two\necho:three\nbye\n"
    assert await closed(native) == (1000, "finished")


async def test_native_compiles_then_streams_both_streams(native: ClientConnection) -> None:
    source = r"""#include <stdio.h>
int main(void) { char name[64];
  fprintf(stderr, "to stderr\n"); printf("name?\n"); fflush(stdout);
  if (!fgets(name, sizeof name, stdin)) return 2;
  printf("hello %s", name); return 0; }"""
    await native.send(start(source, "c", "12.2.0"))
    assert (await until(native, "stage"))["stage"] == "compile"
    assert (await until(native, "exit", stage="compile"))["result"]["status"] == "ok"
    assert (await until(native, "stage"))["stage"] == "run"
    seen: dict[str, dict[str, Any]] = {}
    while len(seen) < 2:  # the two pipes race: either may come first
        message = await until(native, "output")
        seen[message["stream"]] = message
    assert (seen["stderr"]["data"], seen["stderr"]["offset"]) == ("to stderr\n", 0)
    assert (seen["stdout"]["data"], seen["stdout"]["offset"]) == ("name?\n", 0)
    await native.send(json.dumps({"type": "stdin", "data": "Ada\n"}))
    await until(native, "output", data="hello Ada")
    result = (await until(native, "result"))["result"]
    assert result["compile"]["status"] == "ok" and result["run"]["stdout"] == "name?\nhello Ada\n"


async def test_native_compile_error_is_a_result(native: ClientConnection) -> None:
    await native.send(start("int main(void) { return missing; }", "c", "12.2.0"))
    result = (await until(native, "result"))["result"]
    assert result["status"] == "compile_error"
    assert "missing" in result["compile"]["stderr"] and result["run"] is None
    assert (await closed(native))[0] == 1000


async def test_native_signal_reaches_the_program(native: ClientConnection) -> None:
    await native.send(start(TRAP))
    await until(native, "output", data="ready")
    await native.send(json.dumps({"type": "signal", "signal": "SIGUSR1"}))
    await until(native, "output", data="caught SIGUSR1")
    assert (await until(native, "result"))["result"]["run"]["exit_code"] == 0


async def test_native_sigkill_ends_the_run_as_a_signal(native: ClientConnection) -> None:
    await native.send(start(SLEEPER))
    await until(native, "output", data="uid")
    await native.send(json.dumps({"type": "signal", "signal": "SIGKILL"}))
    run = (await until(native, "result"))["result"]["run"]
    assert (run["status"], run["signal"]) == ("signal", "SIGKILL")


async def test_native_timeout_holds_as_for_execute(native: ClientConnection) -> None:
    await native.send(start(SLEEPER, limits={"timeout_ms": 1000}))
    run = (await until(native, "result"))["result"]["run"]
    assert run["status"] == "timeout"
    assert 900 <= run["wall_ms"] < 5000


async def test_native_output_cap_holds_as_for_execute(native: ClientConnection) -> None:
    await native.send(start("while True: print('x' * 1000)", limits={"output_bytes": 5000}))
    streamed = 0
    while (message := await recv(native))["type"] != "result":
        if message["type"] == "output":
            streamed += len(message["data"])
    assert message["result"]["run"]["status"] == "output_limit"
    assert streamed == 5000


async def test_native_terminal_mode_is_a_tty_with_resize(native: ClientConnection) -> None:
    program = """import os, signal, sys, time
def winch(*_):  # os.write: a resize may land inside another print
    columns, lines = os.get_terminal_size()
    os.write(1, f"size {columns} {lines}\\n".encode())
signal.signal(signal.SIGWINCH, winch)
print("tty", os.isatty(0), os.isatty(1), os.isatty(2), flush=True)
winch()
line = input()
print("read", line, flush=True)
time.sleep(0.5)
"""
    message = json.loads(start(program))
    message["terminal"] = {"rows": 30, "cols": 100}
    await native.send(json.dumps(message))
    screen = Screen(native)
    await screen.shows("tty True True True")
    await screen.shows("size 100 30")
    await native.send(json.dumps({"type": "resize", "rows": 40, "cols": 120}))
    await screen.shows("size 120 40")
    await native.send(json.dumps({"type": "stdin", "data": "typed\r"}))
    await screen.shows("read typed")
    assert (await until(native, "result"))["result"]["run"]["status"] == "ok"


async def test_native_disconnect_kills_the_run_at_once(live_server: Server) -> None:
    async with websockets.connect(ws_url(live_server, "/api/v1/connect")) as ws:
        await ws.send(start(SLEEPER))
        uid = int((await until(ws, "output", data="uid"))["data"].split()[1])
        assert sandbox_pids(live_server, uid), "the program should be running"
    gone_by = time.monotonic() + 1.0
    while sandbox_pids(live_server, uid) and time.monotonic() < gone_by:
        await asyncio.sleep(0.05)
    assert not sandbox_pids(live_server, uid), "the sandbox outlived its client by 1 s"


def sandbox_pids(server: Server, uid: int) -> list[int]:
    """Processes of the server's process tree running as ``uid``."""
    found = []
    for pid in descendants(server.proc.pid):
        try:
            line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines()
                        if x.startswith("Uid:"))  # fmt: skip
        except (OSError, StopIteration):
            continue
        if int(line.split()[1]) == uid:
            found.append(pid)
    return found


async def test_native_output_flood_with_a_slow_reader(live_server: Server) -> None:
    """1000 KiB of output while the client reads nothing for 3 s, then slowly:
    every byte arrives once, in order, with contiguous offsets. (That the
    program itself is held back by a consumer that does not read is shown
    at the engine: tests/integration/test_interactive.py; here the kernel's
    socket buffer, bounded by tcp_wmem, takes a megabyte by itself.)"""
    url = ws_url(live_server, "/api/v1/connect")
    async with websockets.connect(url, max_queue=1, max_size=1 << 24) as ws:
        await ws.send(start(FLOOD, limits={"output_bytes": 1 << 20, "timeout_ms": 20000}))
        await asyncio.sleep(3)
        offset, lines = 0, []
        while (message := await recv(ws))["type"] != "result":
            if message["type"] == "output":
                assert message["offset"] == offset
                offset += len(message["data"].encode())
                lines.append(message["data"])
                await asyncio.sleep(0.001)
    text = "".join(lines).splitlines()
    assert [int(line.split()[0]) for line in text] == list(range(1000))
    assert offset == 1000 * 1024
    assert message["result"]["run"]["status"] == "ok"


async def test_native_bad_request_names_the_field(native: ClientConnection) -> None:
    await native.send(start("print(1)", limits={"timeout_ms": 10**9}))
    error = await recv(native)
    assert error["type"] == "error" and error["field"] == "limits.timeout_ms"
    assert "between 1 and" in error["message"]
    assert (await closed(native))[0] == 4400


async def test_native_unknown_language_and_bad_messages(live_server: Server) -> None:
    url = ws_url(live_server, "/api/v1/connect")
    async with websockets.connect(url) as ws:
        await ws.send(start("x", language="no-such-language"))
        assert (await recv(ws))["type"] == "error"
        assert (await closed(ws))[0] == 4400
    async with websockets.connect(url) as ws:
        await ws.send("not json")
        assert "JSON" in (await recv(ws))["message"]
        assert (await closed(ws))[0] == 4400
    async with websockets.connect(url) as ws:
        await ws.send(start(SLEEPER))
        await until(ws, "output", data="uid")
        await ws.send(json.dumps({"type": "signal", "signal": "SIGNOPE"}))
        assert (await until(ws, "error"))["field"] == "signal"
        assert (await closed(ws))[0] == 4400


@pytest.mark.slow
async def test_native_start_deadline(native: ClientConnection) -> None:
    error = await recv(native, timeout=20)
    assert error["type"] == "error" and error["field"] == "start"
    assert (await closed(native))[0] == 4408


# -- Piston ----------------------------------------------------------------------------
async def test_piston_echo_and_job_completed(piston: ClientConnection) -> None:
    await piston.send(init(ECHO))
    assert await recv(piston) == {"type": "runtime", "language": "python", "version": "3.11.2"}
    assert await recv(piston) == {"type": "stage", "stage": "run"}
    assert await recv(piston) == {"type": "data", "stream": "stdout", "data": "ready\n"}
    for word in ("alpha", "beta"):
        await piston.send(json.dumps({"type": "data", "stream": "stdin", "data": word + "\n"}))
        assert await recv(piston) == {"type": "data", "stream": "stdout", "data": f"echo:{word}\n"}
    await piston.send(json.dumps({"type": "signal", "signal": "SIGKILL"}))
    exit_message = await until(piston, "exit")
    assert exit_message["stage"] == "run" and exit_message["signal"] == "SIGKILL"
    assert exit_message["code"] is None
    assert await closed(piston) == (4999, "Job Completed")


async def test_piston_compiled_stages(piston: ClientConnection) -> None:
    source = '#include <stdio.h>\nint main(void){printf("hi\\n");return 3;}'
    await piston.send(init(source, "c", "12.2.0"))
    kinds = []
    while True:
        try:
            message = await recv(piston)
        except websockets.ConnectionClosed:
            break
        kinds.append((message["type"], message.get("stage") or message.get("data")))
        if message["type"] == "exit" and message["stage"] == "run":
            assert (message["code"], message["signal"], message["status"]) == (3, None, "RE")
    assert kinds == [("runtime", None), ("stage", "compile"), ("exit", "compile"),
                     ("stage", "run"), ("data", "hi\n"), ("exit", "run")]  # fmt: skip
    assert piston.close_code == 4999


async def test_piston_signal_reaches_the_job(piston: ClientConnection) -> None:
    await piston.send(init(TRAP))
    await until(piston, "data", data="ready")
    await piston.send(json.dumps({"type": "signal", "signal": "SIGINT"}))
    assert (await until(piston, "data"))["data"] == "caught SIGINT\n"
    assert (await until(piston, "exit"))["code"] == 0
    assert (await closed(piston))[0] == 4999


async def test_piston_run_timeout(piston: ClientConnection) -> None:
    await piston.send(init(SLEEPER, run_timeout=1000))
    exit_message = await until(piston, "exit")
    assert exit_message["status"] == "TO"
    assert (await closed(piston))[0] == 4999


async def test_piston_close_codes(live_server: Server) -> None:
    url = ws_url(live_server, "/api/v2/connect")

    async def after(*messages: str, wait_for: str | None = None) -> tuple[Any, ...]:
        async with websockets.connect(url) as ws:
            for i, message in enumerate(messages):
                await ws.send(message)
                if wait_for and i == 0:  # the job runs
                    await until(ws, "data", data=wait_for)
            return await closed(ws)

    assert await after(init(SLEEPER), init(SLEEPER), wait_for="uid") == (
        4000,
        "Already Initialized",
    )
    assert await after() == (4001, "Initialization Timeout")
    assert await after("{nope") == (4002, "Notified Error")
    assert await after(init("x", language="cobalt")) == (4002, "Notified Error")
    data = json.dumps({"type": "data", "stream": "stdin", "data": "x"})
    assert await after(data) == (4003, "Not yet initialized")
    assert await after(json.dumps({"type": "signal", "signal": "SIGINT"})) == (
        4003, "Not yet initialized")  # fmt: skip
    stdout = json.dumps({"type": "data", "stream": "stdout", "data": "x"})
    assert await after(init(SLEEPER), stdout, wait_for="uid") == (4004, "Can only write to stdin")
    bad_signal = json.dumps({"type": "signal", "signal": "SIGWHAT"})
    assert await after(init(SLEEPER), bad_signal, wait_for="uid") == (4005, "Invalid signal")


async def test_piston_error_message_before_4002(piston: ClientConnection) -> None:
    await piston.send(init("x", run_timeout=10**9))
    error = await recv(piston)
    assert error["type"] == "error" and "run_timeout" in error["message"]
    assert (await closed(piston))[0] == 4002


async def test_piston_disconnect_frees_the_sandbox(live_server: Server) -> None:
    async with websockets.connect(ws_url(live_server, "/api/v2/connect")) as ws:
        await ws.send(init(SLEEPER))
        uid = int((await until(ws, "data", data="uid"))["data"].split()[1])
    gone_by = time.monotonic() + 1.0
    while sandbox_pids(live_server, uid) and time.monotonic() < gone_by:
        await asyncio.sleep(0.05)
    assert not sandbox_pids(live_server, uid)


# -- keys, and a worker process behind the gateway -----------------------------------
@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    require_languages(Settings(), PY)
    tmp = tmp_path_factory.mktemp("keyed")
    env = {"TVM_AUTH_REQUIRED": "true", "TVM_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/db"}
    made = subprocess.run([sys.executable, "-m", "tvm.cli", "keys", "create", "playground"],
                          env={**os.environ, **env}, capture_output=True, text=True, check=True)  # fmt: skip
    secret = made.stdout.split()[-1]  # the last line: the secret itself
    srv = Server(tmp, env=env)
    try:
        yield srv, secret
    finally:
        srv.stop()


async def test_keys_required_over_websocket(keyed_server: tuple[Server, str]) -> None:
    srv, secret = keyed_server
    url = ws_url(srv, "/api/v1/connect")
    async with websockets.connect(url) as ws:
        assert "API key" in (await recv(ws))["message"]
        assert (await closed(ws))[0] == 4401
    async with websockets.connect(ws_url(srv, "/api/v2/connect")) as ws:
        assert (await recv(ws))["type"] == "error"
        assert (await closed(ws))[0] == 4002
    for connect in (
        websockets.connect(url + f"?api_key={secret}"),
        websockets.connect(url, additional_headers={"X-API-Key": secret}),
    ):
        async with connect as ws:
            await ws.send(start("print(6 * 7)"))
            assert (await until(ws, "result"))["result"]["run"]["stdout"] == "42\n"


@pytest.fixture(scope="module")
def worker_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    require_languages(Settings(), PY)
    tmp = tmp_path_factory.mktemp("workers")
    srv = Server(tmp, env=own_database(tmp), args=["--workers", "1"])
    try:
        yield srv
    finally:
        srv.stop()


async def test_through_a_worker_process(worker_server: Server) -> None:
    async with websockets.connect(ws_url(worker_server, "/api/v1/connect")) as ws:
        await ws.send(start(ECHO))
        await until(ws, "output", data="ready")
        await ws.send(json.dumps({"type": "stdin", "data": "via worker\n"}))
        await until(ws, "output", data="echo:via worker")
        await ws.send(json.dumps({"type": "eof"}))
        assert (await until(ws, "result"))["result"]["status"] == "ok"
    async with websockets.connect(ws_url(worker_server, "/api/v2/connect")) as ws:
        await ws.send(init(TRAP))
        await until(ws, "data", data="ready")
        await ws.send(json.dumps({"type": "signal", "signal": "SIGINT"}))
        await until(ws, "data", data="caught SIGINT")
        assert (await closed(ws))[0] == 4999
