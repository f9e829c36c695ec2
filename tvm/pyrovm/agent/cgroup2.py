"""The cgroup v2 layout of one sandbox, shared by the host and a VM guest.

Stdlib only: a microVM's init uses it on the guest's own cgroup2 tree, the
host's cgroup code (``drivers/cgroups.py``) on a v2 host. v2's "no internal
processes" rule lets a cgroup hand controllers to its children only while it
holds no process itself, so a sandbox is an inner node with two leaves::

    <sandbox>/                 cgroup.subtree_control: +cpu +memory +pids
                               memory.max, pids.max, cpu.max: the whole sandbox
    <sandbox>/agent/           the agent (the VMM, runsc or bwrap on a host)
    <sandbox>/program/         each stage's program: the stage's own limits;
                               its cpu.stat counts every descendant, reaped or not

Controllers are enabled only on inner nodes; processes live only in leaves.
"""

from __future__ import annotations

import contextlib
import os

CONTROLLERS = ("cpu", "memory", "pids")
AGENT = "agent"
PROGRAM = "program"
CFS_PERIOD_US = 100_000
WEIGHT_PER_CPU = 100  # cpu.weight per core of a sandbox's quota (100 is one process)


def write(path: str, value: str) -> None:
    # O_CREAT: a no-op on a cgroup's own files, and lets tests use a plain directory.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def enable_controllers(directory: str, controllers: tuple[str, ...] = CONTROLLERS) -> None:
    """Let ``directory``'s children be limited by ``controllers`` (an inner node)."""
    write(f"{directory}/cgroup.subtree_control", " ".join(f"+{c}" for c in controllers))


def make_sandbox(directory: str, controllers: tuple[str, ...] = CONTROLLERS) -> None:
    """The sandbox node and its two leaves (existing parts are kept)."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(directory)
    enable_controllers(directory, controllers)
    for leaf in (AGENT, PROGRAM):
        with contextlib.suppress(FileExistsError):
            os.mkdir(f"{directory}/{leaf}")


def limits(memory_bytes: int, pids: int) -> dict[str, str]:
    """The files and values that cap one node's memory and processes."""
    return {"memory.max": str(memory_bytes), "pids.max": str(pids)}


def cpu_limits(cpus: int) -> dict[str, str]:
    """A CFS quota of ``cpus`` cores and a fair share in proportion."""
    return {
        "cpu.max": f"{cpus * CFS_PERIOD_US} {CFS_PERIOD_US}",
        "cpu.weight": str(min(10000, cpus * WEIGHT_PER_CPU)),
    }


def kill(directory: str) -> None:
    """SIGKILL every process in ``directory`` and below (kernels >= 5.14)."""
    fd = os.open(f"{directory}/cgroup.kill", os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, b"1")
    finally:
        os.close(fd)


def leaves(directory: str) -> list[str]:
    """The sandbox's leaves then the sandbox itself: the order to remove them in."""
    return [f"{directory}/{PROGRAM}", f"{directory}/{AGENT}", directory]


def oom_kills(directory: str) -> int:
    """OOM kills in ``directory`` and below (v2 counts them hierarchically)."""
    with contextlib.suppress(OSError, ValueError), open(f"{directory}/memory.events") as fh:
        for line in fh:
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    return 0
