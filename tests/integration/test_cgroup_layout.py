"""The namespace driver's cgroups on the real kernel: what a new cgroup starts
with (the driver leaves those values unwritten and unread), where the program
sits in each hierarchy, and that its CPU is capped and counted from there.

Fake hierarchies (tests/unit/test_cgroups.py) check the files written; these
check that the kernel agrees.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import namespace_unavailable
from tests.contract.test_drivers import LIMITS, _spec
from tvm.config.settings import Settings
from tvm.pyrovm.drivers import cgroups as cg
from tvm.pyrovm.drivers.namespace import NamespaceDriver

pytestmark = [pytest.mark.namespace]


@pytest.fixture
def manager(settings: Settings) -> cg.CgroupManager:
    reason = namespace_unavailable(settings)
    if reason:
        pytest.skip(reason)
    return cg.CgroupManager()


def test_a_new_v1_cgroup_has_the_defaults_left_unwritten(manager: cg.CgroupManager) -> None:
    if manager.version != 1:
        pytest.skip("cgroup v2 host: the v1 defaults do not apply")
    group = manager.create("layout-defaults")
    try:
        mem, cpu = group.dirs["memory"], group.dirs["cpu"]
        for level in (mem, mem / cg.PROGRAM):
            assert (level / "memory.limit_in_bytes").read_text().strip() == cg.V1_UNLIMITED
            memsw = level / "memory.memsw.limit_in_bytes"
            assert memsw.exists() == manager.memsw
            if manager.memsw:
                assert memsw.read_text().strip() == cg.V1_UNLIMITED
        for name, value in cg.V1_CPU_DEFAULTS.items():
            assert (cpu / name).read_text().strip() == value
        group.set_limits(96 << 20, 20, program_memory_bytes=64 << 20, program_pids=10, cpus=2)
        assert (mem / "memory.limit_in_bytes").read_text().strip() == str(96 << 20)
        assert (mem / "program/memory.limit_in_bytes").read_text().strip() == str(64 << 20)
        if manager.memsw:
            assert (mem / "program/memory.memsw.limit_in_bytes").read_text().strip() == str(
                64 << 20
            )
        assert (cpu / "cpu.cfs_period_us").read_text().strip() == "100000"
        assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "200000"
        assert (cpu / "cpu.shares").read_text().strip() == "2048"
        # Lowered below the old limit, then raised above it: memsw is kept >= the limit.
        group.set_limits(32 << 20, 20)
        group.set_limits(128 << 20, 20)
        assert (mem / "memory.limit_in_bytes").read_text().strip() == str(128 << 20)
    finally:
        group.remove(patience=5)
    assert not any(d.exists() for d in group.unique_dirs)


# The program's own view: its cgroup namespace's root is the sandbox's cgroup.
CGROUP_AND_CPU = """
import os, time
print(open("/proc/self/cgroup").read().strip())
pid = os.fork()
if pid == 0:
    end = time.process_time() + 0.4
    while time.process_time() < end:
        pass
    os._exit(0)
os.waitpid(pid, 0)
usage = os.times()
print("cpu", usage.children_user + usage.children_system + usage.user + usage.system)
"""


async def test_the_program_is_counted_and_capped_where_it_sits(
    manager: cg.CgroupManager, settings: Settings
) -> None:
    """memory, pids and cpuacct have a ``program`` child the program is in;
    a ``cpu`` hierarchy of its own has none: the program is in the sandbox's
    cgroup there, under the sandbox's quota. The stage's CPU (cpuacct's
    ``program`` child) is at least what the program and its child used."""
    driver = NamespaceDriver(settings)
    box = await driver.start(_spec(settings))
    try:
        await box.write_files([("main.py", CGROUP_AND_CPU.encode(), 0o644)])
        limits = replace(LIMITS, cpus=1)
        reply = await box.run_stage("run", ["python3", "main.py"], b"", limits, pyrun=True)
        assert reply.status == "ok", reply
        *cgroup_lines, cpu_line = reply.stdout.decode().splitlines()
        where = {}
        for line in cgroup_lines:
            _, controllers, path = line.split(":", 2)
            for controller in controllers.split(","):
                where[controller] = path
        if manager.version == 2:
            assert where[""] == "/program"
        else:
            for controller in cg.V1_PROGRAM_CONTROLLERS:
                assert where[controller] == "/program", where
            apart = manager.base["cpu"] != manager.base["cpuacct"]
            assert where["cpu"] == ("/" if apart else "/program"), where
            sandbox_cpu = box.cgroup.dirs["cpu"]  # type: ignore[attr-defined]
            assert (sandbox_cpu / "cpu.cfs_quota_us").read_text().strip() == "100000"
            assert not (sandbox_cpu / cg.PROGRAM).exists() or not apart
        used_ms = float(cpu_line.split()[1]) * 1000
        assert used_ms >= 400 - 10
        assert reply.cpu_ms >= used_ms * 0.9, (reply.cpu_ms, used_ms)
    finally:
        await box.destroy()
        await driver.close()
    assert not any(d.exists() for d in box.cgroup.dirs.values())  # type: ignore[attr-defined]


def test_the_zygote_request_names_one_procs_file_per_hierarchy(
    manager: cg.CgroupManager,
) -> None:
    group = manager.create("layout-files")
    try:
        assert len(group.procs_files) == len(group.unique_dirs)
        assert all(Path(p).exists() for p in group.procs_files + group.program_procs_files)
        assert os.path.exists(group.program_cpu_file)
    finally:
        group.remove(patience=5)
