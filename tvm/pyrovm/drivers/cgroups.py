"""One cgroup per sandbox, on cgroup v1 and v2 hosts alike.

Sandboxes live under the service's own cgroup (read from /proc/self/cgroup),
in a ``tvm`` subtree, so the service needs no delegation beyond its own::

    v1:  /sys/fs/cgroup/<controller>/<own path>/tvm/<sandbox>
         (memory, pids, cpu, cpuacct; cpu and cpuacct may be one hierarchy)
    v2:  /sys/fs/cgroup/<own path>/tvm/<sandbox>

On v2 the "no internal processes" rule means the service first moves itself
into ``<own>/service`` so that controllers can be enabled for ``<own>``, and
each sandbox is an inner node with two leaves, ``agent`` (the processes that
make the sandbox) and ``program`` (:mod:`..agent.cgroup2` decides that layout,
the same one a VM guest uses on its own v2 tree).

What each sandbox is charged and capped (docs/isolation.md has the full table):

* memory, with socket buffers: v2 charges them to ``memory.current`` by
  itself; v1 only once ``memory.kmem.tcp.limit_in_bytes`` is set, which is
  set here to the memory limit (v1 keeps that counter apart from the rest);
* processes (``pids.max``);
* CPU: a CFS quota of ``cpus`` cores and a weight in proportion, so that no
  sandbox takes more than its cores and sandboxes share a busy host fairly;
  every stage's CPU is measured by the ``program`` child's own counter
  (v1 ``cpuacct.usage``, v2 ``cpu.stat``), which sees every descendant,
  reaped by anyone or not.

On v1 a ``program`` child is made only in the hierarchies that limit or count
the program on its own: memory, pids and cpuacct. A ``cpu`` hierarchy of its
own (not co-mounted with cpuacct) carries only the sandbox's quota and weight,
which the program is under wherever it is below the sandbox: no child there.
A new cgroup's limits are the kernel's defaults (memory unlimited, a CFS
period of 100 ms, 1024 shares): they are not read back, and a value equal to
the default is not written.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from pathlib import Path

from tvm.errors import DriverUnavailable
from tvm.pyrovm.agent import cgroup2
from tvm.pyrovm.agent.supervisor import cgroup_cpu_ns

log = logging.getLogger("tvm.pyrovm.cgroups")

V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct")
V2_CONTROLLERS = cgroup2.CONTROLLERS
CFS_PERIOD_US = cgroup2.CFS_PERIOD_US
# v1 cpu.shares / v2 cpu.weight of a sandbox, per core of its quota.
V1_SHARES_PER_CPU = 1024
V2_WEIGHT_PER_CPU = cgroup2.WEIGHT_PER_CPU
# v1 controllers that limit or count the program apart from its sandbox.
V1_PROGRAM_CONTROLLERS = ("memory", "pids", "cpuacct")
# What a new v1 cgroup starts with (the kernel's defaults): the memory limits
# are PAGE_COUNTER_MAX pages (x86_64 and arm64 with 4 KiB pages alike read
# this value; any real limit is below it).
V1_UNLIMITED = str(0x7FFFFFFFFFFFF000)
V1_CPU_DEFAULTS = {"cpu.cfs_period_us": str(CFS_PERIOD_US), "cpu.shares": str(V1_SHARES_PER_CPU)}


def _own_paths(proc_cgroup: Path) -> dict[str, str]:
    paths: dict[str, str] = {}
    for line in proc_cgroup.read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write(path: Path | str, value: str) -> None:
    # os-level: this runs several times per execution (io.open costs 5x more).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read(path: Path | str) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 65536).decode()
    finally:
        os.close(fd)


PROGRAM = cgroup2.PROGRAM


class Cgroup:
    """The cgroup(s) of one sandbox, each with a ``program`` child.

    The sandbox as a whole (bwrap, the agent, the program) is charged to the
    parent; the agent moves each program it starts into the child, so the
    program's own limit is exactly what the request asked for, with the
    agent's memory accounted above it. On v1 the agent's processes live in the
    parent itself; on v2 in its ``agent`` leaf (no internal processes).

    ``fresh=False``: an existing cgroup, only to be removed (its layout is not
    touched). ``memsw``: the host's v1 memory controller has swap accounting
    (``memory.memsw.*``; a fact of the host, probed once by the manager).
    """

    def __init__(
        self, version: int, dirs: dict[str, Path], fresh: bool = True, memsw: bool = False
    ) -> None:
        self.version = version
        self.dirs = dirs  # controller -> directory ("" for v2); co-mounted ones share one
        self.unique_dirs = list(dict.fromkeys(dirs.values()))
        if version == 2 or not fresh:
            self.program_dirs = self.unique_dirs  # (removal tolerates a missing child)
        else:
            self.program_dirs = list(dict.fromkeys(self._dir(c) for c in V1_PROGRAM_CONTROLLERS))
        for d in self.unique_dirs if fresh else ():
            if version == 2:
                cgroup2.make_sandbox(str(d))
        for d in self.program_dirs if fresh and version == 1 else ():
            with contextlib.suppress(FileExistsError):
                os.mkdir(f"{d}/{PROGRAM}")
        mem, pids = self._dir("memory"), self._dir("pids")
        # (memory dir, pids dir) as strings, for the sandbox and its program.
        self._levels = ((f"{mem}", f"{pids}"), (f"{mem}/{PROGRAM}", f"{pids}/{PROGRAM}"))
        self._memsw = memsw
        self._written: dict[str, str] = {}  # file -> the value last written there
        if fresh and version == 1:  # the kernel's defaults: never read back
            for level, _ in self._levels:
                self._written[f"{level}/memory.limit_in_bytes"] = V1_UNLIMITED
                if memsw:
                    self._written[f"{level}/memory.memsw.limit_in_bytes"] = V1_UNLIMITED
            cpu = self._dir("cpu")
            self._written.update({f"{cpu}/{name}": v for name, v in V1_CPU_DEFAULTS.items()})

    @functools.cached_property  # a sandbox asks several times; its dirs never change
    def procs_files(self) -> list[Path]:
        """Where the sandbox's own processes (agent, VMM, runtime) go."""
        if self.version == 2:
            return [d / cgroup2.AGENT / "cgroup.procs" for d in self.unique_dirs]
        return [d / "cgroup.procs" for d in self.unique_dirs]

    @functools.cached_property
    def program_procs_files(self) -> list[Path]:
        """The ``program`` child's cgroup.procs, one per hierarchy that has one."""
        return [d / PROGRAM / "cgroup.procs" for d in self.program_dirs]

    @functools.cached_property
    def program_cpu_file(self) -> Path:
        """The program's CPU counter: v1 ``cpuacct.usage`` (ns), v2 ``cpu.stat``
        (``usage_usec``); the agent's ``cgroup_cpu_ns`` reads either."""
        if self.version == 2:
            return self._dir("") / PROGRAM / "cpu.stat"
        return self._dir("cpuacct") / PROGRAM / "cpuacct.usage"

    def _dir(self, controller: str) -> Path:
        found = self.dirs.get("" if self.version == 2 else controller)
        return found if found is not None else next(iter(self.dirs.values()))

    def set_limits(
        self,
        memory_bytes: int,
        pids: int,
        program_memory_bytes: int | None = None,
        program_pids: int | None = None,
        cpus: int | None = None,
    ) -> None:
        """Limit the whole sandbox and, when given, the program inside it; with
        ``cpus``, the sandbox's CPU quota and weight."""
        self._set(*self._levels[0], memory_bytes, pids)
        if program_memory_bytes is not None and program_pids is not None:
            self._set(*self._levels[1], program_memory_bytes, program_pids)
        if cpus is not None:
            self._set_cpus(cpus)

    def _set_cpus(self, cpus: int) -> None:
        quota = cpus * CFS_PERIOD_US
        if self.version == 2:
            d = self._dir("")
            for name, value in cgroup2.cpu_limits(cpus).items():
                self._put(f"{d}/{name}", value)
            return
        d = self._dir("cpu")
        self._put(f"{d}/cpu.cfs_period_us", str(CFS_PERIOD_US))
        self._put(f"{d}/cpu.cfs_quota_us", str(quota))
        self._put(f"{d}/cpu.shares", str(cpus * V1_SHARES_PER_CPU))

    def _put(self, path: str, value: str, optional: bool = False) -> None:
        """Write ``value`` unless it is what this object last wrote there."""
        if self._written.get(path) == value:
            return
        try:
            _write(path, value)
        except OSError:
            if not optional:
                raise
            return
        self._written[path] = value

    def _set(self, mem: str, pids_dir: str, memory_bytes: int, pids: int) -> None:
        if self.version == 2:  # socket buffers are part of memory.current on v2
            for name, value in cgroup2.limits(memory_bytes, pids).items():
                self._put(f"{mem}/{name}", value)
            self._put(f"{mem}/memory.swap.max", "0", optional=True)
            return
        limit, memsw = f"{mem}/memory.limit_in_bytes", f"{mem}/memory.memsw.limit_in_bytes"
        # memsw must stay >= limit: order the two writes accordingly.
        try:
            current = int(self._written.get(limit) or _read(limit))
        except (OSError, ValueError):
            current = 0
        if self._memsw and memory_bytes > current:
            self._put(memsw, str(memory_bytes))
        self._put(limit, str(memory_bytes))
        if self._memsw and memory_bytes <= current:
            self._put(memsw, str(memory_bytes))
        # v1 charges TCP/UDP buffers only to a cgroup with this limit set, to a
        # counter of its own: without it a program holds them outside its memory.
        self._put(f"{mem}/memory.kmem.tcp.limit_in_bytes", str(memory_bytes))
        self._put(f"{pids_dir}/pids.max", str(pids))

    def _peak_files(self) -> list[str]:
        """What the program's peak is read from: on v1 its socket buffers are a
        counter apart, added to the rest."""
        d = self._levels[1][0]
        if self.version == 2:
            return [f"{d}/memory.peak"]
        return [f"{d}/memory.max_usage_in_bytes", f"{d}/memory.kmem.tcp.max_usage_in_bytes"]

    def reset_program_peak(self) -> None:
        """Start measuring the program's peak memory afresh (v2: kernels >= 6.12)."""
        for path in self._peak_files():
            with contextlib.suppress(OSError):
                _write(path, "0" if self.version == 1 else "reset")

    def program_peak_kb(self) -> int | None:
        """The most memory the program's cgroup has been charged since the reset."""
        try:
            main, *sockets = self._peak_files()
            peak = int(_read(main))
        except (OSError, ValueError):
            return None
        for path in sockets:
            with contextlib.suppress(OSError, ValueError):
                peak += int(_read(path))
        return peak // 1024

    def cpu_ns(self) -> int:
        """CPU time the whole sandbox has used so far (every process, ever)."""
        name = "cpu.stat" if self.version == 2 else "cpuacct.usage"
        d = self._dir("" if self.version == 2 else "cpuacct")
        try:
            return cgroup_cpu_ns(_read(f"{d}/{name}"))
        except (OSError, ValueError):
            return 0

    def oom_kills(self) -> int:
        """OOM kills inside the sandbox (the program's child cgroup included)."""
        return self._oom_kills(self._levels[0][0]) + self._oom_kills(self._levels[1][0])

    def _oom_kills(self, d: str) -> int:
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            for line in _read(f"{d}/{name}").splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
            if self.version == 1:
                return int(_read(f"{d}/memory.failcnt"))
        except (OSError, ValueError):
            pass
        return 0

    def pids(self) -> list[int]:
        found: set[int] = set()
        for procs in self.procs_files + [d / PROGRAM / "cgroup.procs" for d in self.unique_dirs]:
            with contextlib.suppress(OSError, ValueError):
                found.update(int(p) for p in _read(procs).split())
        return sorted(found)

    def remove(self, patience: float = 20.0) -> None:
        """Kill what is left inside and remove the directories. Idempotent, and
        never raises: teardown must not fail a request.

        Blocks (run it in a thread) until the processes inside are gone: under
        load, a killed sandbox (a gVisor Sentry above all) can take seconds."""
        deadline = time.monotonic() + patience
        pause = 0.005
        while not self.try_remove():
            if time.monotonic() > deadline:
                log.warning("cgroup %s still busy after %gs: left for the next start",
                            next(iter(self.dirs.values())), patience)  # fmt: skip
                return
            time.sleep(pause)
            pause = min(pause * 2, 0.25)

    def try_remove(self) -> bool:
        """One attempt of :meth:`remove`; True when the directories are gone.
        A directory still busy (EBUSY: a process not yet gone) is retried by
        the next attempt; no error escapes.

        Usually the sandbox is already empty (its pid 1 is gone): the
        directories go at once, and only a busy one makes this look for
        processes to kill (8 files read on v1, per sandbox, saved)."""
        if self._rmdirs():
            return True
        if self.version == 2:
            with contextlib.suppress(OSError):
                cgroup2.kill(str(self._dir("")))
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, 9)
        return self._rmdirs()

    def _rmdirs(self) -> bool:
        gone = True
        for d in self.unique_dirs:
            if self.version == 2:
                paths = cgroup2.leaves(str(d))
            else:
                paths = [f"{d}/{PROGRAM}", f"{d}"] if d in self.program_dirs else [f"{d}"]
            for path in paths:
                try:
                    os.rmdir(path)
                except FileNotFoundError:
                    continue
                except OSError:  # EBUSY: not empty yet
                    gone = False
                    break
        return gone


