"""One behaviour suite, run against every isolation driver usable on this host.

Each driver gets one shared sandbox for the cheap checks (a VM boot under a
software CPU takes seconds) plus fresh sandboxes for the checks that end or
must observe a whole sandbox. Drivers whose probe fails are skipped with the
probe's reason.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import pytest
import pytest_asyncio

from tvm.config.catalog import StageLimits, load_catalog
from tvm.config.settings import Settings
from tvm.pyrovm import drivers
from tvm.pyrovm.drivers.base import Driver, Sandbox, SandboxSpec
from tvm.pyrovm.drivers.messages import StageReply
from tvm.pyrovm.images import ImageStore

LIMITS = StageLimits(
    timeout_ms=10_000,
    cpu_time_ms=10_000,
    memory_mb=256,
    processes=32,
    output_bytes=1 << 16,
    file_size_kb=1024,
    open_files=64,
)
UID = 60999
DRIVER_NAMES = list(drivers.DRIVERS)


def _make_driver(name: str, settings: Settings) -> Driver:
    availability = drivers.probe_all(settings)[name]
    if not availability.usable:
        pytest.skip(f"driver {name} unusable here: {availability.reason}")
    return drivers.driver_class(name)(settings)


def _spec(settings: Settings, memory_mb: int = 384) -> SandboxSpec:
    language = load_catalog().get("python@3.11.2")
    store = ImageStore(settings)
    if not store.is_built(language.image):
        pytest.skip(f"image {language.image.name} not built (run: tvm images build)")
    return SandboxSpec(
        image=language.image.name,
        rootfs=store.rootfs(language.image),
        uid=UID,
        memory_mb=memory_mb,
        processes=64,
    )


@pytest.fixture(scope="module", params=DRIVER_NAMES)
def driver_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    _make_driver(name, Settings())  # skips with the reason
    return name


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sandbox(driver_name: str) -> AsyncIterator[Sandbox]:
    driver = _make_driver(driver_name, Settings())
    box = await driver.start(_spec(Settings()))
    try:
        yield box
    finally:
        await box.destroy()
        await driver.close()


async def py(box: Sandbox, code: str, stdin: bytes = b"", limits: StageLimits = LIMITS,
             args: tuple[str, ...] = ()) -> StageReply:  # fmt: skip
    return await box.run_stage("run", ["python3", "-c", code, *args], stdin, limits)


pytestmark = pytest.mark.asyncio(loop_scope="module")


def _test_processes() -> set[str]:
    """Host processes running as the test's program uid (nobody else uses it)."""
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}").st_uid == UID:
                found.add(pid)
        except OSError:
            continue
    return found


def sandbox_leftovers(box: Sandbox) -> list[str]:
    """What this sandbox still holds on the host after destroy(): what it said
    it held (its VMM or runtime process, cgroups, temp dirs), and any process
    of its uid."""
    return box.host_resources().left() + [f"uid-{UID} process {pid}" for pid in _test_processes()]


@pytest.fixture
def leak_guard() -> Iterator[list[Sandbox]]:
    """Collects the test's sandboxes; afterwards none may have left anything."""
    boxes: list[Sandbox] = []
    yield boxes
    deadline = time.monotonic() + 5
    while True:
        left = [item for box in boxes for item in sandbox_leftovers(box)]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not left, f"left behind: {left}"


async def test_hello_world(sandbox: Sandbox) -> None:
    result = await py(sandbox, "print('hello, world')")
    assert result.status == "ok", result
    assert result.stdout == b"hello, world\n"
    assert result.exit_code == 0


async def test_stdin_and_args(sandbox: Sandbox) -> None:
    code = "import sys; print(sys.stdin.read().upper(), sys.argv[1:])"
    result = await py(sandbox, code, b"abc", args=("x", "y z"))
    assert result.stdout == b"ABC ['x', 'y z']\n", result


async def test_files_are_written_for_the_program(sandbox: Sandbox) -> None:
    await sandbox.write_files([("main.py", b"print(open('data.txt').read())", 0o644),
                               ("data.txt", b"from a file", 0o644)])  # fmt: skip
    result = await sandbox.run_stage("run", ["python3", "main.py"], b"", LIMITS)
    assert result.stdout == b"from a file\n", result


async def test_runtime_error(sandbox: Sandbox) -> None:
    result = await py(sandbox, "import sys; print('oops', file=sys.stderr); sys.exit(3)")
    assert result.status == "runtime_error"
    assert result.exit_code == 3
    assert b"oops" in result.stderr


async def test_a_program_that_cannot_be_executed(sandbox: Sandbox) -> None:
    """Found on PATH or not, the runner reports it as a shell would: 127, 126."""
    missing = await sandbox.run_stage("run", ["no-such-program", "x"], b"", LIMITS)
    assert (missing.status, missing.exit_code) == ("runtime_error", 127), missing
    assert missing.stderr == b"tvm: cannot execute no-such-program: No such file or directory\n"
    await sandbox.write_files([("script", b"#!/bin/sh\necho ran\n", 0o644)])  # not executable
    blocked = await sandbox.run_stage("run", ["./script"], b"", LIMITS)
    assert (blocked.exit_code, blocked.stderr) == (
        126, b"tvm: cannot execute ./script: Permission denied\n")  # fmt: skip
    found = await sandbox.run_stage("run", ["env"], b"", LIMITS)  # on the sandbox's PATH
    assert found.exit_code == 0 and b"PATH=" in found.stdout, found


