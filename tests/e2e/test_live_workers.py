"""Live sandboxes on a real ``tvm start --workers 2``: each sandbox pinned to
the worker process that made it, every call routed there, and a sandbox whose
worker is SIGKILLed reported lost (and gone from the host), while the
supervisor's replacement serves new ones.

E2B's SDK runs unchanged (only its three environment variables); TVM's own
SDK speaks the native API to the same gateway. (The whole E2B suite also
runs against two workers: ``tests/e2e/test_e2b_sdk.py``, ``namespace-workers``.)
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, descendants, namespace_unavailable, sandbox_cgroups
from tests.live_support import assert_nothing_left, wait_for_workers
from tvm.client import Client
from tvm.config.settings import Settings
from tvm.pyrovm.live import boot_of

e2b = pytest.importorskip("e2b", reason="the e2b SDK is a dev extra: pip install -e '.[dev]'")

pytestmark = pytest.mark.namespace


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    reason = namespace_unavailable(Settings())
    if reason:
        pytest.skip(reason)
    env = {"TVM_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/db"}
    server = Server(tmp_path, env=env, args=["--driver", "namespace", "--workers", "2"])
    try:
        wait_for_workers(server, 2)
        for name in ("E2B_API_URL", "E2B_SANDBOX_URL"):
            monkeypatch.setenv(name, server.url)
        monkeypatch.setenv("E2B_API_KEY", "e2b_anything")
        yield server
        assert_nothing_left(server)
    finally:
        server.stop()
        print(f"--- server log ---\n{server.log.read_text()[-4000:]}")


def _boots(service: Server) -> dict[str, str]:
    """Each running worker's boot tag -> its URL."""
    workers = httpx.get(service.url + "/health", timeout=30).json()["workers"]
    return {w["boot"]: w["url"] for w in workers if w["healthy"]}


def _worker_pid(service: Server, url: str) -> int:
    port = url.rsplit(":", 1)[1]
    for pid in descendants(service.proc.pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--role" in argv and port.encode() in argv:
            return pid
    raise AssertionError(f"no worker process listens on {url}")


async def _streams_as_it_comes(sandbox_id: str) -> str:
    """A background command's output, read while it still runs (then killed)."""
    sbx = await e2b.AsyncSandbox.connect(sandbox_id)
    lines: list[str] = []
    handle = await sbx.commands.run(
        "echo one; sleep 0.3; echo two; sleep 600", background=True, on_stdout=lines.append
    )
    deadline = time.monotonic() + 30
    while len(lines) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert handle.pid in [p.pid for p in await sbx.commands.list()]
    assert await sbx.commands.kill(handle.pid)
    return "".join(lines)


def test_sandboxes_spread_over_workers_and_every_call_is_routed(service: Server) -> None:
    made = [e2b.Sandbox.create(metadata={"suite": "workers"}) for _ in range(4)]
    tvm = Client(service.url)
    try:
        boots = _boots(service)
        assert {boot_of(s.sandbox_id) for s in made} == set(boots)  # both workers hold some
        native = tvm.sandboxes.create(metadata={"suite": "native"})
        for i, sbx in enumerate(made):
            sbx.files.write("who", f"sandbox {i}")
            out = sbx.commands.run("cat who; echo err >&2")
            assert (out.stdout, out.stderr) == (f"sandbox {i}", "err\n")
            assert asyncio.run(_streams_as_it_comes(sbx.sandbox_id)) == "one\ntwo\n"
            assert sbx.files.exists("who") and [e.name for e in sbx.files.list(".")] == ["who"]
        listed = e2b.Sandbox.list(query=e2b.SandboxQuery(metadata={"suite": "workers"}))
        assert sorted(i.sandbox_id for i in listed.next_items()) == sorted(
            s.sandbox_id for s in made
        )
        paged = e2b.Sandbox.list(limit=3)
        first = paged.next_items()
        assert len(first) == 3 and paged.has_next
        rest = paged.next_items()
        assert sorted(i.sandbox_id for i in first + rest) == sorted(
            [s.sandbox_id for s in made] + [native.id]
        )
        assert sorted(s.id for s in tvm.sandboxes.list()) == sorted(
            [s.sandbox_id for s in made] + [native.id]
        )
        assert native.commands.run("echo native").stdout == "native\n"
        assert native.run_code("2 ** 10").text == "1024"
        assert tvm.sandboxes.get(native.id).info.metadata == {"suite": "native"}
    finally:
        for sbx in made:
            assert sbx.kill() is True
        for found in tvm.sandboxes.list():
            assert tvm.sandboxes.get(found.id).kill() is True
        tvm.close()


def test_a_killed_worker_loses_its_sandboxes_and_its_replacement_serves(service: Server) -> None:
    first, second = e2b.Sandbox.create(), e2b.Sandbox.create()
    boots = _boots(service)
    assert boot_of(first.sandbox_id) != boot_of(second.sandbox_id)
    victim_boot = boot_of(first.sandbox_id) or ""
    first.commands.run("sleep 600", background=True)
    victim = _worker_pid(service, boots[victim_boot])
    held = descendants(victim) - {victim}  # its zygote and its sandbox's processes
    assert held
    os.kill(victim, signal.SIGKILL)

    with pytest.raises(e2b.SandboxNotRunningException, match="was not found.*worker"):
        first.commands.run("true")
    assert not first.is_running()
    native = httpx.get(f"{service.url}/api/v1/sandboxes/{first.sandbox_id}", timeout=30)
    assert native.status_code == 410
    assert "worker" in native.json()["message"] and "gone" in native.json()["message"]
    control = httpx.get(f"{service.url}/sandboxes/{first.sandbox_id}", timeout=30)
    assert control.status_code == 404
    assert control.json()["code"] == 404 and "worker" in control.json()["message"]
    assert e2b.Sandbox.kill(first.sandbox_id) is False
    assert second.commands.run("echo still here").stdout == "still here\n"  # the other worker

    workers = wait_for_workers(service, 2, exclude=frozenset({victim_boot}))
    fresh_boot = next(w["boot"] for w in workers if w["boot"] not in (victim_boot, *boots))
    gone = httpx.get(f"{service.url}/api/v1/sandboxes/{first.sandbox_id}", timeout=30)
    assert gone.status_code == 410 and "restarted" in gone.json()["message"]
    third = e2b.Sandbox.create()  # the replacement holds none: it gets the next one
    assert boot_of(third.sandbox_id) == fresh_boot
    assert third.commands.run("echo on the new worker").stdout == "on the new worker\n"

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        alive = [pid for pid in held if Path(f"/proc/{pid}").exists()]
        groups = sandbox_cgroups(zygotes=True, owners={victim})
        if not alive and not groups:
            break
        time.sleep(0.5)
    assert not alive, f"processes of the killed worker left: {alive}"
    assert not groups, f"cgroups of the killed worker left: {groups}"
    for sbx in (second, third):
        assert sbx.kill() is True
