"""Cgroup handling on fake v1 and v2 hierarchies (no root needed)."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from tvm.errors import DriverUnavailable
from tvm.pyrovm.drivers.cgroups import CgroupManager


def fake_v1(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "cg"
    for c in ("memory", "pids", "cpu,cpuacct"):
        (root / c / "svc").mkdir(parents=True)
    # cpu and cpuacct co-mounted, as most v1 hosts have them.
    (root / "cpu").symlink_to("cpu,cpuacct")
    (root / "cpuacct").symlink_to("cpu,cpuacct")
    proc = tmp_path / "self_cgroup"
    proc.write_text("4:memory:/svc\n8:pids:/svc\n2:cpu,cpuacct:/svc\n0::/\n")
    return root, proc


def test_v1_limits_and_oom_counter(tmp_path: Path) -> None:
    root, proc = fake_v1(tmp_path)
    manager = CgroupManager(root, proc)
    assert manager.version == 1
    group = manager.create("sb-1")
    name = f"{os.getpid()}-sb-1"
    mem = root / f"memory/svc/tvm/{name}"
    assert group.dirs["memory"] == mem
    assert mem.is_dir() and (root / f"pids/svc/tvm/{name}").is_dir()
    (mem / "memory.limit_in_bytes").write_text("0")
    group.set_limits(64 << 20, 10)
    assert (mem / "memory.limit_in_bytes").read_text() == str(64 << 20)
    assert (root / f"pids/svc/tvm/{name}/pids.max").read_text() == "10"
    (mem / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert group.oom_kills() == 2
    assert [p.name for p in manager.leftovers()] == [name, name, name]


def test_v2_moves_itself_to_a_leaf_and_enables_controllers(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    own = root / "svc"
    own.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu memory pids\n")
    (own / "cgroup.controllers").write_text("cpu memory pids\n")
    (own / "cgroup.subtree_control").write_text("")
    (own / "cgroup.procs").write_text("123\n")
    proc = tmp_path / "self_cgroup"
    proc.write_text("0::/svc\n")
    manager = CgroupManager(root, proc)
    assert manager.version == 2
    assert (own / "service/cgroup.procs").read_text() == "123"
    assert "+memory" in (own / "cgroup.subtree_control").read_text()
    group = manager.create("sb-2")
    d = group.dirs[""]
    assert d == own / f"tvm/{os.getpid()}-sb-2"
    group.set_limits(32 << 20, 5, program_memory_bytes=16 << 20, program_pids=3)
    assert (d / "memory.max").read_text() == str(32 << 20)
    assert (d / "pids.max").read_text() == "5"
    assert (d / "program/memory.max").read_text() == str(16 << 20)
    assert (d / "program/pids.max").read_text() == "3"
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert group.oom_kills() == 1


def test_v2_without_delegated_controllers_says_why(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    (root / "svc").mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu\n")
    (root / "svc/cgroup.controllers").write_text("cpu\n")
    proc = tmp_path / "self_cgroup"
    proc.write_text("0::/svc\n")
    with pytest.raises(DriverUnavailable, match="Delegate=yes"):
        CgroupManager(root, proc)


def test_orphans_of_dead_workers_are_removed(tmp_path: Path) -> None:
    root, proc = fake_v1(tmp_path)
    manager = CgroupManager(root, proc)
    mine = manager.create("sb-live")
    child = subprocess.Popen(["true"])  # its pid no longer runs once waited for
    child.wait()
    for controller in ("memory", "pids", "cpu,cpuacct"):
        orphan = root / controller / "svc/tvm" / f"{child.pid}-sb-dead"
        orphan.mkdir()
        (orphan / "cgroup.procs").write_text("")
    # A fake cgroupfs cannot rmdir non-empty dirs: empty them as the kernel would.
    removed = []

    def fake_remove(self):  # type: ignore[no-untyped-def]
        removed.extend(self.dirs.values())

    import tvm.pyrovm.drivers.cgroups as cg

    original = cg.Cgroup.remove
    cg.Cgroup.remove = fake_remove  # type: ignore[method-assign]
    try:
        assert manager.remove_orphans() == 3
    finally:
        cg.Cgroup.remove = original  # type: ignore[method-assign]
    assert sorted(p.name for p in removed) == [f"{child.pid}-sb-dead"] * 3
    assert all(d.is_dir() for d in mine.dirs.values())  # the live worker's stay


def test_v1_cpu_quota_share_and_socket_memory(tmp_path: Path) -> None:
    root, proc = fake_v1(tmp_path)
    group = CgroupManager(root, proc).create("sb-3")
    name = f"{os.getpid()}-sb-3"
    cpu = root / f"cpu,cpuacct/svc/tvm/{name}"
    # cpu and cpuacct are one hierarchy: one directory, entered once.
    assert group.dirs["cpu"] == group.dirs["cpuacct"] == cpu
    assert len(group.procs_files) == len(group.program_procs_files) == 3
    group.set_limits(64 << 20, 10, program_memory_bytes=32 << 20, program_pids=5, cpus=2)
    assert not (cpu / "cpu.cfs_period_us").exists()  # the kernel's default, 100 ms: not rewritten
    assert (cpu / "cpu.cfs_quota_us").read_text() == "200000"
    assert (cpu / "cpu.shares").read_text() == "2048"
    mem = root / f"memory/svc/tvm/{name}"
    # v1 charges socket buffers only where this limit is set.
    assert (mem / "memory.kmem.tcp.limit_in_bytes").read_text() == str(64 << 20)
    assert (mem / "program/memory.kmem.tcp.limit_in_bytes").read_text() == str(32 << 20)
    # The program's peak includes its socket buffers, a counter apart on v1.
    (mem / "program/memory.max_usage_in_bytes").write_text(str(10 << 20))
    (mem / "program/memory.kmem.tcp.max_usage_in_bytes").write_text(str(6 << 20))
    assert group.program_peak_kb() == 16 << 10
    assert group.program_cpu_file == cpu / "program/cpuacct.usage"
    (cpu / "cpuacct.usage").write_text("1234567\n")
    assert group.cpu_ns() == 1234567


def test_v2_cpu_quota_and_weight(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    own = root / "svc"
    own.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu memory pids\n")
    (own / "cgroup.controllers").write_text("cpu memory pids\n")
    (own / "cgroup.subtree_control").write_text("cpu memory pids\n")
    proc = tmp_path / "self_cgroup"
    proc.write_text("0::/svc\n")
    group = CgroupManager(root, proc).create("sb-4")
    group.set_limits(64 << 20, 10, cpus=1)
    d = group.dirs[""]
    assert (d / "cpu.max").read_text() == "100000 100000"
    assert (d / "cpu.weight").read_text() == "100"
    assert (own / "tvm/cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert group.program_cpu_file == d / "program/cpu.stat"
    (d / "cpu.stat").write_text("usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n")
    assert group.cpu_ns() == 2_500_000


def test_a_busy_cgroup_is_retried_never_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rmdir of a cgroup whose last process is still exiting fails with EBUSY:
    one attempt says "not yet", it does not raise into the request."""
    root, proc = fake_v1(tmp_path)
    group = CgroupManager(root, proc).create("sb-5")
    for d in group.unique_dirs:
        (d / "program").rmdir()  # the program child is already gone
    real_rmdir = os.rmdir

    def busy(path: str) -> None:
        if not str(path).endswith("/program"):
            raise OSError(errno.EBUSY, "Device or resource busy", path)
        real_rmdir(path)

    monkeypatch.setattr(os, "rmdir", busy)
    assert group.try_remove() is False
    monkeypatch.setattr(os, "rmdir", real_rmdir)
    for d in group.unique_dirs:
        (d / "cgroup.procs").unlink(missing_ok=True)
    assert group.try_remove() is True
    assert not any(d.exists() for d in group.unique_dirs)


