"""E2B's own SDKs, unmodified, against a real ``tvm start``, on namespace and gVisor,
and on namespace with two worker processes behind the gateway (every call then
goes through its forwarding, :mod:`tvm.pyroshell.live_proxy`).

Only the three environment variables a user would set: ``E2B_API_URL`` and
``E2B_SANDBOX_URL`` (the same origin) and ``E2B_API_KEY``. After every test
the sandboxes it made are gone: no live sandbox left in the service, no
process of a sandbox uid under it, no sandbox cgroup it made.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.conftest import Server, namespace_unavailable
from tests.live_support import assert_nothing_left, driver_unavailable, wait_for_workers
from tvm.config.catalog import load_catalog
from tvm.config.settings import Settings
from tvm.pyrovm.images import ImageStore

e2b = pytest.importorskip("e2b", reason="the e2b SDK is a dev extra: pip install -e '.[dev]'")
code_interpreter = pytest.importorskip("e2b_code_interpreter")

MAX_LIVE = 4


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("namespace", marks=pytest.mark.namespace),
        pytest.param("gvisor", marks=pytest.mark.gvisor),
        pytest.param("namespace-workers", marks=pytest.mark.namespace),
    ],
)
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    settings = Settings()
    driver, _, workers = request.param.partition("-")
    reason = namespace_unavailable(settings) or driver_unavailable(driver)
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp(f"e2b-{request.param}")
    env = {
        "TVM_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/db",
        "TVM_LIVE_MAX_SANDBOXES": str(MAX_LIVE),
    }
    count = 2 if workers else 0
    server = Server(tmp, env=env, args=["--driver", driver, "--workers", str(count)])
    if count:
        wait_for_workers(server, count)
    server.driver = driver  # type: ignore[attr-defined]
    server.capacity = MAX_LIVE * max(1, count)  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop()
        print(f"--- server log ---\n{server.log.read_text()[-3000:]}")


@pytest.fixture
def sdk_env(service: Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    """The SDKs' environment, and the leak check after the test."""
    monkeypatch.setenv("E2B_API_URL", service.url)
    monkeypatch.setenv("E2B_SANDBOX_URL", service.url)
    monkeypatch.setenv("E2B_API_KEY", "e2b_anything")
    yield service
    assert_nothing_left(service)


# -- commands ---------------------------------------------------------------------
def test_commands_foreground_exit_codes_and_stderr(sdk_env: Server) -> None:
    with e2b.Sandbox.create() as sbx:
        result = sbx.commands.run("echo hello; echo oops >&2; pwd")
        assert result.stdout == "hello\n/home/user\n"
        assert result.stderr == "oops\n"
        assert result.exit_code == 0
        with pytest.raises(e2b.CommandExitException) as failed:
            sbx.commands.run("echo partial; exit 3")
        assert failed.value.exit_code == 3
        assert failed.value.stdout == "partial\n"
        env = sbx.commands.run("echo $GREETING", envs={"GREETING": "hej"}, cwd="/tmp")
        assert env.stdout == "hej\n"


def test_commands_background_kill_and_list(sdk_env: Server) -> None:
    with e2b.Sandbox.create() as sbx:
        handle = sbx.commands.run("sleep 300", background=True)
        assert handle.pid in [p.pid for p in sbx.commands.list()]
        assert sbx.commands.kill(handle.pid) is True
        with pytest.raises(e2b.CommandExitException):
            handle.wait()
        assert handle.pid not in [p.pid for p in sbx.commands.list()]
        assert sbx.commands.kill(handle.pid) is False  # gone: not_found


def test_commands_stdin_and_streaming(sdk_env: Server) -> None:
    with e2b.Sandbox.create() as sbx:
        handle = sbx.commands.run(
            "echo ready; read name; echo hello $name", background=True, stdin=True
        )
        seen: list[str] = []
        for stdout, _, _ in handle:
            # The first line arrives while the command still waits for its
            # input: only then does it get some.
            if stdout == "ready\n":
                sbx.commands.send_stdin(handle.pid, "world\n")
            seen.append(stdout or "")
        assert "".join(seen) == "ready\nhello world\n"
        assert handle.wait().stdout == "ready\nhello world\n"
        lines: list[str] = []
        sbx.commands.run("for i in 1 2 3; do echo $i; done", on_stdout=lines.append)
        assert "".join(lines) == "1\n2\n3\n"
        # stdin closed by default: the program sees end of file at once.
        assert sbx.commands.run("cat; echo done").stdout == "done\n"


