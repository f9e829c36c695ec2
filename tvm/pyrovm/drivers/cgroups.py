"""One cgroup per sandbox, on cgroup v1 and v2 hosts alike.

Sandboxes live under the service's own cgroup (read from /proc/self/cgroup),
in a ``tvm`` subtree, so the service needs no delegation beyond its own:

    v1:  /sys/fs/cgroup/<controller>/<own path>/tvm/<sandbox>   (memory, pids)
    v2:  /sys/fs/cgroup/<own path>/tvm/<sandbox>

On v2 the "no internal processes" rule means the service first moves itself
into ``<own>/service`` so that controllers can be enabled for ``<own>``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

from tvm.errors import DriverUnavailable

log = logging.getLogger("tvm.pyrovm.cgroups")

V1_CONTROLLERS = ("memory", "pids")


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


PROGRAM = "program"


class Cgroup:
    """The cgroup(s) of one sandbox, each with a ``program`` child.

    The sandbox as a whole (bwrap, the agent, the program) lives in the parent;
    the agent moves each program it starts into the child, so the program's
    own limit is exactly what the request asked for, with the agent's memory
    accounted above it.
    """

    def __init__(self, version: int, dirs: dict[str, Path]) -> None:
        self.version = version
        self.dirs = dirs  # controller -> directory ("" for v2)
        for d in dirs.values():
            with contextlib.suppress(FileExistsError):
                os.mkdir(f"{d}/{PROGRAM}")
        mem, pids = self._dir("memory"), self._dir("pids")
        # (memory dir, pids dir) as strings, for the sandbox and its program.
        self._levels = ((f"{mem}", f"{pids}"), (f"{mem}/{PROGRAM}", f"{pids}/{PROGRAM}"))
        self._written: dict[str, str] = {}  # file -> the value last written there

    @property
    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in self.dirs.values()]

    @property
    def program_procs_files(self) -> dict[str, Path]:
        """controller -> the ``program`` child's cgroup.procs (v2: key "unified")."""
        return {(c or "unified"): d / PROGRAM / "cgroup.procs" for c, d in self.dirs.items()}

    def _dir(self, controller: str) -> Path:
        found = self.dirs.get("" if self.version == 2 else controller)
        return found if found is not None else next(iter(self.dirs.values()))

    def set_limits(
        self,
        memory_bytes: int,
        pids: int,
        program_memory_bytes: int | None = None,
        program_pids: int | None = None,
    ) -> None:
        """Limit the whole sandbox and, when given, the program inside it."""
        self._set(*self._levels[0], memory_bytes, pids)
        if program_memory_bytes is not None and program_pids is not None:
            self._set(*self._levels[1], program_memory_bytes, program_pids)

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
        if self.version == 2:
            self._put(f"{mem}/memory.max", str(memory_bytes))
            self._put(f"{mem}/memory.swap.max", "0", optional=True)
            self._put(f"{pids_dir}/pids.max", str(pids))
            return
        limit, memsw = f"{mem}/memory.limit_in_bytes", f"{mem}/memory.memsw.limit_in_bytes"
        # memsw must stay >= limit: order the two writes accordingly.
        try:
            current = int(self._written.get(limit) or _read(limit))
        except (OSError, ValueError):
            current = 0
        has_memsw = self._written.get(memsw) is not None or os.path.exists(memsw)
        if has_memsw and memory_bytes > current:
            self._put(memsw, str(memory_bytes))
        self._put(limit, str(memory_bytes))
        if has_memsw and memory_bytes <= current:
            self._put(memsw, str(memory_bytes))
        self._put(f"{pids_dir}/pids.max", str(pids))

    def _peak_file(self) -> str:
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        return f"{self._levels[1][0]}/{name}"

    def reset_program_peak(self) -> None:
        """Start measuring the program's peak memory afresh (v2: kernels >= 6.12)."""
        with contextlib.suppress(OSError):
            _write(self._peak_file(), "0" if self.version == 1 else "reset")

    def program_peak_kb(self) -> int | None:
        """The most memory the program's cgroup has been charged since the reset."""
        try:
            return int(_read(self._peak_file())) // 1024
        except (OSError, ValueError):
            return None

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
        for procs in self.procs_files + list(self.program_procs_files.values()):
            with contextlib.suppress(OSError, ValueError):
                found.update(int(p) for p in _read(procs).split())
        return sorted(found)

    def remove(self, patience: float = 20.0) -> None:
        """Kill what is left inside and remove the directories. Idempotent.

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
        """One attempt of :meth:`remove`; True when the directories are gone."""
        if self.version == 2:
            with contextlib.suppress(OSError):
                _write(self.dirs[""] / "cgroup.kill", "1")
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, 9)
        gone = True
        for d in self.dirs.values():
            with contextlib.suppress(FileNotFoundError):
                try:
                    os.rmdir(f"{d}/{PROGRAM}")
                    os.rmdir(d)
                except FileNotFoundError:
                    os.rmdir(d)
                except OSError:  # not empty yet
                    gone = False
        return gone


class CgroupManager:
    """Finds the service's cgroup and makes sandbox cgroups below it."""

    def __init__(
        self, root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")
    ) -> None:
        self.root = root
        self.version = 2 if (root / "cgroup.controllers").exists() else 1
        own = _own_paths(proc_cgroup)
        if self.version == 2:
            self.base = {"": self._prepare_v2(root / own.get("", "/").lstrip("/"))}
        else:
            missing = [c for c in V1_CONTROLLERS if not (root / c).is_dir()]
            if missing:
                raise DriverUnavailable(f"cgroup v1 controller(s) {missing} not mounted")
            self.base = {c: root / c / own.get(c, "/").lstrip("/") / "tvm" for c in V1_CONTROLLERS}
            for d in self.base.values():
                d.mkdir(exist_ok=True)

    def _prepare_v2(self, own: Path) -> Path:
        needed = {"memory", "pids"}
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
        _write(base / "cgroup.subtree_control", "+memory +pids")
        return base

    def create(self, name: str) -> Cgroup:
        """A new sandbox cgroup, named after this process so that a worker that
        died without cleaning up can be recognised (:meth:`remove_orphans`)."""
        name = f"{os.getpid()}-{name}"
        dirs = {c: d / name for c, d in self.base.items()}
        for d in dirs.values():
            with contextlib.suppress(FileExistsError):
                os.mkdir(d)
        return Cgroup(self.version, dirs)

    def remove_orphans(self) -> int:
        """Remove the sandbox cgroups of workers that no longer run (killed
        before they could clean up); returns how many were removed."""
        removed = 0
        for base in self.base.values():
            for path in base.iterdir():
                owner = path.name.split("-", 1)[0]
                if not path.is_dir() or not owner.isdigit() or _alive(int(owner)):
                    continue
                Cgroup(self.version, {"": path}).remove()
                removed += 1
        return removed

    def leftovers(self) -> list[Path]:
        """Sandbox cgroups that still exist (tests assert there are none)."""
        return sorted(p for d in self.base.values() for p in d.iterdir() if p.is_dir())
