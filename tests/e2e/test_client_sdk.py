"""``tvm.client`` (sync and async) against a real ``tvm start``: executions, and
live sandboxes with commands, files and code contexts; leak checks after each."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest

from tests.conftest import Server, namespace_unavailable
from tests.live_support import assert_nothing_left
from tvm.client import AsyncClient, Client
from tvm.config.settings import Settings
from tvm.errors import InvalidRequest, NotFound

pytestmark = pytest.mark.namespace


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    reason = namespace_unavailable(Settings())
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("client")
    server = Server(tmp, env={"TVM_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/db"})
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(service: Server) -> Iterator[Client]:
    with Client(service.url) as tvm:
        yield tvm
    assert_nothing_left(service)


def test_execute_and_languages(client: Client) -> None:
    result = client.execute(
        "python", "import sys; print(input()[::-1]); sys.exit(3)", stdin="olleh"
    )
    assert result.run is not None
    assert (result.status, result.run.stdout, result.run.exit_code) == (
        "runtime_error",
        "hello\n",
        3,
    )
    assert "python" in {lang["name"] for lang in client.languages()}
    with pytest.raises(InvalidRequest) as bad:
        client.execute("python", "print(1)", limits={"timeout_ms": 10**9})
    assert bad.value.field.startswith("limits")


def test_sandbox_commands_files_and_code(client: Client) -> None:
    with client.sandboxes.create(metadata={"who": "sdk"}) as sbx:
        assert [s.id for s in client.sandboxes.list()] == [sbx.id]
        assert sbx.info.metadata == {"who": "sdk"}
        done = sbx.commands.run("echo out; echo err >&2; exit 4")
        assert (done.stdout, done.stderr, done.exit_code) == ("out\n", "err\n", 4)
        assert sbx.commands.run("cat", stdin="typed").stdout == "typed"
        slow = sbx.commands.run("sleep 600", timeout=1)
        assert slow.timed_out and slow.signal == "SIGKILL"
        waiting = sbx.commands.run("read a; echo got $a", background=True, stdin="")
        assert waiting.pid in [p.pid for p in sbx.commands.list()]
        sbx.commands.send_stdin(waiting.pid, "it\n")
        assert sbx.commands.wait(waiting.pid).stdout == "got it\n"
        payload = os.urandom(9 << 20)
        entry = sbx.files.write("dir/blob", payload)
        assert (entry.path, entry.size) == ("/home/user/dir/blob", len(payload))
        assert sbx.files.read("/home/user/dir/blob") == payload
        assert sbx.files.make_dir("dir/sub") and not sbx.files.make_dir("dir/sub")
        sbx.files.move("dir/blob", "dir/sub/blob")
        assert [e.name for e in sbx.files.list("dir", depth=2)] == ["sub", "blob"]
        sbx.files.remove("dir")
        assert not sbx.files.exists("dir")
        with pytest.raises(NotFound):
            sbx.files.read("dir/sub/blob")
        sbx.run_code("import math\nr = math.sqrt(16)")
        assert sbx.run_code("r * 2").text == "8.0"
        fresh = sbx.create_context()
        assert sbx.run_code("r", context=fresh).error.name == "NameError"
        printed = sbx.run_code("print('hi'); 7")
        assert (printed.stdout, printed.text) == ("hi\n", "7")
    assert client.sandboxes.list() == []
    assert sbx.kill() is False
    with pytest.raises(NotFound):
        client.sandboxes.get(sbx.id)


def test_async_client(service: Server) -> None:
    async def scenario() -> tuple[str, str | None, list[str]]:
        async with AsyncClient(service.url) as tvm:
            async with await tvm.sandboxes.create() as sbx:
                await sbx.files.write("a.txt", "from async")
                out = await sbx.commands.run("cat a.txt")
                code = await sbx.run_code("6 * 7")
                listed = [s.id for s in await tvm.sandboxes.list()]
                assert listed == [sbx.id]
            return out.stdout, code.text, [s.id for s in await tvm.sandboxes.list()]

    assert asyncio.run(scenario()) == ("from async", "42", [])
    assert_nothing_left(service)


def test_timeout_and_bad_requests(client: Client) -> None:
    with pytest.raises(InvalidRequest) as bad:
        client.sandboxes.create(timeout=10**7)
    assert bad.value.field == "timeout"
    with pytest.raises(NotFound):
        client.sandboxes.create("no-such-template")
    with client.sandboxes.create(timeout=30) as sbx:
        before = sbx.info.end_at
        sbx.set_timeout(900)
        assert sbx.info.end_at > before