# -- files ------------------------------------------------------------------------
def test_files(sdk_env: Server) -> None:
    with e2b.Sandbox.create() as sbx:
        sbx.files.write("/home/user/notes/a.txt", "first")
        assert sbx.files.read("notes/a.txt") == "first"
        assert sbx.commands.run("cat /home/user/notes/a.txt").stdout == "first"
        assert [e.name for e in sbx.files.list("/home/user/notes")] == ["a.txt"]
        assert sbx.files.exists("notes/a.txt") and not sbx.files.exists("notes/b.txt")
        assert sbx.files.make_dir("notes/sub") is True
        assert sbx.files.make_dir("notes/sub") is False  # already there
        sbx.files.rename("notes/a.txt", "notes/sub/b.txt")
        assert sbx.files.read("notes/sub/b.txt") == "first"
        assert not sbx.files.exists("notes/a.txt")
        sbx.files.remove("notes")
        assert not sbx.files.exists("notes")
        with pytest.raises(e2b.NotFoundException):
            sbx.files.read("notes/sub/b.txt")


def test_large_binary_file(sdk_env: Server) -> None:
    data = os.urandom(24 << 20) + bytes(range(256))
    with e2b.Sandbox.create() as sbx:
        sbx.files.write("big.bin", data)
        assert sbx.files.read("big.bin", format="bytes") == data
        size = sbx.commands.run("wc -c < /home/user/big.bin").stdout.strip()
        assert int(size) == len(data)


# -- code interpreter ---------------------------------------------------------------
def test_run_code_state_errors_and_contexts(sdk_env: Server) -> None:
    with code_interpreter.Sandbox.create() as sbx:
        assert sbx.run_code("1+1").text == "2"
        sbx.run_code("x = 1")
        execution = sbx.run_code("x += 1\nprint('x is', x)\nx")
        assert execution.text == "2"
        assert execution.logs.stdout == ["x is 2\n"]
        failed = sbx.run_code("def f():\n    raise ValueError('bad input')\nf()")
        assert failed.error is not None
        assert (failed.error.name, failed.error.value) == ("ValueError", "bad input")
        assert "in f" in failed.error.traceback
        other = sbx.create_code_context()
        assert sbx.run_code("x", context=other).error.name == "NameError"
        assert sbx.run_code("x").text == "2"  # the default context kept its state
        sbx.run_code("y = 5", context=other)
        sbx.restart_code_context(other)
        assert sbx.run_code("y", context=other).error.name == "NameError"
        assert other.id in [c.id for c in sbx.list_code_contexts()]
        lines: list[str] = []
        sbx.run_code("for i in range(3): print(i)", on_stdout=lambda m: lines.append(m.line))
        assert "".join(lines) == "0\n1\n2\n"
        science = load_catalog().resolve("python-scientific")
        if ImageStore(Settings()).is_built(science.image):  # else: plain Python
            assert sbx.run_code("import numpy\nint(numpy.arange(4).sum())").text == "6"
        assert sbx.get_metrics() == []


def test_javascript_contexts(sdk_env: Server) -> None:
    science = load_catalog().resolve("python-scientific")
    if not ImageStore(Settings()).is_built(science.image):
        pytest.skip(
            "JavaScript contexts run where the code interpreter's image (with Node.js) is built: "
            f"tvm images build --image {science.image.name}"
        )
    with code_interpreter.Sandbox.create() as sbx:
        first = sbx.run_code(
            "let x = 41; var y = 'a'; function f(n) { return n * 2 }", language="js"
        )
        assert (first.error, first.text) == (None, None)
        assert sbx.run_code("x + 1", language="javascript").text == "42"  # state kept
        printed = sbx.run_code("console.log('out'); console.error('err'); f(x)", language="js")
        assert (printed.logs.stdout, printed.logs.stderr) == (["out\n"], ["err\n"])
        assert printed.text == "82"
        assert sbx.run_code("({a: [1, 2], y})", language="js").text == "{ a: [ 1, 2 ], y: 'a' }"
        assert sbx.run_code("Promise.resolve(6 * 7)", language="js").text == "42"
        failed = sbx.run_code("null.field", language="js")
        assert failed.error.name == "TypeError" and "null" in failed.error.value
        assert "<cell-" in failed.error.traceback
        thrown = sbx.run_code("throw new RangeError('too far')", language="js")
        assert (thrown.error.name, thrown.error.value) == ("RangeError", "too far")
        other = sbx.create_code_context(language="js")
        assert other.language == "javascript"
        assert sbx.run_code("typeof x", context=other).text == "'undefined'"  # its own state
        assert sbx.run_code("x", language="js").text == "41"
        assert sbx.run_code("'x' in globals()").text == "False"  # Python's context is apart
        lines: list[str] = []
        sbx.run_code("for (let i = 0; i < 3; i++) console.log(i)", language="js",
                     on_stdout=lambda m: lines.append(m.line))  # fmt: skip
        assert "".join(lines) == "0\n1\n2\n"


