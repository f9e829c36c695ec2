"""Sandbox lifecycle on one worker: capacity, uids, warm pools, the reaper.

* At most ``max_concurrent_vms`` sandboxes exist at once, warm ones included;
  a job that needs a new one while the worker is full evicts an idle warm
  sandbox of another language before it waits.
* Every sandbox gets its own program uid (``uid_base`` + slot).
* A warm pool per language holds sandboxes with the agent up and waiting;
  taking one is a hand-over. Each sandbox is used once and destroyed.
* The reaper destroys any sandbox running a job for longer than
  ``max_vm_lifetime_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from tvm.config.catalog import Language
from tvm.config.settings import Settings
from tvm.errors import CapacityError, SandboxError
from tvm.pyrovm.drivers.base import Driver, Sandbox, SandboxSpec
from tvm.pyrovm.images import ImageStore

log = logging.getLogger("tvm.pool")


class UidAllocator:
    def __init__(self, base: int, count: int) -> None:
        self.free = deque(range(base, base + count))

    def take(self) -> int:
        if not self.free:
            raise CapacityError("no free sandbox uid; raise TVM_UID_COUNT", retry_after=1)
        return self.free.popleft()

    def give(self, uid: int) -> None:
        self.free.append(uid)


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
        self.languages: dict[str, Language] = {}
        self._changed = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.Task[None] | None = None
        self.reaped = 0
        self.closed = False

    # -- lifecycle ------------------------------------------------------------
    async def start(self) -> None:
        self._reaper = asyncio.create_task(self._reap_forever())

    async def close(self) -> None:
        self.closed = True
        if self._reaper:
            self._reaper.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        doomed = list(self.active) + [sb for q in self.warm.values() for sb in q]
        self.warm.clear()
        await asyncio.gather(*(self._destroy(sb) for sb in doomed), return_exceptions=True)

    def set_pool_target(self, language: Language, size: int) -> None:
        self.targets[language.key] = size
        self.languages[language.key] = language
        self._refill(language.key)

    # -- sandboxes for jobs ---------------------------------------------------
    @contextlib.asynccontextmanager
    async def sandbox(self, language: Language) -> AsyncIterator[Sandbox]:
        """A fresh sandbox for ``language``, destroyed when the block ends."""
        sandbox = await self._take(language)
        sandbox.started = time.monotonic()
        self.active.add(sandbox)
        try:
            yield sandbox
        finally:
            self.active.discard(sandbox)
            await self._destroy(sandbox)
            self._refill(language.key)

    async def _take(self, language: Language) -> Sandbox:
        queue = self.warm.get(language.key)
        if queue:
            return queue.popleft()
        await self._reserve()
        try:
            return await self._create(language)
        except BaseException:
            await self._unreserve()
            raise

    async def _reserve(self) -> None:
        async with self._changed:
            while self.count >= self.capacity:
                victim = self._idle_victim()
                if victim is not None:
                    self._spawn(self._destroy(victim))
                await self._changed.wait()
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

    async def _create(self, language: Language) -> Sandbox:
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
        )
        try:
            return await self.driver.start(spec)
        except BaseException:
            self.uids.give(uid)
            raise

    async def _destroy(self, sandbox: Sandbox) -> None:
        if sandbox.destroyed:
            return
        try:
            await sandbox.destroy()
        finally:
            self.uids.give(sandbox.spec.uid)
            await self._unreserve()

    # -- warm pools -----------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _refill(self, key: str) -> None:
        if self.closed or self.targets.get(key, 0) <= len(self.warm[key]):
            return
        self._spawn(self._fill(key))

    async def _fill(self, key: str) -> None:
        language = self.languages[key]
        while not self.closed and len(self.warm[key]) < self.targets.get(key, 0):
            if self.count >= self.capacity:
                return  # never take capacity from jobs to warm a pool
            self.count += 1
            try:
                sandbox = await self._create(language)
            except (SandboxError, CapacityError, OSError) as exc:
                await self._unreserve()
                log.warning("warm pool for %s: %s", key, exc)
                return
            except BaseException:
                await self._unreserve()
                raise
            self.warm[key].append(sandbox)

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
            "reaped": self.reaped,
        }
