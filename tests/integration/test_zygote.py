"""The namespace driver's zygotes: replaced in time, survivable, never shared state.

Each image's sandboxes are forked from one zygote; these tests drive the real
driver (real bubblewrap, namespaces and cgroups) through a zygote's life.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from tests.conftest import namespace_unavailable
from tests.contract.test_drivers import LIMITS, _spec
from tvm.config.settings import Settings
from tvm.pyrovm.drivers import namespace, zygote_client
from tvm.pyrovm.drivers.base import Sandbox
from tvm.pyrovm.drivers.namespace import NamespaceDriver

pytestmark = [pytest.mark.namespace]

HASH = "print(hash('tvm'))"


@pytest.fixture
def driver(settings: Settings) -> NamespaceDriver:
    reason = namespace_unavailable(settings)
    if reason:
        pytest.skip(reason)
    return NamespaceDriver(settings)


async def run(box: Sandbox, code: str) -> str:
    await box.write_files([("main.py", code.encode(), 0o644)])
    reply = await box.run_stage("run", ["python3", "main.py"], b"", LIMITS, pyrun=True)
    assert reply.status == "ok", reply
    return str(reply.stdout.decode()).strip()


class HeldReplies:
    """Holds the driver's reading of zygote replies until released, so that a
    test can act while a request is out (a zygote answers in a millisecond)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.release = asyncio.Event()
        self.waiting = asyncio.Event()
        real = zygote_client._reply

        async def held(loop: asyncio.AbstractEventLoop, sock: object) -> tuple[bytes, list[int]]:
            self.waiting.set()
            await self.release.wait()
            return await real(loop, sock)  # type: ignore[arg-type]

        monkeypatch.setattr(zygote_client, "_reply", held)

    async def out(self) -> None:
        """Until a request is out and its reply held."""
        await asyncio.wait_for(self.waiting.wait(), 10)


