"""Interactive runs at the engine (real sandboxes, namespace driver): the agent
streams as the program writes, a consumer that takes nothing holds the program
back, stdin typed during the compile waits for the run, and cancelling the run
leaves nothing behind."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import require_languages, sandbox_cgroups
from tvm.api import CodeExecutionRequest, LimitsIn, build_job
from tvm.config.catalog import Catalog
from tvm.config.settings import Settings
from tvm.pyrovm.agent.stream import WINDOW
from tvm.pyrovm.interactive import Event, Finished, InteractiveRun, Output, StageStarted

pytestmark = pytest.mark.namespace


@pytest.fixture
def own_leaks() -> Iterator[None]:
    """No sandbox cgroup of this process is left once the test and its engine
    are done (the suite-wide ``no_leaks`` also counts other runs on this machine).
    Ask for it before ``engine``, so that it is torn down after it."""
    yield
    deadline = time.monotonic() + 5
    while (left := mine()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"sandbox cgroups left behind: {left}"


def mine() -> list[str]:
    return [p.name for p in sandbox_cgroups() if p.name.startswith(f"{os.getpid()}-")]


FLOOD = """import sys, time
t0 = time.monotonic()
for i in range(1000):
    sys.stdout.write(("%4d %8.3f " % (i, time.monotonic() - t0)).ljust(1023, ".") + "\\n")
    sys.stdout.flush()
"""


def interactive(engine: Any, settings: Settings, catalog: Catalog, **fields: Any) -> InteractiveRun:
    request = CodeExecutionRequest.model_validate(fields)
    run: InteractiveRun = engine.interactive(build_job(request, settings, catalog))
    return run


async def drain(run: InteractiveRun) -> list[Event]:
    events: list[Event] = []
    while not isinstance(events[-1:] and events[-1], Finished):
        events.append(await asyncio.wait_for(run.next_event(), 30))
    return events


async def test_output_arrives_while_the_program_runs(
    own_leaks: None, engine: Any, settings: Settings, catalog: Catalog
) -> None:
    require_languages(settings, "python@3.11.2")
    code = "import time\nprint('first', flush=True)\ntime.sleep(1.5)\nprint('second')\n"
    run = interactive(engine, settings, catalog, language="python", version="3.11.2", code=code)
    task = asyncio.create_task(run.run())
    began = time.monotonic()
    while not isinstance(event := await run.next_event(), Output):
        pass
    assert event.data == b"first\n" and time.monotonic() - began < 1.4
    assert not task.done()
    events = await drain(run)
    assert b"".join(e.data for e in events if isinstance(e, Output)) == b"second\n"
    await task


async def test_a_consumer_that_takes_nothing_holds_the_program_back(
    own_leaks: None, engine: Any, settings: Settings, catalog: Catalog
) -> None:
    require_languages(settings, "python@3.11.2")
    limits = LimitsIn(output_bytes=1 << 20, timeout_ms=20000)
    run = interactive(engine, settings, catalog, language="python", version="3.11.2",
                      code=FLOOD, limits=limits)  # fmt: skip
    task = asyncio.create_task(run.run())
    await asyncio.sleep(3)
    held = sum(len(e.data) for e in list(run._events._queue) if isinstance(e, Output))  # type: ignore[attr-defined]
    assert held <= WINDOW + 65536, f"{held} bytes buffered for a consumer that reads nothing"
    events = await drain(run)
    text = b"".join(e.data for e in events if isinstance(e, Output)).decode().splitlines()
    assert len(text) == 1000
    assert float(text[-1].split()[1]) > 2.5, "the program was never held back"
    assert (await task).status == "ok"


async def test_stdin_typed_during_the_compile_waits_for_the_run(
    own_leaks: None, engine: Any, settings: Settings, catalog: Catalog
) -> None:
    require_languages(settings, "c@12.2.0")
    code = '#include <stdio.h>\nint main(void){char b[32];if(fgets(b,32,stdin))printf("got %s",b);return 0;}'
    run = interactive(engine, settings, catalog, language="c", version="12.2.0", code=code)
    task = asyncio.create_task(run.run())
    while not isinstance(event := await run.next_event(), StageStarted):
        pass
    assert event.stage == "compile"
    run.stdin(b"early\n")  # before the program exists
    run.eof()
    events = await drain(run)
    assert [e.stage for e in events if isinstance(e, StageStarted)] == ["run"]
    response = await task
    assert response.compile is not None and response.compile.status == "ok"
    assert response.run is not None and response.run.stdout == "got early\n"


async def test_cancelling_the_run_destroys_the_sandbox(
    own_leaks: None, engine: Any, settings: Settings, catalog: Catalog
) -> None:
    require_languages(settings, "python@3.11.2")
    code = "import time\nprint('up', flush=True)\ntime.sleep(30)\n"
    run = interactive(engine, settings, catalog, language="python", version="3.11.2", code=code)
    task = asyncio.create_task(run.run())
    while not isinstance(await run.next_event(), Output):
        pass
    assert engine.sandboxes.stats()["active"] == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert engine.sandboxes.stats()["active"] == 0
