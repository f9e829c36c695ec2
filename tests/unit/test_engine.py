from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import pytest

from tests.unit.fakes import FakeDriver, stage_reply
from tvm.api import CodeExecutionRequest, build_job
from tvm.config.catalog import load_catalog
from tvm.config.settings import Settings
from tvm.errors import AgentError, CapacityError
from tvm.pyrovm import pool
from tvm.pyrovm.drivers.messages import StageReply, from_wire
from tvm.pyrovm.engine import Engine, stage_result, verdict
from tvm.pyrovm.images import ImageStore


class AllBuilt(ImageStore):
    def rootfs(self, recipe):  # type: ignore[no-untyped-def]
        return Path("/nonexistent")

    def is_built(self, recipe):  # type: ignore[no-untyped-def]
        return True


def make_engine(driver: FakeDriver, **overrides: object) -> tuple[Engine, Settings]:
    overrides.setdefault("pool_size", 0)  # no warm pools unless a test asks for them
    settings = Settings(**overrides)  # type: ignore[arg-type]
    return Engine(settings, load_catalog(), driver, AllBuilt(settings)), settings


async def run(engine: Engine, settings: Settings, **request: object):  # type: ignore[no-untyped-def]
    return await engine.execute(build_job(CodeExecutionRequest(**request), settings))  # type: ignore[arg-type]


async def test_interpreted_single_run() -> None:
    driver = FakeDriver()
    engine, settings = make_engine(driver)
    await engine.start()
    result = await run(engine, settings, language="python", code="x", stdin="in ", args=["a"])
    await engine.close()
    assert result.status == "ok" and result.compile is None
    assert result.run is not None and result.run.stdout == "in a"
    assert len(driver.started) == 1 and driver.started[0].destroyed


async def test_compile_error_stops_before_run() -> None:
    engine, settings = make_engine(FakeDriver())
    result = await run(engine, settings, language="c", code="SYNTAX")
    assert result.status == "compile_error"
    assert result.compile is not None and result.compile.stderr == "error"
    assert result.run is None


async def test_compile_once_run_each_case_in_a_fresh_sandbox() -> None:
    driver = FakeDriver()
    engine, settings = make_engine(driver)
    result = await run(
        engine, settings, language="c", code="int main(){}",
        tests=[{"stdin": "1", "expected_output": "1"}, {"stdin": "2", "expected_output": "3"},
               {"stdin": "4"}],
    )  # fmt: skip
    await engine.close()  # the cases' sandboxes are destroyed just after the response
    assert [t.verdict for t in result.tests or []] == ["accepted", "wrong_answer", None]
    compiles = [
        r
        for sb in driver.started
        for r in sb.requests
        if r["type"] == "stage" and r["name"] == "compile"
    ]
    assert len(compiles) == 1
    assert len(driver.started) == 4  # one compile sandbox + one per case
    assert all(sb.destroyed for sb in driver.started)
    unpacked = [sb for sb in driver.started if any(r["type"] == "unpack" for r in sb.requests)]
    assert len(unpacked) == 3


async def test_agent_failure_is_an_internal_error_result() -> None:
    def boom(message, sandbox):  # type: ignore[no-untyped-def]
        raise AgentError("agent died")

    driver = FakeDriver(boom)
    engine, settings = make_engine(driver)
    result = await run(engine, settings, language="python", code="x")
    assert result.status == "internal_error"
    assert result.message == "agent died"
    await settle(engine)
    assert driver.started[0].destroyed


async def test_agent_error_reply_becomes_internal_error() -> None:
    def refuse(message, sandbox):  # type: ignore[no-untyped-def]
        return {"type": "error", "message": "nope"}

    engine, settings = make_engine(FakeDriver(refuse))
    result = await run(engine, settings, language="python", code="x")
    assert result.status == "internal_error"
    assert "nope" in (result.message or "")
    assert result.run is not None and result.run.status == "internal_error"