class CgroupManager:
    """Finds the service's cgroup and makes sandbox cgroups below it."""

    def __init__(
        self, root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")
    ) -> None:
        self.root = root
        self.version = 2 if (root / "cgroup.controllers").exists() else 1
        self.memsw = False  # v1 swap accounting (memory.memsw.*), probed below
        own = _own_paths(proc_cgroup)
        if self.version == 2:
            self.base = {"": self._prepare_v2(root / own.get("", "/").lstrip("/"))}
        else:
            missing = [c for c in V1_CONTROLLERS if not (root / c).is_dir()]
            if missing:
                raise DriverUnavailable(f"cgroup v1 controller(s) {missing} not mounted")
            # resolve(): where cpu and cpuacct are one hierarchy, both names lead to it.
            self.base = {
                c: (root / c).resolve() / own.get(c, "/").lstrip("/") / "tvm"
                for c in V1_CONTROLLERS
            }
            for d in self.base.values():
                d.mkdir(exist_ok=True)
            self.memsw = (self.base["memory"] / "memory.memsw.limit_in_bytes").exists()
            self._weigh_subtree(self.base["cpu"] / "cpu.shares", V1_SHARES_PER_CPU, 262144)

    def _prepare_v2(self, own: Path) -> Path:
        needed = set(V2_CONTROLLERS)
        available = set((own / "cgroup.controllers").read_text().split())
        if not needed <= available:
            raise DriverUnavailable(
                f"cgroup v2 controllers {sorted(needed - available)} are not delegated to "
                f"{own}; run TVM as root or in a unit with Delegate=yes"
            )
        enabled = set((own / "cgroup.subtree_control").read_text().split())
        if not needed <= enabled:
            # Leave the parent empty of processes so controllers can be enabled.
            leaf = own / "service"
            leaf.mkdir(exist_ok=True)
            for pid in (own / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    _write(leaf / "cgroup.procs", pid)
            _write(own / "cgroup.subtree_control", " ".join(f"+{c}" for c in sorted(needed)))
        base = own / "tvm"
        base.mkdir(exist_ok=True)
        cgroup2.enable_controllers(str(base))
        _warn_if_sockets_uncharged()
        self._weigh_subtree(base / "cpu.weight", V2_WEIGHT_PER_CPU, 10000)
        return base

    @staticmethod
    def _weigh_subtree(path: Path, per_cpu: int, most: int) -> None:
        """All sandboxes together weigh as one busy process per core against the
        host's other processes (each of which weighs as one), so that sharing
        CPU fairly between sandboxes does not starve them all of it."""
        with contextlib.suppress(OSError):
            _write(path, str(min(most, per_cpu * (os.cpu_count() or 1))))

    def create(self, name: str) -> Cgroup:
        """A new sandbox cgroup, named after this process so that a worker that
        died without cleaning up can be recognised (:meth:`remove_orphans`)."""
        name = f"{os.getpid()}-{name}"
        dirs = {c: d / name for c, d in self.base.items()}
        for d in dict.fromkeys(dirs.values()):
            with contextlib.suppress(FileExistsError):
                os.mkdir(d)
        return Cgroup(self.version, dirs, memsw=self.memsw)

    def remove_orphans(self) -> int:
        """Remove the sandbox cgroups of workers that no longer run (killed
        before they could clean up); returns how many were removed."""
        removed = 0
        for base in dict.fromkeys(self.base.values()):
            for path in base.iterdir():
                owner = path.name.split("-", 1)[0]
                if not path.is_dir() or not owner.isdigit() or _alive(int(owner)):
                    continue
                Cgroup(self.version, {"": path}, fresh=False).remove()
                removed += 1
        return removed

    def leftovers(self) -> list[Path]:
        """Sandbox cgroups that still exist (tests assert there are none)."""
        bases = dict.fromkeys(self.base.values())
        return sorted(p for d in bases for p in d.iterdir() if p.is_dir())


def _warn_if_sockets_uncharged(cmdline: Path = Path("/proc/cmdline")) -> None:
    """cgroup v2 charges socket buffers to the memory limit unless the kernel
    was booted with ``cgroup.memory=nosocket``."""
    with contextlib.suppress(OSError):
        for word in cmdline.read_text().split():
            if word.startswith("cgroup.memory=") and "nosocket" in word.split("=", 1)[1]:
                log.warning(
                    "the kernel runs with %s: socket buffers are not charged to sandboxes' "
                    "memory limits; boot without it",
                    word,
                )