# -- lifecycle ------------------------------------------------------------------------
def test_several_sandboxes_list_and_kill(sdk_env: Server) -> None:
    made = [e2b.Sandbox.create(metadata={"suite": "e2b", "n": str(i)}) for i in range(3)]
    try:
        for i, sbx in enumerate(made):  # each its own file system
            sbx.files.write("who", str(i))
        assert [sbx.files.read("who") for sbx in made] == ["0", "1", "2"]
        listed = e2b.Sandbox.list(query=e2b.SandboxQuery(metadata={"suite": "e2b"})).next_items()
        assert sorted(info.sandbox_id for info in listed) == sorted(s.sandbox_id for s in made)
        one = e2b.Sandbox.list(query=e2b.SandboxQuery(metadata={"n": "1"})).next_items()
        assert [info.sandbox_id for info in one] == [made[1].sandbox_id]
    finally:
        for sbx in made:
            assert sbx.kill() is True
    assert not made[0].is_running()
    assert e2b.Sandbox.kill(made[0].sandbox_id) is False
    with pytest.raises(e2b.SandboxException):
        made[0].commands.run("true")


def test_timeout_ends_a_sandbox(sdk_env: Server) -> None:
    sbx = e2b.Sandbox.create(timeout=2)
    assert sbx.is_running()
    deadline = time.monotonic() + 60
    while sbx.is_running() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not sbx.is_running()


def test_set_timeout_moves_the_end(sdk_env: Server) -> None:
    with e2b.Sandbox.create(timeout=30) as sbx:
        before = sbx.get_info().end_at
        sbx.set_timeout(24 * 3600)  # E2B's longest, honoured
        assert (sbx.get_info().end_at - before).total_seconds() > 23 * 3600
        with pytest.raises(e2b.SandboxException, match="timeout: must be between 1 and"):
            sbx.set_timeout(10**7)


def test_capacity_is_a_429_with_retry_after(sdk_env: Server) -> None:
    made = [e2b.Sandbox.create() for _ in range(sdk_env.capacity)]  # type: ignore[attr-defined]
    try:
        reply = httpx.post(sdk_env.url + "/v2/sandboxes", json={"templateID": "base"}, timeout=60)
        assert reply.status_code == 429
        assert int(reply.headers["Retry-After"]) > 0
        assert "live_max_sandboxes" in reply.json()["message"]
        with pytest.raises(e2b.RateLimitException):
            e2b.Sandbox.create()
    finally:
        for sbx in made:
            sbx.kill()


# -- security --------------------------------------------------------------------------
def test_internet_access_is_refused(sdk_env: Server) -> None:
    with pytest.raises(e2b.SandboxException, match="allow_internet_access: a TVM sandbox has no"):
        e2b.Sandbox.create(allow_internet_access=True)


def test_no_network_and_no_host(sdk_env: Server) -> None:
    port = sdk_env.port
    probe = (
        "import socket\n"
        f"try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=5)\n"
        "    print('reached')\nexcept OSError as e:\n    print('refused', e.errno)\n"
    )
    with e2b.Sandbox.create() as sbx:
        sbx.files.write("probe.py", probe)
        assert sbx.commands.run("python3 probe.py").stdout.startswith("refused")
        devices = sbx.commands.run("cat /proc/net/dev").stdout
        assert [line.split(":")[0].strip() for line in devices.splitlines()[2:]] == ["lo"]
        whoami = sbx.commands.run("id -u").stdout.strip()
        assert int(whoami) >= Settings().uid_base  # never root


