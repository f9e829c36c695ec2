"""Containment inside a QEMU microVM, through the API of a real ``tvm start``.

The guest's kernel (Debian 6.1, booted under TCG here) runs a real cgroup v2
hierarchy, the only one on this cgroup-v1 host: the guest init lays it out as a
v2 host lays out a sandbox (``tvm/pyrovm/agent/cgroup2.py``: the agent and the
program in sibling leaves, controllers only on inner nodes), so these tests are
also the proof that the v2 layout applies per-program limits. The CPU, memory
and process probes are the namespace driver's (``test_kernel_containment``):
CPU of children the kernel reaps, parallel children stopped while they run,
a memory bomb, a fork bomb. Each request boots a VM (seconds under TCG): the
module takes about a minute here, more on a loaded host.

Firecracker's guest is the same init and agent (``vminit``) with the same
cgroup code; it cannot boot here (no working KVM, no binary), so QEMU's runs
stand for both.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, require_languages, sandbox_cgroups, session_processes
from tests.integration.test_containment import PY, lines, python
from tests.integration.test_kernel_containment import PARALLEL_PY, REAPED_PY
from tvm.config.settings import Settings

pytestmark = [pytest.mark.qemu, pytest.mark.slow]

# Wall time is generous: a software CPU on a shared 2-core host is slow, and the
# wall clock is not what these tests measure.
WALL_MS = 30_000


@pytest.fixture(scope="module")
def vm_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    from tvm.pyrovm.drivers.qemu import QemuDriver

    settings = Settings()
    availability = QemuDriver.probe(settings)
    if not availability.usable:
        pytest.skip(f"qemu driver unusable: {availability.reason}")
    require_languages(settings, PY)
    server = Server(tmp_path_factory.mktemp("qemu-containment"), env={"TVM_DRIVER": "qemu"})
    try:
        with server.client() as client:
            yield client
    finally:
        owners = session_processes()
        server.stop()
        print(server.log.read_text()[-3000:])
    assert not own_qemu_processes(owners), "a qemu process outlived the service"
    assert not sandbox_cgroups(owners=owners), "host cgroups of the VMs left behind"


def own_qemu_processes(owners: set[int]) -> list[str]:
    """QEMU processes of this session's servers (their temp dirs name the worker's pid)."""
    marks = [f"/tmp/tvm-qemu-{pid}-".encode() for pid in owners]
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"qemu-system" in cmd and any(mark in cmd for mark in marks):
                found.append(pid)
    return found


def run(api: httpx.Client, code: str, **limits: int) -> dict[str, Any]:
    result = python(api, code, limits={"timeout_ms": WALL_MS, **limits})
    return result["run"]


LAYOUT = """
def read(path):
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError as exc:
        return type(exc).__name__
print("own:", read("/proc/self/cgroup"))
for name in ("sandbox/cgroup.subtree_control", "sandbox/cgroup.procs", "sandbox/agent/cgroup.procs",
             "sandbox/program/memory.max", "sandbox/program/pids.max"):
    print(f"{name}:", read("/sys/fs/cgroup/" + name).replace(chr(10), " "))
"""


def test_the_guest_has_the_v2_sandbox_layout(vm_api: httpx.Client) -> None:
    report = lines({"run": run(vm_api, LAYOUT, memory_mb=96, processes=24)})
    assert report["own"] == "0::/sandbox/program", report  # v2: one line, the program leaf
    assert set(report["sandbox/cgroup.subtree_control"].split()) >= {"cpu", "memory", "pids"}
    assert report["sandbox/cgroup.procs"] == "", report  # an inner node holds no process
    assert report["sandbox/agent/cgroup.procs"] == "1", report  # the agent (PID 1) in its leaf
    assert report["sandbox/program/memory.max"] == str(96 << 20), report
    assert report["sandbox/program/pids.max"] == "24", report


def test_reaped_children_are_counted_and_stopped_in_a_vm(vm_api: httpx.Client) -> None:
    # 40 children of 50 ms, reaped by the kernel: 2 s of CPU that no rusage holds.
    over = python(vm_api, REAPED_PY, args=["0.05", "40"],
                  limits={"cpu_time_ms": 500, "timeout_ms": WALL_MS})["run"]  # fmt: skip
    assert over["status"] == "timeout", over
    assert over["cpu_ms"] >= 500 and "done" not in over["stdout"], over
    under = python(vm_api, REAPED_PY, args=["0.05", "8"],
                   limits={"cpu_time_ms": 20_000, "timeout_ms": WALL_MS})["run"]  # fmt: skip
    assert under["status"] == "ok" and under["stdout"] == "done\n", under
    assert under["cpu_ms"] >= 8 * 50 * 0.9, under  # every child's CPU is in cpu_ms


def test_parallel_children_are_stopped_while_they_run_in_a_vm(vm_api: httpx.Client) -> None:
    # 4 children of 2 s each: 8 s of CPU, stopped once the cgroup passes 500 ms.
    result = python(vm_api, PARALLEL_PY, args=["4", "2"],
                    limits={"cpu_time_ms": 500, "timeout_ms": WALL_MS})["run"]  # fmt: skip
    assert result["status"] == "timeout" and "done" not in result["stdout"], result
    assert 450 <= result["cpu_ms"] < 8000, result


MEMORY_BOMB = """
chunks = []
while True:
    chunks.append(bytearray(8 << 20))
    print(len(chunks) * 8, flush=True)
"""


def test_a_memory_bomb_is_memory_limit_in_a_vm(vm_api: httpx.Client) -> None:
    result = run(vm_api, MEMORY_BOMB, memory_mb=64, cpu_time_ms=20_000)  # TCG is slow at it
    assert result["status"] == "memory_limit", result
    reached = [int(n) for n in result["stdout"].split()]
    assert reached and max(reached) <= 64, result


FORK_BOMB = """
import os, time
made = 0
try:
    for _ in range(200):
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        made += 1
except OSError as exc:
    print("fork:", type(exc).__name__)
print("made:", made, flush=True)
"""


def test_a_fork_bomb_stops_at_the_program_pids_max(vm_api: httpx.Client) -> None:
    result = run(vm_api, FORK_BOMB, processes=16)
    report = lines({"run": result})
    assert report.get("fork") == "BlockingIOError", result  # EAGAIN from pids.max
    assert int(report["made"]) < 16, result
