"""The containment probes inside live sandboxes (``/api/v1/sandboxes``), which
live for minutes and run many commands: through ``tvm.client`` against a real
``tvm start``, on the namespace and gVisor drivers.

Each probe is one of the one-shot suites' attacks (``tests/integration``), run
as a command; afterwards the sandbox still answers, and once it is killed the
host holds nothing of it (``assert_nothing_left``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Server, free_port
from tests.integration.test_containment import GVISOR
from tests.integration.test_kernel_containment import (
    AIO_OTHER,
    HOST_VIEW,
    NETLINK_PY,
    PARALLEL_PY,
    PTY_HOG,
)
from tests.integration.test_kernel_pools import (
    ABSTRACT_CLIENT,
    ABSTRACT_SERVER,
    FILES_PY,
    HOST_SETTINGS,
    INOTIFY_HOG,
    INOTIFY_OTHER,
)
from tests.live_support import assert_nothing_left, driver_unavailable
from tvm.client import Client
from tvm.client.sync import Sandbox
from tvm.config.settings import Settings
from tvm.errors import TVMError
from tvm.pyrovm.agent.mounts import PTY_MAX

pytestmark = [pytest.mark.namespace, pytest.mark.slow]

MEMORY_MB = 128


@pytest.fixture(scope="module", params=["namespace", GVISOR])
def driver(request: pytest.FixtureRequest) -> str:
    reason = driver_unavailable(str(request.param))
    if reason:
        pytest.skip(reason)
    return str(request.param)


@pytest.fixture(scope="module")
def service(driver: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp(f"live-containment-{driver}")
    server = Server(tmp, env={"TVM_DRIVER": driver, "TVM_WORKER_PORT": str(free_port())})
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(service: Server) -> Iterator[Client]:
    with Client(service.url) as tvm:
        yield tvm
    assert_nothing_left(service)


def probe(sbx: Sandbox, code: str, *args: str, timeout: float = 60) -> dict[str, str]:
    """Run ``code`` as a Python command in the sandbox; its ``key: value`` lines."""
    sbx.files.write("probe.py", code)
    done = sbx.commands.run(" ".join(["python3", "probe.py", *args]), timeout=timeout)
    found = {"exit": str(done.exit_code), "signal": str(done.signal)}
    for line in done.stdout.splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            found[key.strip()] = value.strip()
    return found


def still_answers(sbx: Sandbox) -> None:
    assert sbx.commands.run("echo alive").stdout == "alive\n"


def test_kernel_objects_and_host_view_in_a_live_sandbox(client: Client, driver: str) -> None:
    with client.sandboxes.create(memory_mb=MEMORY_MB) as sbx:
        netlink = probe(sbx, NETLINK_PY)
        assert int(netlink["held MiB"]) <= MEMORY_MB, netlink
        aio = probe(sbx, AIO_OTHER)  # the host's one pool: refused; gVisor has its own
        assert aio["io_setup"] == ("ok" if driver == GVISOR else "ENOSYS"), aio
        if driver != GVISOR:  # the Sentry's devpts is its own
            ptys = probe(sbx, PTY_HOG.replace("time.sleep(4)", ""))
            assert int(ptys["ptys"]) <= PTY_MAX, ptys
        sbx.files.write("view.py", HOST_VIEW)
        view = sbx.commands.run("python3 view.py").stdout
        assert " / / " in view, view
        for host_path in (str(Settings().home), "/var/lib/tvm", "images/", "/agent/"):
            assert host_path not in view, (host_path, view)
        assert Path("/proc/cmdline").read_text().strip() not in view, view
        host = probe(sbx, HOST_SETTINGS)
        # Its own helpers may be signalled (its shell), nothing outside its pid namespace.
        assert "WRITTEN" not in host.values() and host["outside"] == "0", host
        assert int(host["signalable"]) < 8, host
        assert host["sethostname"] != "ALLOWED" and host["clock_settime"] != "ALLOWED", host
        still_answers(sbx)


def survives_or_ends(sbx: Sandbox, driver: str) -> None:
    """After a probe that filled the sandbox's memory: under the namespace
    driver only the probe was killed and the sandbox answers; under gVisor the
    memory limit is the Sentry's, so the whole sandbox may have ended (its
    channel closed), as a one-shot gVisor run's does. Either way the host
    holds nothing of it afterwards (the ``client`` fixture checks)."""
    try:
        still_answers(sbx)
    except TVMError as exc:
        assert driver == GVISOR and "channel" in str(exc), exc


def test_cpu_and_files_in_a_live_sandbox(client: Client, driver: str) -> None:
    with client.sandboxes.create(memory_mb=MEMORY_MB) as sbx:
        sbx.files.write("busy.py", PARALLEL_PY)
        busy = sbx.commands.run("python3 busy.py 4 0.3", timeout=120)
        assert busy.stdout == "done\n", busy
        try:
            files = probe(sbx, FILES_PY, str((MEMORY_MB << 20) // 100))
        except TVMError as exc:  # gVisor: the Sentry paid for them until its limit
            assert driver == GVISOR and "channel" in str(exc), exc
            return
        held = int(files.get("held", "0"))
        assert held * 200 <= MEMORY_MB << 20, files  # files cost the sandbox memory
        survives_or_ends(sbx, driver)


def test_a_memory_bomb_in_a_live_sandbox(client: Client, driver: str) -> None:
    with client.sandboxes.create(memory_mb=MEMORY_MB) as sbx:
        sbx.files.write("bomb.py", "b = []\nwhile True:\n    b.append(bytearray(8 << 20))\n")
        try:
            bomb = sbx.commands.run("python3 bomb.py", timeout=60)
        except TVMError as exc:
            assert driver == GVISOR and "channel" in str(exc), exc
            return
        assert bomb.exit_code != 0, bomb  # killed (SIGKILL) or MemoryError, never held
        survives_or_ends(sbx, driver)


def test_two_live_sandboxes_share_no_pool_or_socket(client: Client) -> None:
    with client.sandboxes.create() as first, client.sandboxes.create() as second:
        first.files.write("hog.py", INOTIFY_HOG.replace("time.sleep(4)", "time.sleep(30)"))
        first.files.write("srv.py", ABSTRACT_SERVER.replace("time.sleep(4)", "time.sleep(30)"))
        hog = first.commands.run("python3 hog.py", background=True)
        srv = first.commands.run("python3 srv.py", background=True)
        assert probe(second, INOTIFY_OTHER)["inotify"] == "ok"
        assert probe(second, ABSTRACT_CLIENT)["connect"] == "Connection refused"
        for pid in (hog.pid, srv.pid):
            first.commands.kill(pid)
        still_answers(first)
        still_answers(second)