def test_memory_limit_holds(sdk_env: Server) -> None:
    sbx = e2b.Sandbox.create()
    try:
        hog = sbx.commands.run(
            "python3 -c 'b = bytearray(2 << 30); print(len(b))'", background=True
        )
        with pytest.raises((e2b.CommandExitException, e2b.SandboxException)) as killed:
            hog.wait()
        if sdk_env.driver == "namespace":  # type: ignore[attr-defined]
            # The program alone is killed; the sandbox serves on.
            assert isinstance(killed.value, e2b.CommandExitException)
            assert "2147483648" not in killed.value.stdout
            assert sbx.commands.run("echo alive").stdout == "alive\n"
        else:
            # gVisor's limit holds for the whole sandbox (its kernel included):
            # the program may take the sandbox down with it, never the host.
            if not isinstance(killed.value, e2b.CommandExitException):
                deadline = time.monotonic() + 30
                while sbx.is_running() and time.monotonic() < deadline:
                    time.sleep(0.2)
                assert not sbx.is_running()
    finally:
        sbx.kill()


def test_access_token_is_per_sandbox(sdk_env: Server) -> None:
    with e2b.Sandbox.create() as first, e2b.Sandbox.create() as second:
        info = httpx.get(f"{sdk_env.url}/sandboxes/{first.sandbox_id}", timeout=60).json()
        files = {"E2b-Sandbox-Port": "49983", "X-Access-Token": info["envdAccessToken"]}
        mine = httpx.get(
            sdk_env.url + "/files", params={"path": "/etc/hostname"},
            headers={"E2b-Sandbox-Id": first.sandbox_id, **files}, timeout=60,
        )  # fmt: skip
        assert mine.status_code == 200
        other = httpx.get(
            sdk_env.url + "/files", params={"path": "/etc/hostname"},
            headers={"E2b-Sandbox-Id": second.sandbox_id, **files}, timeout=60,
        )  # fmt: skip
        assert other.status_code == 401


# -- watches and the async SDK ---------------------------------------------------------
def _until(found: Callable[[], list[tuple[str, str]]], wanted: set[tuple[str, str]]) -> set:
    seen: set[tuple[str, str]] = set()
    deadline = time.monotonic() + 30
    while not wanted <= seen and time.monotonic() < deadline:
        seen |= set(found())
        time.sleep(0.1)
    return seen


def test_watch_dir(sdk_env: Server) -> None:
    with e2b.Sandbox.create() as sbx:
        sbx.files.make_dir("watched")
        handle = sbx.files.watch_dir("watched")
        sbx.files.write("watched/new.txt", "content")

        def events() -> list[tuple[str, str]]:
            return [(e.name, e.type.value) for e in handle.get_new_events()]

        assert {("new.txt", "create"), ("new.txt", "write")} <= _until(
            events, {("new.txt", "create"), ("new.txt", "write")}
        )
        sbx.files.remove("watched/new.txt")
        assert ("new.txt", "remove") in _until(events, {("new.txt", "remove")})
        handle.stop()
        with pytest.raises(e2b.SandboxException):
            sbx.files.watch_dir("no/such/dir")


def test_async_sdk(sdk_env: Server) -> None:
    async def scenario() -> tuple[list[str], set[tuple[str, str]], str]:
        sbx = await e2b.AsyncSandbox.create()
        try:
            lines: list[str] = []
            handle = await sbx.commands.run(
                "echo one; sleep 0.2; echo two", background=True, on_stdout=lines.append
            )
            result = await handle.wait()
            await sbx.files.make_dir("w")
            seen: set[tuple[str, str]] = set()
            watch = await sbx.files.watch_dir(
                "w", on_event=lambda e: seen.add((e.name, e.type.value)), recursive=True
            )
            await sbx.files.write("w/sub/x.txt", "x")
            deadline = time.monotonic() + 30
            while ("sub/x.txt", "create") not in seen and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            await watch.stop()
            return lines, seen, result.stdout
        finally:
            await sbx.kill()

    lines, seen, stdout = asyncio.run(scenario())
    assert lines == ["one\n", "two\n"] and stdout == "one\ntwo\n"
    assert ("sub/x.txt", "create") in seen
