"""Sandbox lifecycle on one worker: capacity, uids, warm pools, the reaper.

* At most ``max_concurrent_vms`` sandboxes exist at once, warm ones included;
  a job that needs a new one while the worker is full evicts an idle warm
  sandbox of another language before it waits.
* Every sandbox gets its own program uid (``uid_base`` + slot).
* A warm pool per language holds sandboxes with the agent up and waiting;
  taking one is a hand-over. Each sandbox is used once and destroyed.
  Pool sizes follow demand (:meth:`SandboxManager.retune`, every second): a
  language used within ``pool_idle_seconds`` keeps at least one warm sandbox
  (rarely used languages are never starved), busy ones get more (arrival rate
  x start-up time, up to ``pool_max``; a target grows at once and is held for
  a while before it shrinks, so that no warm sandbox is destroyed between two
  requests and made again for the next), idle ones shrink to nothing unless
  listed in ``pool_languages``; all warm sandboxes together stay within
  ``pool_memory_mb`` and never take capacity a job needs.
* The reaper destroys any sandbox running a job for longer than
  ``max_vm_lifetime_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any

from tvm.config.catalog import Language
from tvm.config.settings import Settings
from tvm.errors import CapacityError, SandboxError
from tvm.pyrovm.drivers.base import Driver, Sandbox, SandboxSpec
from tvm.pyrovm.images import ImageStore

log = logging.getLogger("tvm.pool")


def warm_fields(language: Language, warm: bool) -> dict[str, Any]:
    """The :class:`SandboxSpec` fields that pre-start ``language``'s compiler
    or interpreter (``warm``: the sandbox is made ahead of its request, and
    they may be)."""
    if not warm:
        return {}
    if language.warm_run:
        return {
            "warm_run": language.run_command,
            "warm_limits": dataclasses.asdict(language.run_limits.maximum),
            "warm_memory_mb": language.warm_memory_mb,
        }
    if language.warm_compiler is None:
        return {}
    return {
        "warm_compiler": language.warm_compiler,
        "warm_limits": dataclasses.asdict(language.compile_limits.maximum),
        "warm_memory_mb": language.warm_memory_mb,
    }


# Warm sandboxes of one language created at the same time.
FILL_PARALLELISM = 2
# A job's sandbox is destroyed, and its pool refilled, this long after the job
# ends, so that the job's response goes out, and a client on the same host
# reads it, before the sandbox's exit (the kernel tearing down every process
# in it) and the refill's fork compete for the CPU: Python's `print(1)` took
# ~1.3 ms (10%) longer end to end without it. Not when a job waits for capacity.
RELEASE_DELAY_SECONDS = 0.01


class UidAllocator:
    def __init__(self, base: int, count: int) -> None:
        self.free = deque(range(base, base + count))

    def take(self) -> int:
        if not self.free:
            raise CapacityError("no free sandbox uid; raise TVM_UID_COUNT", retry_after=1)
        return self.free.popleft()

    def give(self, uid: int) -> None:
        self.free.append(uid)


# The arrival rate is estimated from the last RATE_SAMPLES takes within
# RATE_WINDOW seconds; a pool in use keeps a larger target for HOLD_SECONDS
# after demand last asked for it, so that it is not shrunk between two
# requests and made again for the next (a pre-started compiler costs seconds
# of CPU to make).
RATE_SAMPLES = 8
RATE_WINDOW = 30.0
HOLD_SECONDS = 20.0


@dataclass
class Demand:
    """How much a language is used, for sizing its warm pool."""

    arrivals: deque[float] = dataclasses.field(default_factory=lambda: deque(maxlen=RATE_SAMPLES))
    rate: float = 0.0  # arrivals per second, as of the last retune
    last_used: float = -math.inf
    start_seconds: float = 0.1  # time to create one sandbox, smoothed
    expected: int = 0  # sandboxes a batch under way will still take (:meth:`expect`)
    held: int = 0  # the pool's target from demand, held for HOLD_SECONDS
    held_at: float = -math.inf

    def arrival_rate(self, now: float) -> float:
        """Takes per second: the rate between the recent takes, no more than
        their count over the time since the first of them, so that a burst
        counts at once, a single take is no rate at all, and a silence decays it."""
        recent = [t for t in self.arrivals if now - t < RATE_WINDOW]
        if len(recent) < 2:
            return 0.0
        between = (len(recent) - 1) / max(recent[-1] - recent[0], 1e-3)
        return min(between, len(recent) / max(now - recent[0], 1e-3))

    def hold(self, wanted: int, now: float) -> int:
        """``wanted`` if it is no less than the target held, or the hold ran out."""
        if wanted >= self.held or now - self.held_at >= HOLD_SECONDS:
            self.held, self.held_at = wanted, now
        return self.held


# The pool of a compiled language's test-case sandboxes, beside its own: each
# runs one stage (one runner forked ahead), and no compiler is pre-started in it.
RUN_ONLY = ":run"


class SandboxManager:
    def __init__(self, settings: Settings, driver: Driver, images: ImageStore) -> None:
        self.settings = settings
        self.driver = driver
        self.images = images
        self.uids = UidAllocator(settings.uid_base, settings.uid_count)
        self.capacity = settings.max_concurrent_vms
        self.count = 0  # sandboxes that exist or are being created
        self.active: set[Sandbox] = set()
        self.warm: dict[str, deque[Sandbox]] = defaultdict(deque)
        self.targets: dict[str, int] = {}
        self.pinned: dict[str, int] = {}  # pool_languages: kept warm even when unused
        self.demand: dict[str, Demand] = defaultdict(Demand)
        self.filling: dict[str, int] = defaultdict(int)  # creations under way per pool
        self.languages: dict[str, Language] = {}
        self._changed = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()
        self._teardowns: set[asyncio.Task[None]] = set()
        self._waiting = 0  # jobs waiting for capacity
        self._wanted = asyncio.Event()  # set while any does: releases do not linger
        self._reaper: asyncio.Task[None] | None = None
        self.reaped = 0
        self.closed = False

    # -- lifecycle ------------------------------------------------------------
    async def start(self) -> None:
        self._reaper = asyncio.create_task(self._reap_forever())
        self._spawn(self._tune_forever())

    async def close(self) -> None:
        self.closed = True
        self._wanted.set()  # sandboxes just released go now
        if self._reaper:
            self._reaper.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, *self._teardowns, return_exceptions=True)
        doomed = list(self.active) + [sb for q in self.warm.values() for sb in q]
        self.warm.clear()
        await asyncio.gather(*(self._destroy(sb) for sb in doomed), return_exceptions=True)

    def set_pool_target(self, language: Language, size: int) -> None:
        """Keep ``size`` warm sandboxes of ``language`` whether it is used or not."""
        self.pinned[language.key] = size
        self.languages[language.key] = language
        self.retune()

    # -- sandboxes for jobs ---------------------------------------------------
    @staticmethod
    def pool_key(language: Language, run_only: bool = False) -> str:
        """The pool ``language``'s sandboxes come from; ``run_only``: for a
        program already compiled (a test case of a compile-once job)."""
        return language.key + RUN_ONLY if run_only and language.compiled else language.key

    @contextlib.asynccontextmanager
    async def sandbox(self, language: Language, run_only: bool = False) -> AsyncIterator[Sandbox]:
        """A fresh sandbox for ``language``, destroyed when the block ends;
        ``run_only``: it will run one stage, a program compiled elsewhere."""
        key = self.pool_key(language, run_only)
        sandbox = await self._take(language, key)
        sandbox.started = time.monotonic()
        self.active.add(sandbox)
        try:
            yield sandbox
        finally:
            self.active.discard(sandbox)
            # Tearing down (kill, wait, remove cgroups) takes milliseconds the
            # caller need not wait for: its result is already in hand.
            self._spawn(self._release(sandbox, key), teardown=True)

    def expect(self, language: Language, count: int, run_only: bool = False) -> None:
        """``count`` more sandboxes of ``language`` will be taken soon (the
        cases of a batch, while its program compiles): make them ahead, within
        the pools' budgets, so that the cases do not each start one. Each take
        counts one off; a negative ``count`` takes back what will not come."""
        key = self.pool_key(language, run_only)
        self.languages[key] = language
        demand = self.demand[key]
        demand.expected = max(0, demand.expected + count)
        if count > 0:
            demand.last_used = time.monotonic()
            self.retune()

    async def _take(self, language: Language, key: str) -> Sandbox:
        demand = self.demand[key]
        now = time.monotonic()
        first_use = demand.last_used == -math.inf
        demand.arrivals.append(now)
        demand.expected = max(0, demand.expected - 1)
        demand.last_used = now
        self.languages[key] = language
        if first_use:  # give it a warm pool now
            self.retune(now)
        queue = self.warm.get(key)
        if queue:
            return queue.popleft()
        await self._reserve()
        try:
            return await self._create(language, key)
        except BaseException:
            await self._unreserve()
            raise

    async def _reserve(self) -> None:
        async with self._changed:
            while self.count >= self.capacity:
                victim = self._idle_victim()
                if victim is not None:
                    self._spawn(self._destroy(victim), teardown=True)
                self._waiting += 1
                self._wanted.set()
                try:
                    await self._changed.wait()
                finally:
                    self._waiting -= 1
                    if not self._waiting and not self.closed:
                        self._wanted.clear()
            self.count += 1

    def _idle_victim(self) -> Sandbox | None:
        for queue in sorted(self.warm.values(), key=len, reverse=True):
            if queue:
                return queue.popleft()
        return None

    async def _unreserve(self) -> None:
        async with self._changed:
            self.count -= 1
            self._changed.notify_all()

    async def _create(self, language: Language, key: str, warm: bool = False) -> Sandbox:
        """A sandbox for ``language`` from pool ``key`` (:meth:`pool_key`);
        ``warm`` (one for the pool, made ahead of its request): with the
        language's compiler pre-started, if it has one and the pool is not
        run-only."""
        run_only = key.endswith(RUN_ONLY)
        rootfs = self.images.rootfs(language.image)
        uid = self.uids.take()
        spec = SandboxSpec(
            image=language.image.name,
            rootfs=rootfs,
            uid=uid,
            workdir_mb=self.settings.workdir_size_mb,
            tmp_mb=self.settings.tmp_size_mb,
            memory_mb=max(
                language.run_limits.maximum.memory_mb, language.compile_limits.maximum.memory_mb
            ),
            processes=max(
                language.run_limits.maximum.processes, language.compile_limits.maximum.processes
            ),
            stages=2 if language.compiled and not run_only else 1,
            **warm_fields(language, warm and not run_only and self.settings.prestart_compilers),
        )
        started = time.monotonic()
        try:
            sandbox = await self.driver.start(spec)
        except BaseException:
            self.uids.give(uid)
            raise
        demand = self.demand[key]
        demand.start_seconds = 0.8 * demand.start_seconds + 0.2 * (time.monotonic() - started)
        return sandbox

    async def _release(self, sandbox: Sandbox, key: str) -> None:
        """A job's sandbox is done: destroy it and refill its pool, a moment
        later (see RELEASE_DELAY_SECONDS), at once if a job waits for capacity."""
        if not self._waiting:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wanted.wait(), RELEASE_DELAY_SECONDS)
        self._refill(key)
        await self._destroy(sandbox)

    async def _destroy(self, sandbox: Sandbox) -> None:
        if sandbox.destroyed:
            return
        try:
            await sandbox.destroy()
        finally:
            self.uids.give(sandbox.spec.uid)
            await self._unreserve()

    # -- warm pools -----------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, None], teardown: bool = False) -> None:
        """Run in the background; teardowns are awaited at close, the rest cancelled."""
        tasks = self._teardowns if teardown else self._tasks
        task = asyncio.create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def _refill(self, key: str) -> None:
        """Start creating what the pool of ``key`` lacks, a few at a time."""
        if self.closed:
            return
        lacking = self.targets.get(key, 0) - len(self.warm[key]) - self.filling[key]
        for _ in range(max(0, min(lacking, FILL_PARALLELISM - self.filling[key]))):
            self.filling[key] += 1
            self._spawn(self._fill_one(key))

    async def _fill_one(self, key: str) -> None:
        try:
            if self.count >= self.capacity:
                return  # never take capacity from jobs to warm a pool
            self.count += 1
            try:
                sandbox = await self._create(self.languages[key], key, warm=True)
            except (SandboxError, CapacityError, OSError) as exc:
                await self._unreserve()
                log.warning("warm pool for %s: %s", key, exc)
                return  # retune tries again within a second
            except BaseException:
                await self._unreserve()
                raise
            self.warm[key].append(sandbox)
        finally:
            self.filling[key] -= 1
        self._refill(key)

    def retune(self, now: float | None = None) -> None:
        """Recompute every pool's target from demand, within the budgets; grow or shrink."""
        settings = self.settings
        now = time.monotonic() if now is None else now
        wanted: dict[str, int] = {}
        in_use: list[str] = []  # used within pool_idle_seconds
        for key in self.languages:
            demand = self.demand[key]
            demand.rate = demand.arrival_rate(now)
            floor = self.pinned.get(key, 0)
            used = now - demand.last_used < settings.pool_idle_seconds
            if used:
                in_use.append(key)
            if settings.pool_size and used:
                # Little's law, doubled: takes that come while one is being made.
                busy = math.ceil(demand.rate * demand.start_seconds * 2)
                floor = max(floor, settings.pool_size + demand.hold(busy, now), demand.expected)
            wanted[key] = min(settings.pool_max, floor)
        # Two budgets: sandboxes (capacity a job may need) and memory, where a
        # sandbox with a pre-started compiler costs what that compiler holds.
        count = self.capacity - len(self.active)
        memory = settings.pool_memory_mb
        cost = {key: self.warm_cost_mb(key) for key in wanted}
        # Every language in use gets one first (most recently used first): a rarely
        # used language is never starved. Then the busiest get their extra ones,
        # and what is left keeps the pinned languages nobody is using warm.
        targets = dict.fromkeys(wanted, 0)
        for key in sorted(in_use, key=lambda k: -self.demand[k].last_used):
            if wanted[key] and count > 0 and memory >= cost[key]:
                targets[key] = 1
                count -= 1
                memory -= cost[key]
        idle_pinned = [k for k in self.pinned if k in wanted and k not in in_use]
        for key in [*sorted(in_use, key=lambda k: -self.demand[k].rate), *idle_pinned]:
            extra = min(wanted[key] - targets[key], max(count, 0), max(memory, 0) // cost[key])
            targets[key] += extra
            count -= extra
            memory -= extra * cost[key]
        self.targets = targets
        for key, target in targets.items():
            queue = self.warm[key]
            while len(queue) > target:
                self._spawn(self._destroy(queue.pop()), teardown=True)
            self._refill(key)

    def warm_cost_mb(self, key: str) -> int:
        """Memory one warm sandbox of pool ``key`` holds while it waits."""
        compiler = self.settings.prestart_compilers and not key.endswith(RUN_ONLY)
        warm = self.languages[key].warm_memory_mb if compiler else 0
        return self.settings.pool_sandbox_mb + warm

    async def _tune_forever(self, interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            self.retune()

    # -- reaper ---------------------------------------------------------------
    async def _reap_forever(self) -> None:
        limit = self.settings.max_vm_lifetime_seconds
        while True:
            await asyncio.sleep(min(1.0, limit / 4))
            now = time.monotonic()
            for sandbox in list(self.active):
                if sandbox.started is not None and now - sandbox.started > limit:
                    log.warning("reaper: sandbox older than %ss destroyed", limit)
                    self.reaped += 1
                    await sandbox.destroy()

    def stats(self) -> dict[str, object]:
        return {
            "capacity": self.capacity,
            "sandboxes": self.count,
            "active": len(self.active),
            "warm": {k: len(v) for k, v in self.warm.items() if v},
            "pool_targets": {k: v for k, v in self.targets.items() if v},
            "reaped": self.reaped,
        }
