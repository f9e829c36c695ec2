"""Cgroup handling on fake v1 and v2 hierarchies (no root needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tvm.errors import DriverUnavailable
from tvm.pyrovm.drivers.cgroups import CgroupManager


def fake_v1(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "cg"
    for c in ("memory", "pids"):
        (root / c / "svc").mkdir(parents=True)
    proc = tmp_path / "self_cgroup"
    proc.write_text("4:memory:/svc\n8:pids:/svc\n0::/\n")
    return root, proc


def test_v1_limits_and_oom_counter(tmp_path: Path) -> None:
    root, proc = fake_v1(tmp_path)
    manager = CgroupManager(root, proc)
    assert manager.version == 1
    group = manager.create("sb-1")
    mem = root / "memory/svc/tvm/sb-1"
    assert mem.is_dir() and (root / "pids/svc/tvm/sb-1").is_dir()
    (mem / "memory.limit_in_bytes").write_text("0")
    group.set_limits(64 << 20, 10)
    assert (mem / "memory.limit_in_bytes").read_text() == str(64 << 20)
    assert (root / "pids/svc/tvm/sb-1/pids.max").read_text() == "10"
    (mem / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert group.oom_kills() == 2
    assert [p.name for p in manager.leftovers()] == ["sb-1", "sb-1"]


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
    group.set_limits(32 << 20, 5)
    assert (own / "tvm/sb-2/memory.max").read_text() == str(32 << 20)
    assert (own / "tvm/sb-2/pids.max").read_text() == "5"
    (own / "tvm/sb-2/memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
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
