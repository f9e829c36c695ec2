"""Live sandboxes on one worker: created with a lifetime, then many calls.

A live sandbox is a fresh sandbox of the worker's driver (same isolation as
an execution: namespaces or gVisor, read-only image root, seccomp, its own
program uid, cgroup memory and process caps held for its whole life), whose
agent is switched into live mode (:mod:`tvm.pyrovm.live_session`). It has a
writable ``/home`` (its disk) with the home ``/home/user``, no network, and
lives until its timeout, a kill, or the worker's stop.

Admission: at most ``live_max_sandboxes`` at once and ``live_memory_budget_mb``
of memory for all of them together; beyond either, a 429 with Retry-After.
The reaper ends each sandbox at its end time (``set_timeout`` moves it).

A sandbox's id names the worker process that holds it: ``sb`` + that
process's boot tag (8 hex digits, new at every start) + 16 random hex digits.
A gateway in front of several workers routes each call by that tag
(:mod:`tvm.pyroshell.live_proxy`) and keeps no table of its own; a worker
asked for an id of another boot (its predecessor, killed or restarted) says
the sandbox is lost with it (:class:`~tvm.errors.SandboxLost`, 410).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tvm.config.catalog import Catalog, Language, StageLimits
from tvm.config.settings import Settings
from tvm.errors import (
    CapacityError,
    InvalidRequest,
    NotFound,
    SandboxEnded,
    SandboxLost,
    UnknownLanguage,
)
from tvm.pyrovm.drivers.base import Driver, SandboxSpec
from tvm.pyrovm.images import ImageStore
from tvm.pyrovm.live_session import LiveSession
from tvm.pyrovm.pool import UidAllocator

log = logging.getLogger("tvm.pyrovm.live")

HOME = "/home/user"
# Templates that mean "a sandbox with Python and the common tools".
PYTHON_TEMPLATES = ("", "base", "python")
# E2B's code interpreter: Python with numpy, scipy and pandas where that image is built.
SCIENCE_TEMPLATES = ("code-interpreter-v1", "code-interpreter")
SCIENCE = "python-scientific"
OPEN_FILES = 1024
MIN_MEMORY_MB = 16  # the least memory a live sandbox may ask for
REAP_INTERVAL = 0.5
# Sandboxes that ended on their own, remembered (newest) so that a call naming one
# says it ended (409) rather than that it never was (404).
KEPT_ENDED = 4096
ID_PREFIX = "sb"
BOOT_DIGITS = 8
ID_LENGTH = len(ID_PREFIX) + BOOT_DIGITS + 16


def new_boot() -> str:
    """A worker process's boot tag: new at every start, so that ids outlive no restart."""
    return secrets.token_hex(BOOT_DIGITS // 2)


def boot_of(sandbox_id: str) -> str | None:
    """The boot tag inside a sandbox id; None if it is not one of ours."""
    if len(sandbox_id) != ID_LENGTH or not sandbox_id.startswith(ID_PREFIX):
        return None
    tag = sandbox_id[len(ID_PREFIX) : len(ID_PREFIX) + BOOT_DIGITS]
    return tag if all(c in "0123456789abcdef" for c in tag) else None


def lost(
    sandbox_id: str, why: str = "the worker that ran it stopped (died or was restarted)"
) -> SandboxLost:
    return SandboxLost(
        f"sandbox {sandbox_id} is gone: {why}; its processes and files went with it. "
        "Create a new sandbox"
    )


@dataclass(frozen=True)
class LiveRequest:
    """What a caller asks for; unset fields take the worker's settings."""

    template: str = "base"
    timeout: int | None = None  # seconds
    memory_mb: int | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)
    internet: bool | None = None
    owner: str = ""  # who created it (an API key's name), for listing


@dataclass
class LiveSandbox:
    id: str
    template: str
    language: Language
    token: str  # the per-sandbox access token its in-sandbox calls must carry
    session: LiveSession
    memory_mb: int
    disk_mb: int
    cpus: int
    metadata: dict[str, str]
    env: dict[str, str]
    owner: str
    started_at: datetime
    end_at: float  # time.monotonic() at which the reaper ends it

    @property
    def end_datetime(self) -> datetime:
        return datetime.fromtimestamp(time.time() + self.end_at - time.monotonic(), UTC)


