"""Shared fixtures.

* ``settings``: the process settings (TVM_HOME as the service would use it).
* ``engine``: a real engine on the namespace driver (skips without root/bwrap/images).
* ``server``: the real service started with ``tvm start`` on a free loopback port.
* ``no_leaks``: after every test that made sandboxes, asserts nothing is left:
  no sandbox-uid process, no sandbox cgroup, no new mount, no tvm temp dir.

The leak checks watch only what this test session's TVM made: sandbox-uid
processes below this pytest process or inside its cgroups, cgroups and temp
dirs named after one of its processes (``<worker pid>-...``), mounts under
TVM's own paths. A Docker daemon, or another
checkout's tests running at the same time, is not a leak of ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tvm.config.catalog import Catalog, Language, load_catalog
from tvm.config.settings import Settings
from tvm.pyrovm.images import ImageStore

if TYPE_CHECKING:
    from tvm.pyrovm.pool import SandboxManager

REPO = Path(__file__).resolve().parent.parent
PROGRAMS = REPO / "tests" / "programs"


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


def namespace_unavailable(settings: Settings, languages: list[Language] | None = None) -> str:
    """Why the namespace driver cannot run the given languages here ('' if it can)."""
    from tvm.pyrovm.drivers.namespace import NamespaceDriver

    availability = NamespaceDriver.probe(settings)
    if not availability.usable:
        return availability.reason
    images = ImageStore(settings)
    missing = sorted(
        {lang.image.name for lang in languages or [] if not images.is_built(lang.image)}
    )
    if missing:
        return f"images not built: {', '.join(missing)} (run: tvm images build)"
    return ""


def require_languages(settings: Settings, *keys: str) -> list[Language]:
    catalog = load_catalog()
    languages = [catalog.get(key) for key in keys]
    reason = namespace_unavailable(settings, languages)
    if reason:
        pytest.skip(reason)
    return languages


@pytest.fixture
async def engine(settings: Settings, catalog: Catalog) -> AsyncIterator[object]:
    from tvm.pyrovm.drivers.namespace import NamespaceDriver
    from tvm.pyrovm.engine import Engine

    reason = namespace_unavailable(settings)
    if reason:
        pytest.skip(reason)
    eng = Engine(settings, catalog, NamespaceDriver(settings))
    await eng.start()
    try:
        yield eng
    finally:
        await eng.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server not healthy after {timeout}s:\n{log.read_text()[-4000:]}")


def own_database(tmp: Path) -> dict[str, str]:
    """Environment giving a test's server its own SQLite database (one gateway each)."""
    return {"TVM_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/tvm.db"}


class Server:
    """A real TVM service in a subprocess (``tvm start``)."""

    def __init__(
        self, tmp: Path, env: dict[str, str] | None = None, args: list[str] | None = None
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"server-{self.port}.log"
        # No warm pools unless a test asks: then every sandbox a test made is gone
        # when its request is answered, and `no_leaks` can demand exactly that.
        # Its own SQLite database unless the test names one: one gateway per
        # SQLite file, and a `tvm start` of the operator's may hold the default.
        defaults = {
            "TVM_LOG_JSON": "false",
            "TVM_POOL_SIZE": "0",
            "TVM_POOL_LANGUAGES": "[]",
            "TVM_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/tvm-{self.port}.db",
        }
        full_env = {**os.environ, **defaults, **(env or {})}
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tvm.cli", "start", "--port", str(self.port), *(args or [])],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=full_env,
                start_new_session=True,
            )
        wait_healthy(self.url, self.proc, self.log)
        _SERVERS.update(descendants(self.proc.pid))  # its workers name its cgroups

    def stop(self) -> None:
        own = descendants(self.proc.pid)
        _SERVERS.update(own)
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                return
            # A clean stop leaves nothing, zygotes included (cgroups are named
            # after the worker process that made them).
            left = sandbox_cgroups(zygotes=True, owners=own)
            assert not left, f"cgroups left behind by a clean stop: {left}"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> Iterator[Server]:
    reason = namespace_unavailable(settings)
    if reason:
        pytest.skip(reason)
    srv = Server(tmp_path_factory.mktemp("server"))
    try:
        yield srv
    finally:
        srv.stop()
        print(f"--- server log ({srv.log}) ---\n{srv.log.read_text()[-3000:]}")


