"""The namespace driver's zygotes: replaced in time, survivable, never shared state.

Each image's sandboxes are forked from one zygote; these tests drive the real
driver (real bubblewrap, namespaces and cgroups) through a zygote's life, and
watch it from the host: a sandbox's holder process (what the sandbox says it
holds) is a child of the zygote that forked it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import namespace_unavailable
from tests.contract.test_drivers import LIMITS, _spec
from tvm.config.settings import Settings
from tvm.pyrovm.drivers import zygote_client
from tvm.pyrovm.drivers.base import Sandbox
from tvm.pyrovm.drivers.namespace import NamespaceDriver

pytestmark = [pytest.mark.namespace]

HASH = "print(hash('tvm'))"


def make_driver(settings: Settings, zygote_max_age: float | None = None) -> NamespaceDriver:
    reason = namespace_unavailable(settings)
    if reason:
        pytest.skip(reason)
    if zygote_max_age is None:
        return NamespaceDriver(settings)
    return NamespaceDriver(settings, zygote_max_age=zygote_max_age)


@pytest.fixture
def driver(settings: Settings) -> NamespaceDriver:
    return make_driver(settings)


def _status(pid: int, key: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return line.split()[1]
    raise AssertionError(f"/proc/{pid}/status has no {key}")


def zygote_of(box: Sandbox) -> int:
    """The pid of the zygote that forked ``box`` (its holder's parent)."""
    (holder,) = box.host_resources().processes
    return int(_status(holder, "PPid"))


def cgroups_of(pid: int) -> list[Path]:
    """The cgroup directories a process is in, below the hierarchy roots."""
    dirs = []
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if path == "/":
            continue
        controller = controllers.split(",")[0].removeprefix("name=")
        dirs.append(Path("/sys/fs/cgroup", controller, path.lstrip("/")))
    return dirs


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
    """Whether process ``pid`` is gone (or a zombie) now or within ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)


async def test_a_zygote_is_replaced_after_its_age_and_its_sandboxes_live_on(
    settings: Settings,
) -> None:
    driver = make_driver(settings, zygote_max_age=0.5)
    spec = _spec(settings)
    first = await driver.start(spec)
    try:
        old = zygote_of(first)
        old_cgroups = cgroups_of(old)
        assert old_cgroups
        seed_before = await run(first, HASH)
        await asyncio.sleep(0.6)
        second = await driver.start(spec)
        try:
            assert zygote_of(second) != old  # a fresh interpreter: a fresh hash secret
            assert await run(second, HASH) != seed_before
            # The old zygote waits for the sandboxes it made ...
            await asyncio.sleep(0.3)
            assert not await gone(old, within=0)
            assert await run(first, "print('still here')") == "still here"
            await first.destroy()
            # ... then goes, and so does its cgroup.
            assert await gone(old)
            deadline = time.monotonic() + 5
            while any(d.exists() for d in old_cgroups):
                assert time.monotonic() < deadline, old_cgroups
                await asyncio.sleep(0.05)
        finally:
            await second.destroy()
    finally:
        await first.destroy()
        await driver.close()


async def test_a_successor_is_ready_before_a_zygote_is_too_old(settings: Settings) -> None:
    # An age long enough that a loaded host still starts the second sandbox
    # before the zygote is too old (1.2 s of margin).
    driver = make_driver(settings, zygote_max_age=8.0)
    spec = _spec(settings)
    first = await driver.start(spec)
    old = zygote_of(first)
    await asyncio.sleep(6.8)  # past 80% of its age: the next start begins a successor
    second = await driver.start(spec)
    others: list[Sandbox] = []
    try:
        assert zygote_of(second) == old  # served at once, by the zygote still current
        # The successor comes up in the background: a later sandbox is its.
        deadline = time.monotonic() + 10
        while True:
            box = await driver.start(spec)
            others.append(box)
            if zygote_of(box) != old:
                break
            assert time.monotonic() < deadline, "no successor zygote"
            await asyncio.sleep(0.05)
        # Both sandboxes of the old zygote still work; then it goes.
        assert await run(first, "print(1)") == "1" and await run(second, "print(2)") == "2"
    finally:
        for box in [first, second, *others]:
            await box.destroy()
    assert await gone(old)
    await driver.close()


async def test_a_dead_zygote_is_started_again(driver: NamespaceDriver, settings: Settings) -> None:
    spec = _spec(settings)
    box = await driver.start(spec)
    zygote = zygote_of(box)
    zygote_cgroups = cgroups_of(zygote)
    await box.destroy()
    os.kill(int(_status(zygote, "PPid")), signal.SIGKILL)  # bwrap; the zygote dies with it
    assert await gone(zygote)
    box = await driver.start(spec)
    try:
        assert zygote_of(box) != zygote
        assert await run(box, "print(6 * 7)") == "42"
    finally:
        await box.destroy()
        await driver.close()
    assert zygote_cgroups and not any(d.exists() for d in zygote_cgroups)


def _pids(cgroups: tuple[Path, ...]) -> list[int]:
    pids: set[int] = set()
    for directory in cgroups:
        if directory.exists():
            pids.update(int(p) for p in (directory / "cgroup.procs").read_text().split())
    return sorted(pids)


async def test_killing_a_sandbox_kills_everything_in_it(
    driver: NamespaceDriver, settings: Settings
) -> None:
    spec = _spec(settings)
    box = await driver.start(spec)
    cgroups = box.host_resources().cgroups
    try:
        code = (
            "import os, time\n"
            "if os.fork() == 0:\n"
            "    os.setsid()\n"
            "    time.sleep(300)\n"
            "print('daemon left')\n"
        )
        assert await run(box, code) == "daemon left"
        assert _pids(cgroups)  # the agent (and its daemon, if the stage left it)
    finally:
        await box.destroy()
    assert not _pids(cgroups)
    assert not any(d.exists() for d in cgroups)
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
        assert len({zygote_of(box) for box in boxes}) == 1  # one interpreter forked them all
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
    first = await driver.start(spec)
    old = zygote_of(first)
    await first.destroy()
    zygote = await driver.zygote(spec.rootfs)
    replies = HeldReplies(monkeypatch)
    tasks = [asyncio.create_task(driver.start(spec)) for _ in range(5)]
    await replies.out()  # one request out, four queued behind it
    zygote.retire()  # what a successor's arrival does
    replies.release.set()
    boxes = await asyncio.wait_for(asyncio.gather(*tasks), 30)
    try:
        makers = [zygote_of(box) for box in boxes]
        assert makers.count(old) == 1, makers  # the one in flight; the rest: its successor
        for i, box in enumerate(boxes):
            await run(box, f"open('/tmp/mine', 'w').write('{i}')")
        for i, box in enumerate(boxes):
            assert await run(box, "print(open('/tmp/mine').read())") == str(i)
    finally:
        for box in boxes:
            await box.destroy()
        await driver.close()
    assert await gone(old)


async def test_a_cancelled_request_retires_its_zygote(
    driver: NamespaceDriver, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reply nobody waits for must never be read as the next request's."""
    spec = _spec(settings)
    box = await driver.start(spec)
    old = zygote_of(box)
    await box.destroy()
    replies = HeldReplies(monkeypatch)
    task = asyncio.create_task(driver.start(spec))
    await replies.out()  # the request is out, its reply not read yet
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    replies.release.set()
    box = await driver.start(spec)
    try:
        assert zygote_of(box) != old  # the next sandbox comes from a successor
        assert await run(box, "print(7)") == "7"
    finally:
        await box.destroy()
        await driver.close()
    assert await gone(old)


async def test_the_zygote_and_its_agents_have_an_empty_bounding_set(
    driver: NamespaceDriver, settings: Settings
) -> None:
    """The zygote empties its bounding set once, before it forks anything, and
    keeps the capabilities it builds sandboxes with; each agent inherits the
    empty set and holds CAP_SETUID and CAP_SETGID only, with nothing
    inheritable or ambient (the program's own sets: test_containment.py)."""
    box = await driver.start(_spec(settings))
    try:
        (agent,) = box.host_resources().processes
        zygote = zygote_of(box)
        assert int(_status(zygote, "CapBnd"), 16) == 0
        assert int(_status(zygote, "CapEff"), 16) & (1 << 21)  # CAP_SYS_ADMIN, still
        assert int(_status(agent, "CapEff"), 16) == int(_status(agent, "CapPrm"), 16) == 0xC0
        for key in ("CapBnd", "CapInh", "CapAmb"):
            assert int(_status(agent, key), 16) == 0, key
        assert await run(box, "print(7)") == "7"  # and it still serves
    finally:
        await box.destroy()
        await driver.close()