class LiveManager:
    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        driver: Driver,
        images: ImageStore,
        uids: UidAllocator,
        boot: str | None = None,
    ) -> None:
        self.settings = settings
        self.boot = boot or new_boot()  # this process's tag in every id it gives
        self.catalog = catalog
        self.driver = driver
        self.images = images
        self.uids = uids
        self.sandboxes: dict[str, LiveSandbox] = {}
        self.ended: OrderedDict[str, tuple[str, str]] = OrderedDict()  # id -> (owner, why)
        self.creating_mb = 0  # memory of sandboxes being created
        self.creating = 0
        self.reaped = 0
        self._reaper: asyncio.Task[None] | None = None
        self.closed = False

    async def start(self) -> None:
        self._reaper = asyncio.create_task(self._reap_forever())

    async def close(self) -> None:
        self.closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        await asyncio.gather(*(self.kill(sid) for sid in list(self.sandboxes)))

    # -- what a request may ask -------------------------------------------------
    def language_for(self, template: str) -> Language:
        """The catalog entry whose image a template runs: its newest built version
        (``name:version`` picks one)."""
        name, _, version = template.partition(":")
        if name in SCIENCE_TEMPLATES and not version:
            science = [lang for lang in self.catalog if lang.matches(SCIENCE)]
            if science and self.images.is_built(science[-1].image):
                return science[-1]
            name = "python"
        wanted = "python" if name in PYTHON_TEMPLATES else name
        try:
            newest = self.catalog.resolve(wanted, version or None)
        except UnknownLanguage as exc:
            raise NotFound(
                f"template {template!r} not found: use 'base', 'code-interpreter-v1' "
                "or a language of GET /api/v1/languages"
            ) from exc
        built = [
            lang for lang in self.catalog
            if lang.name == newest.name and (not version or lang.version == newest.version)
            and self.images.is_built(lang.image)
        ]  # fmt: skip
        return built[-1] if built else newest

    def timeout_for(self, seconds: int | None) -> int:
        if seconds is None:
            return self.settings.live_timeout_seconds
        most = self.settings.live_max_timeout_seconds
        if not 0 < seconds <= most:
            raise InvalidRequest(
                "timeout", f"must be between 1 and {most} seconds (live_max_timeout_seconds)"
            )
        return seconds

    def _admit(self, memory_mb: int) -> None:
        settings = self.settings
        count = len(self.sandboxes) + self.creating
        if count >= settings.live_max_sandboxes:
            raise CapacityError(
                f"worker has live_max_sandboxes={settings.live_max_sandboxes} live sandboxes; "
                "kill one or retry later",
                retry_after=5,
            )
        used = sum(sb.memory_mb for sb in self.sandboxes.values()) + self.creating_mb
        if used + memory_mb > settings.live_memory_budget_mb:
            raise CapacityError(
                f"live sandboxes would use {used + memory_mb} MB, over "
                f"live_memory_budget_mb={settings.live_memory_budget_mb}; retry later",
                retry_after=5,
            )

    # -- lifecycle ----------------------------------------------------------------
    async def create(self, request: LiveRequest) -> LiveSandbox:
        settings = self.settings
        if request.internet:
            raise InvalidRequest(
                "allow_internet_access",
                "a TVM sandbox has no network; leave it unset or false",
            )
        memory = settings.live_memory_mb if request.memory_mb is None else request.memory_mb
        if not MIN_MEMORY_MB <= memory <= settings.live_max_memory_mb:
            raise InvalidRequest(
                "memory_mb", f"must be between {MIN_MEMORY_MB} and {settings.live_max_memory_mb}"
            )
        timeout = self.timeout_for(request.timeout)
        language = self.language_for(request.template)
        rootfs = self.images.rootfs(language.image)  # ImageNotBuilt: 503 naming the image
        self._admit(memory)
        self.creating += 1
        self.creating_mb += memory
        uid = self.uids.take()
        try:
            sandbox = await self.driver.start(
                SandboxSpec(
                    image=language.image.name,
                    rootfs=rootfs,
                    uid=uid,
                    workdir_mb=settings.workdir_size_mb,
                    tmp_mb=settings.tmp_size_mb,
                    memory_mb=memory,
                    processes=settings.live_processes,
                    home_mb=settings.live_disk_mb,
                )
            )
        except BaseException:
            self.uids.give(uid)
            raise
        finally:
            self.creating -= 1
            self.creating_mb -= memory
        try:
            limits = StageLimits(
                timeout_ms=timeout * 1000,
                cpu_time_ms=timeout * 1000,
                memory_mb=memory,
                processes=settings.live_processes,
                output_bytes=0,
                file_size_kb=settings.live_disk_mb * 1024,
                open_files=OPEN_FILES,
            )
            await sandbox.apply_limits(limits)
            session = LiveSession(sandbox)
            env = {str(k): str(v) for k, v in request.env.items()}
            await session.open(
                HOME,
                env,
                {"processes": limits.processes, "open_files": OPEN_FILES,
                 "file_size_kb": limits.file_size_kb},
            )  # fmt: skip
        except BaseException:
            await sandbox.destroy()
            self.uids.give(uid)
            raise
        live = LiveSandbox(
            id=ID_PREFIX + self.boot + secrets.token_hex(8),
            template=request.template or "base",
            language=language,
            token=secrets.token_urlsafe(24),
            session=session,
            memory_mb=memory,
            disk_mb=settings.live_disk_mb,
            cpus=1,
            metadata={str(k): str(v) for k, v in request.metadata.items()},
            env=env,
            owner=request.owner,
            started_at=datetime.now(UTC),
            end_at=time.monotonic() + timeout,
        )
        if self.closed:
            await self._destroy(live)
            raise CapacityError("worker is stopping", retry_after=5, status_code=503)
        self.sandboxes[live.id] = live
        log.info("live sandbox %s (%s) up for %d s", live.id, live.template, timeout)
        return live

    def get(self, sandbox_id: str) -> LiveSandbox:
        live = self.sandboxes.get(sandbox_id)
        boot = boot_of(sandbox_id)
        if live is None and boot is not None and boot != self.boot:
            raise lost(sandbox_id)
        if live is None and sandbox_id in self.ended:
            owner, why = self.ended[sandbox_id]
            raise SandboxEnded(f"sandbox {sandbox_id} has ended ({why}); create another", owner)
        if live is None:
            raise NotFound(f"sandbox {sandbox_id} was not found (deleted, or never existed)")
        return live

    def set_timeout(self, sandbox_id: str, seconds: int) -> LiveSandbox:
        live = self.get(sandbox_id)
        live.end_at = time.monotonic() + self.timeout_for(seconds)
        return live

    async def kill(self, sandbox_id: str) -> bool:
        live = self.sandboxes.pop(sandbox_id, None)
        if live is None:
            return False
        await self._destroy(live)
        return True

    async def _destroy(self, live: LiveSandbox) -> None:
        try:
            await live.session.close()
            await live.session.sandbox.destroy()
        finally:
            self.uids.give(live.session.sandbox.spec.uid)

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(REAP_INTERVAL)
            now = time.monotonic()
            for live in list(self.sandboxes.values()):
                gone = live.session.closed
                if now >= live.end_at or gone is not None:
                    why = gone or "its lifetime ran out"
                    log.info("live sandbox %s ended (%s)", live.id, why)
                    self.reaped += 1
                    self.ended[live.id] = (live.owner, why)
                    while len(self.ended) > KEPT_ENDED:
                        self.ended.popitem(last=False)
                    try:
                        await self.kill(live.id)
                    except Exception as exc:  # the next ones still get reaped
                        log.warning("live sandbox %s: teardown failed: %s", live.id, exc)

    def stats(self) -> dict[str, object]:
        return {
            "live": len(self.sandboxes),
            "max": self.settings.live_max_sandboxes,
            "memory_mb": sum(sb.memory_mb for sb in self.sandboxes.values()),
            "reaped": self.reaped,
            "boot": self.boot,
        }
