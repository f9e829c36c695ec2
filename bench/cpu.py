"""CPU time of what the benchmark starts, from cgroup accounting.

Wall-clock rates on a shared machine move with everyone else's work; the CPU
a method spends per execution does not. The benchmark puts itself (and so the
bare processes, the in-process engine and its sandboxes) in one accounting
cgroup and the ``tvm start`` service (and so its zygotes and sandboxes) in
another, and reads both counters around each measured run:

    v1:  /sys/fs/cgroup/cpuacct/<own path>/tvmbench-<pid>-<name>  (cpuacct.usage, ns)
    v2:  /sys/fs/cgroup/<own path>/tvmbench-<pid>-<name>          (cpu.stat usage_usec)

Children inherit their parent's cgroup when forked, so ``inside`` is used
around starting the service only. Both directories are removed at the end.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def _own(controller: str) -> str:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        if controller in names.split(","):
            return path
    return "/"


class Meter:
    """One accounting cgroup: enter it, read its CPU counter, remove it."""

    def __init__(self, name: str) -> None:
        self.v2 = (ROOT / "cgroup.controllers").exists()
        if self.v2:
            base = ROOT / _own("").lstrip("/")
        else:
            hierarchy = (ROOT / "cpuacct").resolve()
            base = hierarchy / _own("cpuacct").lstrip("/")
        self.home = base / "cgroup.procs"  # where this process came from
        self.dir = base / f"tvmbench-{os.getpid()}-{name}"
        self.dir.mkdir(exist_ok=True)

    def ns(self) -> int:
        """CPU time of everything that has run in this cgroup, in ns."""
        if self.v2:
            for line in (self.dir / "cpu.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    return int(value) * 1000
            return 0
        return int((self.dir / "cpuacct.usage").read_text())

    def enter(self) -> None:
        """Move this process (all its threads) in; what it forks from now on is counted here."""
        (self.dir / "cgroup.procs").write_text(str(os.getpid()))

    def leave(self) -> None:
        self.home.write_text(str(os.getpid()))

    @contextlib.contextmanager
    def inside(self) -> Iterator[None]:
        """Within the block, processes this one starts are counted here."""
        self.enter()
        try:
            yield
        finally:
            self.leave()

    def remove(self) -> None:
        """Remove the cgroup and what a service left below it (deepest first)."""
        for path in sorted(self.dir.rglob("*"), key=lambda p: -len(p.parts)):
            if path.is_dir():
                with contextlib.suppress(OSError):
                    path.rmdir()
        with contextlib.suppress(OSError):
            self.dir.rmdir()


def meters(*names: str) -> dict[str, Meter] | None:
    """One :class:`Meter` per name, or None where cgroups cannot be made (not root)."""
    try:
        return {name: Meter(name) for name in names}
    except OSError:
        return None