async def test_timeout(sandbox: Sandbox) -> None:
    limits = replace(LIMITS, timeout_ms=1500, cpu_time_ms=1000)
    result = await py(sandbox, "while True: pass", limits=limits)
    assert result.status == "timeout", result


async def test_output_limit(sandbox: Sandbox) -> None:
    limits = replace(LIMITS, output_bytes=1000)
    result = await py(sandbox, "print('x' * 100000)", limits=limits)
    assert result.status == "output_limit"
    assert len(result.stdout) <= 1000
    assert result.stdout_truncated


async def test_program_has_own_uid_and_no_capabilities(sandbox: Sandbox) -> None:
    code = (
        "import os; s = open('/proc/self/status').read();"
        "print(os.getuid(), [l for l in s.splitlines() if l.startswith('CapEff')][0].split()[1])"
    )
    result = await py(sandbox, code)
    assert result.stdout.split() == [str(UID).encode(), b"0000000000000000"], result


async def test_image_is_read_only_and_no_network(sandbox: Sandbox) -> None:
    code = (
        "import socket\n"
        "try:\n open('/usr/tvm-probe', 'w'); print('WRITABLE')\n"
        "except OSError as e: print('ro', e.errno)\n"
        "s = socket.socket(); s.settimeout(2)\n"
        "try:\n s.connect(('1.1.1.1', 80)); print('ONLINE')\n"
        "except OSError: print('offline')\n"
    )
    result = await py(sandbox, code)
    assert b"WRITABLE" not in result.stdout and b"ONLINE" not in result.stdout, result
    assert b"offline" in result.stdout


async def test_processes_are_cleaned_up_between_stages(sandbox: Sandbox) -> None:
    started = await sandbox.run_stage(
        "run", ["sh", "-c", "sleep 300 & sleep 300 & echo started"], b"", LIMITS
    )
    assert started.stdout == b"started\n"
    code = (
        "import os\n"
        "me = os.getpid()\n"
        "left = [p for p in os.listdir('/proc') if p.isdigit() and int(p) != me\n"
        "        and os.stat('/proc/' + p).st_uid == os.getuid()]\n"
        "print(len(left))"
    )
    result = await py(sandbox, code)
    assert result.stdout == b"0\n", result


async def test_memory_limit(driver_name: str, leak_guard: list[Sandbox]) -> None:
    driver = _make_driver(driver_name, Settings())
    box = await driver.start(_spec(Settings()))
    leak_guard.append(box)
    try:
        limits = replace(LIMITS, memory_mb=64)
        code = "b = []\nfor i in range(60): b.append(bytearray(8 << 20))\nprint('survived')"
        result = await py(box, code, limits=limits)
        assert result.status == "memory_limit", result
        assert b"survived" not in result.stdout
    finally:
        await box.destroy()
        await box.destroy()  # safe twice
        await driver.close()


async def test_destroy_leaves_nothing(driver_name: str, leak_guard: list[Sandbox]) -> None:
    driver = _make_driver(driver_name, Settings())
    box = await driver.start(_spec(Settings()))
    leak_guard.append(box)
    # What the leak check looks for is there while the sandbox lives.
    held = box.host_resources()
    assert held.cgroups or held.processes, held
    assert len(box.host_resources().left()) == len(held.processes + held.cgroups + held.paths)
    result = await box.run_stage("run", ["sh", "-c", "sleep 300 & echo up"], b"", LIMITS)
    assert result.stdout == b"up\n"
    await asyncio.gather(box.destroy(), box.destroy())
    assert box.destroyed
    await driver.close()


async def _streamed(box: Sandbox, code: str, lines: list[bytes], terminal: dict[str, int] | None,
                    eof: bool) -> tuple[list[bytes], StageReply]:  # fmt: skip
    """A streamed stage fed ``lines`` one at a time, each after some output came."""
    from tvm.pyrovm.drivers.messages import Ack, Stdin

    chunks: list[bytes] = []
    todo = list(lines)
    argv = ["python3", "-c", code]
    async with box.stage("run", argv, b"", LIMITS, stream=True, terminal=terminal) as run:
        async for event in run:
            assert event.event == "output"
            data = base64.b64decode(event.data["data"])
            chunks.append(data)
            await run.send(Ack(len(data)))
            if todo:
                await run.send(Stdin(todo.pop(0), eof=eof and not todo))
    return chunks, run.result


async def test_streamed_stage_echoes_line_by_line(sandbox: Sandbox) -> None:
    code = "import sys\nprint('ready', flush=True)\nfor l in sys.stdin: print('got', l.strip(), flush=True)"
    chunks, result = await _streamed(sandbox, code, [b"a\n", b"b\n"], None, eof=True)
    assert result.status == "ok", result
    assert b"".join(chunks) == result.stdout == b"ready\ngot a\ngot b\n"
    assert len(chunks) >= 3  # each line came on its own, before the program ended


async def test_streamed_stage_on_a_terminal(sandbox: Sandbox) -> None:
    code = "import os\nprint('tty', os.isatty(0), os.get_terminal_size(), flush=True)\nprint('read', input())"
    chunks, result = await _streamed(
        sandbox, code, [b"typed\r"], {"rows": 12, "cols": 34}, eof=False
    )
    assert result.status == "ok", result
    text = b"".join(chunks)
    assert b"tty True os.terminal_size(columns=34, lines=12)" in text and b"read typed" in text