@pytest.fixture
def api(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


# -- leak checks ---------------------------------------------------------------
def sandbox_processes(settings: Settings) -> list[str]:
    """Processes under a sandbox uid that this session made: below this
    process, or (reparented away from it) still inside one of its cgroups."""
    low, high = settings.uid_base, settings.uid_base + settings.uid_count
    ours = session_processes()
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = Path(f"/proc/{entry}/status").read_text()
            groups = Path(f"/proc/{entry}/cgroup").read_text()
        except OSError:
            continue
        uids = next(
            ([int(u) for u in line.split()[1:]] for line in status.splitlines()
             if line.startswith("Uid:")), [],
        )  # fmt: skip
        if not any(low <= u < high for u in uids):
            continue
        owners = {_owner(part) for part in re.findall(r"/tvm/([^/\n]+)", groups)}
        if int(entry) in ours or owners & ours:
            found.append(f"pid {entry} uids {uids}")
    return found


@contextlib.asynccontextmanager
async def warm_pool(
    settings: Settings, lang: Language, seconds: float = 120.0
) -> AsyncIterator[SandboxManager]:
    """A pool of its own on the namespace driver, with one warm sandbox of
    ``lang`` made (as the pool makes it) and waiting; closed on the way out."""
    from tvm.pyrovm.drivers.namespace import NamespaceDriver
    from tvm.pyrovm.pool import SandboxManager

    driver = NamespaceDriver(settings)
    manager = SandboxManager(settings, driver, ImageStore(settings))
    try:
        manager.set_pool_target(lang, 1)
        for _ in range(int(seconds * 10)):
            if manager.warm[lang.key]:
                break
            await asyncio.sleep(0.1)
        assert manager.warm[lang.key], f"{lang.key}: the warm pool never filled in {seconds:.0f} s"
        yield manager
    finally:
        await manager.close()
        await driver.close()


def descendants(pid: int) -> set[int]:
    """``pid`` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        found.add(current)
        todo.extend(children.get(current, []))
    return found


def sandbox_cgroups(zygotes: bool = False, owners: set[int] | None = None) -> list[Path]:
    """Sandbox cgroups that exist now, made by ``owners`` (default: this
    session's processes; cgroups are named ``<worker pid>-...``); with
    ``zygotes``, the running service's zygote cgroups too (they live as long
    as the service)."""
    from tvm.pyrovm.drivers.cgroups import CgroupManager

    try:
        found = CgroupManager().leftovers()
    except Exception:
        return []
    owners = session_processes() if owners is None else owners
    return [
        p for p in found
        if _owner(p.name) in owners and (zygotes or "-zygote-" not in p.name)
    ]  # fmt: skip


# The processes of the servers this session started (their workers name the
# cgroups they make), kept after the servers stop: a stopped server's cgroups
# are still ours. Only those: a pid seen once may be reused by anyone later.
_SERVERS: set[int] = set()


def session_processes() -> set[int]:
    """This session's processes: those running below it now, and its servers'."""
    return descendants(os.getpid()) | _SERVERS


def _owner(name: str) -> int | None:
    """The pid a cgroup or temp dir of TVM is named after (``tvm-gvisor-123-x``)."""
    found = re.search(r"(?:^|-)(\d+)-", name)
    return int(found.group(1)) if found else None


def mounts(settings: Settings, owners: set[int]) -> set[str]:
    """Host mounts under TVM's own paths: its home, and its temp dirs."""
    own = (f"{settings.home}/", *(f"/tmp/{d}/" for d in tvm_tmp_dirs(owners)))
    found = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        # An image build's mounts (its rootfs's /proc, /dev...) are its own
        # process's (``.<image>.partial-<pid>``): another checkout's build is not ours.
        builder = re.search(r"\.partial-(\d+)(?:/|$)", point)
        if builder and int(builder.group(1)) not in owners:
            continue
        if f"{point}/".startswith(own):
            found.add(point)
    return found


def tvm_tmp_dirs(owners: set[int]) -> set[str]:
    """TVM's temp dirs of ``owners`` (named ``tvm-<kind>-<pid>-...``)."""
    return {p for p in os.listdir("/tmp") if p.startswith("tvm") and _owner(p) in owners}


@pytest.fixture
def no_leaks(settings: Settings) -> Iterator[None]:
    """Assert that the test left no sandbox process, cgroup, mount or temp dir."""
    owners = session_processes()
    before_mounts, before_tmp = mounts(settings, owners), tvm_tmp_dirs(owners)
    yield
    # Teardown runs after the response, and a killed gVisor sandbox's cgroup may
    # stay busy for seconds on a loaded host: its removal waits up to 20 s
    # (Cgroup.remove), so anything still here after 25 s was really left behind.
    deadline = time.monotonic() + 25
    while True:
        owners |= session_processes()
        procs, groups = sandbox_processes(settings), sandbox_cgroups(owners=owners)
        leaked_tmp = tvm_tmp_dirs(owners) - before_tmp
        if not (procs or groups or leaked_tmp) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not procs, f"sandbox processes left behind: {procs}"
    assert not groups, f"sandbox cgroups left behind: {groups}"
    assert not leaked_tmp, f"temp dirs left behind: {leaked_tmp}"
    assert mounts(settings, owners) == before_mounts, "mounts changed under TVM's paths"


def have(binary: str) -> bool:
    return shutil.which(binary) is not None