def test_an_empty_cgroup_goes_without_looking_for_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The usual teardown: the sandbox's pid 1 is gone, so the directories go at
    once; only a busy one is searched for processes (and they are killed)."""
    root, proc = fake_v1(tmp_path)
    group = CgroupManager(root, proc).create("sb-6")
    looked: list[int] = []
    monkeypatch.setattr(type(group), "pids", lambda self: looked.append(1) or [])
    assert group.try_remove() is True
    assert not looked
    assert not any(d.exists() for d in group.unique_dirs)

    busy_group = CgroupManager(root, proc).create("sb-7")
    (busy_group.unique_dirs[0] / "program" / "cgroup.procs").write_text("")  # not empty
    killed: list[int] = []
    monkeypatch.setattr(type(busy_group), "pids", lambda self: [424242])
    monkeypatch.setattr(os, "kill", lambda pid, sig: killed.append(pid))
    assert busy_group.try_remove() is False
    assert killed == [424242]


def _fake_v2_service(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "cg"
    own = root / "svc"
    own.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu memory pids\n")
    (own / "cgroup.controllers").write_text("cpu memory pids\n")
    (own / "cgroup.subtree_control").write_text("cpu memory pids\n")
    proc = tmp_path / "self_cgroup"
    proc.write_text("0::/svc\n")
    return root, proc


def test_v2_sandbox_is_an_inner_node_with_agent_and_program_leaves(tmp_path: Path) -> None:
    """v2's no-internal-processes rule: the sandbox node enables controllers
    for its children and holds no process; the agent and the program are
    sibling leaves, and removal goes leaves first."""
    root, proc = _fake_v2_service(tmp_path)
    group = CgroupManager(root, proc).create("sb-5")
    d = group.dirs[""]
    assert (d / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert group.procs_files == [d / "agent/cgroup.procs"]
    assert group.program_procs_files == [d / "program/cgroup.procs"]
    (d / "agent/cgroup.procs").write_text("41\n")
    (d / "program/cgroup.procs").write_text("42\n")
    assert group.pids() == [41, 42]
    for leaf in ("agent", "program"):  # plain directories: rmdir needs them empty
        (d / leaf / "cgroup.procs").unlink()
    (d / "cgroup.subtree_control").unlink()
    assert group.try_remove()
    assert not d.exists()


def test_the_vm_guest_lays_out_the_same_tree(tmp_path: Path) -> None:
    """The guest init (on the guest's real cgroup2 tree in the QEMU tests)
    makes the v2 layout, enters its agent leaf and hands the program leaf's
    procs file and CPU counter to the supervisor."""
    from tvm.pyrovm.agent import supervisor, vminit

    root = tmp_path / "guest"
    (root / "sandbox/program").mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "sandbox/program/cpu.stat").write_text("usage_usec 7\n")
    (root / "sandbox/program/cgroup.procs").write_text("")
    saved = supervisor.PROGRAM_CGROUP_FDS[:], supervisor.PROGRAM_CPU_FDS[:]
    try:
        assert vminit.setup_cgroup(str(root))
        assert (root / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
        assert (root / "sandbox/cgroup.subtree_control").read_text() == "+cpu +memory +pids"
        assert (root / "sandbox/agent/cgroup.procs").read_text() == str(os.getpid())
        assert supervisor._program_cpu_ns() == 7000
        vminit.limit_program({"memory_mb": 48, "processes": 9}, str(root / "sandbox/program"))
        assert (root / "sandbox/program/memory.max").read_text() == str(48 << 20)
        assert (root / "sandbox/program/pids.max").read_text() == "9"
    finally:
        for fd in supervisor.PROGRAM_CGROUP_FDS + supervisor.PROGRAM_CPU_FDS:
            os.close(fd)
        supervisor.PROGRAM_CGROUP_FDS[:], supervisor.PROGRAM_CPU_FDS[:] = saved


def fake_v1_apart(tmp_path: Path) -> tuple[Path, Path]:
    """cpu and cpuacct as hierarchies of their own (as on this project's CI hosts)."""
    root = tmp_path / "cg"
    for c in ("memory", "pids", "cpu", "cpuacct"):
        (root / c / "svc").mkdir(parents=True)
    proc = tmp_path / "self_cgroup"
    proc.write_text("4:memory:/svc\n8:pids:/svc\n2:cpuacct:/svc\n1:cpu:/svc\n0::/\n")
    return root, proc


def test_v1_separate_cpu_hierarchy_has_no_program_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The program is limited and counted apart by memory, pids and cpuacct; the
    cpu hierarchy holds only the sandbox's quota, which covers the program
    wherever it is in the sandbox: the agent enters 4 cgroups, the program 3."""
    root, proc = fake_v1_apart(tmp_path)
    group = CgroupManager(root, proc).create("sb-8")
    name = f"{os.getpid()}-sb-8"
    cpu, acct = root / f"cpu/svc/tvm/{name}", root / f"cpuacct/svc/tvm/{name}"
    assert len(group.procs_files) == 4
    assert cpu / "cgroup.procs" in group.procs_files
    assert sorted(group.program_procs_files) == sorted(
        root / f"{c}/svc/tvm/{name}/program/cgroup.procs" for c in ("memory", "pids", "cpuacct")
    )
    assert not (cpu / "program").exists() and (acct / "program").is_dir()
    assert group.program_cpu_file == acct / "program/cpuacct.usage"
    group.set_limits(64 << 20, 10, program_memory_bytes=32 << 20, program_pids=5, cpus=1)
    assert (cpu / "cpu.cfs_quota_us").read_text() == "100000"
    # 1024 shares per core and a 100 ms period are what a new cgroup has.
    assert not (cpu / "cpu.shares").exists() and not (cpu / "cpu.cfs_period_us").exists()
    group.set_limits(64 << 20, 10, cpus=2)
    assert (cpu / "cpu.shares").read_text() == "2048"
    removed: list[str] = []
    monkeypatch.setattr(os, "rmdir", removed.append)
    assert group.try_remove() is True
    assert len(removed) == 7 and str(cpu / "program") not in removed  # children first
    for d in group.program_dirs:
        assert removed.index(f"{d}/program") < removed.index(str(d))


def test_v1_limits_are_written_once_and_never_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new cgroup's memory limit is unlimited: nothing is read to order the
    memsw write; the host's memsw support is probed once, by the manager; a
    stage whose limits equal what is set writes nothing."""
    root, proc = fake_v1_apart(tmp_path)
    (root / "memory/svc/tvm").mkdir()
    (root / "memory/svc/tvm/memory.memsw.limit_in_bytes").write_text("")
    manager = CgroupManager(root, proc)
    assert manager.memsw
    group = manager.create("sb-9")
    import tvm.pyrovm.drivers.cgroups as cg

    opened: list[str] = []
    real_write, real_read = cg._write, cg._read
    monkeypatch.setattr(cg, "_read", lambda path: opened.append(f"r {path}") or real_read(path))
    monkeypatch.setattr(
        cg, "_write", lambda path, v: opened.append(f"w {path}") or real_write(path, v)
    )
    monkeypatch.setattr(os.path, "exists", lambda path: pytest.fail(f"probed {path}"))
    group.set_limits(64 << 20, 10, program_memory_bytes=32 << 20, program_pids=5, cpus=1)
    assert not [op for op in opened if op.startswith("r ")]
    mem = group.dirs["memory"]
    for level in (mem, mem / "program"):
        assert (level / "memory.memsw.limit_in_bytes").read_text() == (
            (level / "memory.limit_in_bytes").read_text()
        )
    # memsw first when raising a limit (memsw >= limit at every moment), last when lowering.
    opened.clear()
    group.set_limits(128 << 20, 10)
    assert [op.rsplit("/", 1)[1] for op in opened] == [
        "memory.memsw.limit_in_bytes", "memory.limit_in_bytes", "memory.kmem.tcp.limit_in_bytes"
    ]  # fmt: skip
    opened.clear()
    group.set_limits(16 << 20, 10)
    assert [op.rsplit("/", 1)[1] for op in opened][:2] == [
        "memory.limit_in_bytes", "memory.memsw.limit_in_bytes"
    ]  # fmt: skip
    opened.clear()
    group.set_limits(16 << 20, 10, program_memory_bytes=32 << 20, program_pids=5, cpus=1)
    assert opened == []