async def gone(pid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_zygote_is_replaced_after_its_age_and_its_sandboxes_live_on(
    driver: NamespaceDriver, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(namespace, "ZYGOTE_MAX_AGE", 0.5)
    spec = _spec(settings)
    first = await driver.start(spec)
    try:
        old = driver._zygotes[spec.rootfs]
        assert old.proc is not None
        seed_before = await run(first, HASH)
        await asyncio.sleep(0.6)
        second = await driver.start(spec)
        try:
            new = driver._zygotes[spec.rootfs]
            assert new is not old  # a fresh interpreter: a fresh hash secret
            assert await run(second, HASH) != seed_before
            # The old zygote waits for the sandboxes it made ...
            await asyncio.sleep(0.3)
            assert old.proc.returncode is None
            assert await run(first, "print('still here')") == "still here"
            await first.destroy()
            # ... then goes, and so does its cgroup.
            assert await gone(old.proc.pid)
            deadline = time.monotonic() + 5
            while any(d.exists() for d in old.cgroup.dirs.values()):
                assert time.monotonic() < deadline, old.cgroup.dirs
                await asyncio.sleep(0.05)
        finally:
            await second.destroy()
    finally:
        await first.destroy()
        await driver.close()


async def test_a_successor_is_ready_before_a_zygote_is_too_old(
    driver: NamespaceDriver, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(namespace, "ZYGOTE_MAX_AGE", 1.0)
    spec = _spec(settings)
    first = await driver.start(spec)
    old = driver._zygotes[spec.rootfs]
    await asyncio.sleep(0.85)  # past 80% of its age: the next start begins a successor
    second = await driver.start(spec)
    try:
        assert driver._zygotes[spec.rootfs] is old or spec.rootfs in driver._renewing
        deadline = time.monotonic() + 10
        while spec.rootfs in driver._renewing:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        new = driver._zygotes[spec.rootfs]
        assert new is not old and new.usable
        # Both sandboxes of the old zygote still work; then it goes.
        assert await run(first, "print(1)") == "1" and await run(second, "print(2)") == "2"
    finally:
        await first.destroy()
        await second.destroy()
    assert old.proc is not None and await gone(old.proc.pid)
    await driver.close()


async def test_a_dead_zygote_is_started_again(driver: NamespaceDriver, settings: Settings) -> None:
    spec = _spec(settings)
    box = await driver.start(spec)
    await box.destroy()
    zygote = driver._zygotes[spec.rootfs]
    assert zygote.proc is not None
    os.kill(zygote.proc.pid, signal.SIGKILL)  # bwrap; the zygote dies with it
    await zygote.proc.wait()
    box = await driver.start(spec)
    try:
        assert driver._zygotes[spec.rootfs] is not zygote
        assert await run(box, "print(6 * 7)") == "42"
    finally:
        await box.destroy()
        await driver.close()
    assert not any(d.exists() for d in zygote.cgroup.dirs.values())


async def test_killing_a_sandbox_kills_everything_in_it(
    driver: NamespaceDriver, settings: Settings
) -> None:
    spec = _spec(settings)
    box = await driver.start(spec)
    try:
        code = (
            "import os, time\n"
            "if os.fork() == 0:\n"
            "    os.setsid()\n"
            "    time.sleep(300)\n"
            "print('daemon left')\n"
        )
        assert await run(box, code) == "daemon left"
        assert box.cgroup.pids()  # the agent (and its daemon, if the stage left it)
    finally:
        await box.destroy()
    assert not box.cgroup.pids()
    assert not any(d.exists() for d in box.cgroup.dirs.values())
    await driver.close()


async def test_sandboxes_of_one_zygote_draw_different_random_numbers(
    driver: NamespaceDriver, settings: Settings
) -> None:
    """Forked from one interpreter, yet no shared random state: `random` seeds
    itself in each program (it is not among the pre-started modules)."""
    spec = _spec(settings)
    code = "import random, os, uuid\nprint(random.random(), os.urandom(8).hex(), uuid.uuid4())"
    boxes = [await driver.start(spec) for _ in range(3)]
    try:
        assert len({id(driver._zygotes[spec.rootfs])}) == 1
        draws = [await run(box, code) for box in boxes]
        for i, words in enumerate(zip(*(d.split() for d in draws), strict=True)):
            assert len(set(words)) == 3, (i, draws)
    finally:
        for box in boxes:
            await box.destroy()
        await driver.close()


async def test_sandboxes_asked_for_while_their_zygote_is_replaced_are_all_whole(
    driver: NamespaceDriver, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request in flight when its zygote is replaced is still answered; the
    ones queued behind it go to the successor: none fails, none gets another
    request's sandbox."""
    spec = _spec(settings)
    await (await driver.start(spec)).destroy()
    zygote = driver._zygotes[spec.rootfs]
    replies = HeldReplies(monkeypatch)
    tasks = [asyncio.create_task(driver.start(spec)) for _ in range(5)]
    await replies.out()  # one request out, four queued behind it
    assert zygote.lock.locked()
    zygote.retire()  # what a successor's arrival does
    replies.release.set()
    boxes = await asyncio.wait_for(asyncio.gather(*tasks), 30)
    try:
        assert driver._zygotes[spec.rootfs] is not zygote
        for i, box in enumerate(boxes):
            await run(box, f"open('/tmp/mine', 'w').write('{i}')")
        for i, box in enumerate(boxes):
            assert await run(box, "print(open('/tmp/mine').read())") == str(i)
    finally:
        for box in boxes:
            await box.destroy()
        await driver.close()
    assert zygote.proc is not None and await gone(zygote.proc.pid)


async def test_a_cancelled_request_retires_its_zygote(
    driver: NamespaceDriver, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reply nobody waits for must never be read as the next request's."""
    spec = _spec(settings)
    box = await driver.start(spec)
    await box.destroy()
    zygote = driver._zygotes[spec.rootfs]
    replies = HeldReplies(monkeypatch)
    task = asyncio.create_task(driver.start(spec))
    await replies.out()  # the request is out, its reply not read yet
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert zygote.retiring and zygote.sock is None
    replies.release.set()
    box = await driver.start(spec)
    try:
        assert driver._zygotes[spec.rootfs] is not zygote
        assert await run(box, "print(7)") == "7"
    finally:
        await box.destroy()
        await driver.close()