async def test_admission_beyond_max_concurrent_requests_is_429() -> None:
    gate = asyncio.Event()
    driver = FakeDriver(gate=gate)
    engine, settings = make_engine(driver, max_concurrent_requests=2, max_concurrent_vms=1)
    first = [
        asyncio.create_task(run(engine, settings, language="python", code="x")) for _ in range(2)
    ]
    await asyncio.sleep(0.05)
    with pytest.raises(CapacityError) as err:
        await run(engine, settings, language="python", code="x")
    assert err.value.retry_after >= 1
    assert engine.sandboxes.count == 1  # the second waits for a sandbox slot
    gate.set()
    results = await asyncio.gather(*first)
    assert all(r.status == "ok" for r in results)
    for _ in range(200):  # teardown runs in a task of its own, after the response
        if engine.sandboxes.count == 0:
            break
        await asyncio.sleep(0.005)
    assert engine.sandboxes.count == 0 and engine.admitted == 0


async def test_a_sandbox_is_destroyed_just_after_its_response(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its teardown and its pool's refill wait RELEASE_DELAY_SECONDS (the
    response goes out first), unless a job waits for its capacity."""
    monkeypatch.setattr(pool, "RELEASE_DELAY_SECONDS", 0.2)
    driver = FakeDriver()
    engine, settings = make_engine(driver, max_concurrent_vms=1)
    first = await run(engine, settings, language="python", code="x")
    assert first.status == "ok" and not driver.started[0].destroyed
    await asyncio.sleep(0.05)
    assert not driver.started[0].destroyed and engine.sandboxes.count == 1
    await asyncio.sleep(0.3)
    assert driver.started[0].destroyed and engine.sandboxes.count == 0

    monkeypatch.setattr(pool, "RELEASE_DELAY_SECONDS", 30.0)
    await run(engine, settings, language="python", code="x")
    started = time.monotonic()
    second = await run(engine, settings, language="python", code="x")  # waits for the slot
    assert second.status == "ok" and time.monotonic() - started < 5
    assert driver.started[1].destroyed
    await engine.close()
    assert all(sb.destroyed for sb in driver.started)


async def test_a_batchs_cases_get_one_stage_sandboxes_made_while_it_compiles() -> None:
    gate = asyncio.Event()  # every stage waits for it: the compile is under way
    driver = FakeDriver(gate=gate)
    engine, settings = make_engine(
        driver, pool_size=1, pool_max=4, pool_languages=[], pool_memory_mb=1000,
        max_concurrent_vms=10,
    )  # fmt: skip
    java = load_catalog().resolve("java")
    assert java.warm_compiler is not None
    cases = [{"stdin": str(i), "expected_output": str(i)} for i in range(6)]
    task = asyncio.create_task(run(engine, settings, language="java", code="x", tests=cases))
    for _ in range(100):
        if any(r["type"] == "stage" for sb in driver.started for r in sb.requests):
            break
        await asyncio.sleep(0.01)
    await settle(engine)
    key = engine.sandboxes.pool_key(java, run_only=True)
    made_ahead = list(engine.sandboxes.warm[key])
    # While the program compiles, its cases' sandboxes are made (as many as the
    # pool may hold): for one stage each, and with no compiler pre-started.
    assert len(made_ahead) == 4, engine.sandboxes.stats()
    assert all(sb.spec.stages == 1 and sb.spec.warm_compiler is None for sb in made_ahead)
    gate.set()
    result = await task
    assert [t.status for t in result.tests or []] == ["ok"] * 6
    ran = [sb for sb in driver.started if any(r["type"] == "unpack" for r in sb.requests)]
    assert len(ran) == 6 and set(made_ahead) <= set(ran)
    assert all(sb.spec.stages == 1 and sb.spec.warm_compiler is None for sb in ran)
    assert engine.sandboxes.demand[key].expected == 0
    await engine.close()


async def test_a_batch_that_does_not_compile_expects_no_cases() -> None:
    engine, settings = make_engine(
        FakeDriver(), pool_size=1, pool_max=4, pool_languages=[], pool_memory_mb=1000
    )
    c = load_catalog().resolve("c")
    cases = [{"stdin": "1", "expected_output": "1"}] * 5
    result = await run(engine, settings, language="c", code="SYNTAX", tests=cases)
    assert result.status == "compile_error"
    key = engine.sandboxes.pool_key(c, run_only=True)
    assert engine.sandboxes.demand[key].expected == 0
    engine.sandboxes.retune()
    assert engine.sandboxes.targets[key] == 1  # its pool_size, not the 5 cases
    await engine.close()


async def test_warm_pool_hands_over_and_refills() -> None:
    driver = FakeDriver()
    engine, settings = make_engine(driver, max_concurrent_vms=3)
    python = load_catalog().resolve("python")
    engine.sandboxes.set_pool_target(python, 2)
    for _ in range(50):
        await asyncio.sleep(0.01)
        if len(engine.sandboxes.warm[python.key]) == 2:
            break
    assert len(engine.sandboxes.warm[python.key]) == 2
    result = await run(engine, settings, language="python", code="x")
    assert result.status == "ok"
    # The job ran in a warm sandbox (handed over, then destroyed) ...
    used = [sb for sb in driver.started[:2] if any(r["type"] == "stage" for r in sb.requests)]
    assert len(used) == 1
    # ... and the pool refills to its target with a new one.
    for _ in range(50):
        if len(engine.sandboxes.warm[python.key]) == 2 and used[0].destroyed:
            break
        await asyncio.sleep(0.01)
    assert used[0].destroyed
    assert len(engine.sandboxes.warm[python.key]) == 2 and len(driver.started) == 3
    assert used[0] not in engine.sandboxes.warm[python.key]
    # A job for another language evicts an idle warm sandbox when the worker is full.
    engine.sandboxes.capacity = engine.sandboxes.count
    result = await run(engine, settings, language="bash", code="x")
    assert result.status == "ok"
    await engine.close()
    assert engine.sandboxes.count == 0
    assert all(sb.destroyed for sb in driver.started)


async def test_reaper_destroys_overdue_sandboxes() -> None:
    gate = asyncio.Event()
    driver = FakeDriver(gate=gate)
    engine, settings = make_engine(driver, max_vm_lifetime_seconds=1)
    await engine.start()
    task = asyncio.create_task(run(engine, settings, language="python", code="x"))
    for _ in range(40):
        await asyncio.sleep(0.1)
        if engine.sandboxes.reaped:
            break
    assert engine.sandboxes.reaped == 1
    assert driver.started[0].destroyed
    gate.set()
    await task
    await engine.close()


def test_verdict_ignores_trailing_whitespace() -> None:
    assert verdict("1 \n2\n\n", "1\n2") == "accepted"
    assert verdict("1\r\n2", "1\n2\n") == "accepted"
    assert verdict("1\n3", "1\n2") == "wrong_answer"
    assert verdict("x", None) is None


def test_a_stage_result_carries_the_agents_measurements() -> None:
    reply = from_wire(stage_reply(b"\xffout", "signal", None, "SIGSEGV", b"err"))
    assert isinstance(reply, StageReply)
    reply = replace(reply, cpu_ms=17, wall_ms=29, memory_kb=4242, stderr_truncated=True)
    text = stage_result(reply)
    assert (text.status, text.exit_code, text.signal) == ("signal", None, "SIGSEGV")
    assert text.stdout == "\ufffdout" and text.stderr == "err" and text.output == "\ufffdouterr"
    assert (text.cpu_ms, text.wall_ms, text.memory_kb, text.truncated) == (17, 29, 4242, True)
    b64 = stage_result(reply, "base64")
    assert b64.stdout == "/291dA==" and b64.output == "/291dGVycg=="


async def settle(engine: Engine) -> None:
    for _ in range(20):
        await asyncio.sleep(0.01)


async def test_pools_follow_demand_within_budget() -> None:
    driver = FakeDriver()
    engine, settings = make_engine(
        driver, pool_size=1, pool_max=3, pool_languages=[], pool_memory_mb=48,
        pool_sandbox_mb=24, pool_idle_seconds=60, max_concurrent_vms=10,
    )  # fmt: skip
    catalog = load_catalog()
    python, bash, c = (catalog.resolve(n) for n in ("python", "bash", "c"))
    assert engine.sandboxes.targets == {}  # nothing used yet: nothing warm
    for lang in (python, bash, c):
        await run(engine, settings, language=lang.name, code="x")
        engine.sandboxes.retune()
        await settle(engine)
    targets = engine.sandboxes.targets
    # A budget of two warm sandboxes: the two most recently used languages get one each.
    assert sum(targets.values()) == 2 and targets[c.key] == 1 and targets[bash.key] == 1
    assert len(engine.sandboxes.warm[c.key]) == 1
    # Idle languages shrink to nothing.
    settings.pool_idle_seconds = 0.01
    await asyncio.sleep(0.05)
    engine.sandboxes.retune()
    await settle(engine)
    assert sum(engine.sandboxes.targets.values()) == 0
    assert not any(engine.sandboxes.warm.values())
    assert engine.sandboxes.count == 0
    await engine.close()


async def test_busy_language_gets_a_bigger_pool() -> None:
    engine, settings = make_engine(
        FakeDriver(), pool_size=1, pool_max=4, pool_languages=[], pool_memory_mb=1000
    )
    python = load_catalog().resolve("python")
    for _ in range(10):
        await run(engine, settings, language="python", code="x")
    engine.sandboxes.demand[python.key].start_seconds = 0.5  # slow to start: keep more warm
    engine.sandboxes.retune()
    assert engine.sandboxes.targets[python.key] == 4  # 1 + ceil(rate x start x 2), capped
    await engine.close()


async def test_a_burst_grows_the_pool_at_once_and_it_shrinks_after_a_hold() -> None:
    engine, settings = make_engine(
        FakeDriver(), pool_size=1, pool_max=8, pool_languages=[], pool_memory_mb=1000,
        pool_idle_seconds=600,
    )  # fmt: skip
    python = load_catalog().resolve("python")
    await run(engine, settings, language="python", code="x")
    demand = engine.sandboxes.demand[python.key]
    demand.start_seconds = 0.1
    t0 = time.monotonic()
    demand.arrivals.extend(t0 + i / 10 for i in range(8))  # 10/s for 0.7 s
    engine.sandboxes.retune(now=t0 + 1.0)
    # 8 takes in the last second: 1 + ceil(8/s x 0.1 s x 2), at once.
    assert engine.sandboxes.targets[python.key] == 3
    engine.sandboxes.retune(now=t0 + 10.0)  # quiet since: the rate is under 1/s
    assert demand.rate < 1 and engine.sandboxes.targets[python.key] == 3  # held
    engine.sandboxes.retune(now=t0 + 1.0 + pool.HOLD_SECONDS)
    assert engine.sandboxes.targets[python.key] == 2  # 0.4/s: 1 + ceil(0.08)
    # None left in the window, and the hold is over.
    engine.sandboxes.retune(now=t0 + 2 + 2 * pool.HOLD_SECONDS)
    assert demand.rate == 0 and engine.sandboxes.targets[python.key] == 1
    await engine.close()


async def test_a_steady_slow_stream_keeps_its_pool_and_never_remakes_a_sandbox() -> None:
    """A language taken every 4.5 s whose warm sandbox takes 3 s to make (a
    pre-started compiler): its target settles and stays; no warm sandbox is
    destroyed between two requests to be made again for the next."""
    driver = FakeDriver()
    engine, settings = make_engine(
        driver, pool_size=1, pool_max=4, pool_languages=[], pool_memory_mb=1000,
        pool_idle_seconds=600,
    )  # fmt: skip
    kotlin = load_catalog().resolve("kotlin")
    await run(engine, settings, language="kotlin", code="fun main() {}")
    demand = engine.sandboxes.demand[kotlin.key]
    t0 = time.monotonic()
    targets = []
    for second in range(90):
        now = t0 + second
        if second % 9 in (0, 4):  # two takes every 9 s
            demand.arrivals.append(now)
        demand.start_seconds = 3.0  # each fake fill measures its own: set it back
        engine.sandboxes.retune(now=now)
        targets.append(engine.sandboxes.targets[kotlin.key])
        for _ in range(5):  # let the pool fill (and shrink) as it would
            await asyncio.sleep(0)
    settled = targets[30:]
    assert len(set(settled)) == 1, targets
    assert settled[0] == 3  # 1 + ceil(0.22/s x 3 s x 2)
    await settle(engine)
    assert not any(sb.destroyed for sb in driver.started[1:]), "a warm sandbox was remade"
    await engine.close()


async def test_under_a_tight_budget_demand_outranks_idle_pinned_languages() -> None:
    engine, settings = make_engine(
        FakeDriver(), pool_size=1, pool_max=4, pool_languages=["bash", "c", "c++"],
        max_concurrent_vms=5, pool_memory_mb=1000,
    )  # fmt: skip
    await engine.start()
    catalog = load_catalog()
    python, ruby = catalog.resolve("python"), catalog.resolve("ruby")
    await run(engine, settings, language="ruby", code="x")  # used once: rarely
    for _ in range(20):
        await run(engine, settings, language="python", code="x")
    engine.sandboxes.demand[python.key].start_seconds = 0.1
    engine.sandboxes.retune()
    targets = engine.sandboxes.targets
    # 5 slots: the rare language keeps its one, the busy one gets 4 - nothing left
    # for the pinned languages nobody uses.
    assert targets[ruby.key] == 1 and targets[python.key] == 4, targets
    assert sum(targets.values()) == 5
    await engine.close()


async def test_pinned_languages_are_warm_from_the_start() -> None:
    engine, _ = make_engine(FakeDriver(), pool_size=2, pool_languages=["python"])
    await engine.start()
    await settle(engine)
    newest = load_catalog().resolve("python")
    assert len(engine.sandboxes.warm[newest.key]) == 2
    await engine.close()


async def test_a_silent_agent_is_an_agent_error_and_the_sandbox_is_destroyed() -> None:
    from pathlib import Path as _Path

    from tests.unit.fakes import FakeSandbox
    from tvm.pyrovm.drivers.base import SandboxSpec

    sandbox = FakeSandbox(SandboxSpec(image="x", rootfs=_Path("/x"), uid=60000), None, None)  # type: ignore[arg-type]
    with pytest.raises(AgentError, match="did not answer within 0.05 s"):
        await sandbox.ready(0.05)  # the fake never says hello
    assert sandbox.destroyed


@pytest.mark.parametrize(
    "names",
    [["main.c"], ["b.c", "a.c", "x.h"], ["main.cpp", "lib/util.cpp", ".hidden.c"], ["My Prog.rs"]],
)
def test_compile_commands_without_a_shell_expand_as_sh_does(
    names: list[str], tmp_path: Path
) -> None:
    """Every catalog compile command the engine runs without ``sh`` gets the
    argv that ``sh -c COMMAND compile NAMES...`` would give it."""
    import subprocess

    from tvm.pyrovm.engine import plain_argv

    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    commands = {lang.compile for lang in load_catalog() if lang.compile}
    commands |= {"cc -o a.out *.zz", "cc [ab].c", "cc *", "cc .*.c", 'cc "$@" "$1"'}
    direct = 0
    for command in sorted(commands):
        argv = plain_argv(command, names)
        if argv is None:
            continue
        direct += 1
        shell = subprocess.run(
            ["/bin/sh", "-c", f"printf '%s\\n' {command}", "compile", *names],
            cwd=tmp_path, capture_output=True, text=True, check=True,
        ).stdout.splitlines()  # fmt: skip
        assert argv == shell, command
    assert direct >= 10  # most commands need no shell


def test_the_run_stage_runs_the_first_file_by_its_given_name() -> None:
    """As Piston does: ``{source}`` is the request's first file, whatever it is called."""
    from tvm.pyrovm.engine import run_argv

    catalog = load_catalog()
    python = catalog.resolve("python", "3.13.5")
    files = [("solution.py", b"", 0o644), ("helper.py", b"", 0o644)]
    assert run_argv(python, files, ["x"]) == ["python3", "solution.py", "x"]
    assert run_argv(python, [], []) == ["python3", "main.py"]
    job = build_job(
        CodeExecutionRequest(language="ruby", files=[{"name": "a/b.rb", "content": "p 1"}]),
        Settings(),
    )
    assert run_argv(job.language, job.files, [])[-1] == "a/b.rb"
    c = catalog.resolve("c", "14.2.0")
    assert run_argv(c, [("x.c", b"", 0o644)], []) == ["./a.out"]
