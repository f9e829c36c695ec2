"""The host's file table, sized so that sandboxes together cannot drain it.

Every open file is a ``struct file`` in one host-wide table capped by
``fs.file-max``; a program reaching it (ENFILE) would make every other
sandbox's ``open`` and the service's own ``accept`` fail. RLIMIT_NOFILE alone
does not bound a sandbox's share: a file stays allocated after its descriptor
is closed for as long as a mapping of it exists (open, mmap, close, again),
and a program has many processes.

What bounds it is memory: a file object (with its dentry and inode, where it
has its own) is charged to the sandbox's memory cgroup, on v1 too (measured
here on 6.18: 216 B for an ``open("/dev/null")``, ~420 B for an eventfd or an
epoll, ~620 B for an open + mmap + close of an image file, ~2.5 KiB for a pipe
or a socket). So a sandbox holds at most ``memory limit / FILE_BYTES`` files,
and ``max_concurrent_vms`` sandboxes at the catalog's largest memory limit at
most :func:`files_needed` together. At start the worker makes ``fs.file-max``
at least that (systemd sets it to the largest value there is on most hosts);
where it cannot, it says so in the log.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

log = logging.getLogger("tvm.pyrovm.hostlimits")

# The least memory one file object is charged, rounded down from the 216 B measured.
FILE_BYTES = 200
# What the host itself keeps for its own files, on top of the sandboxes' share.
HOST_FILES = 1 << 20
PROC_FILE_MAX = Path("/proc/sys/fs/file-max")
PROC_FILE_NR = Path("/proc/sys/fs/file-nr")


def files_per_sandbox(memory_mb: int) -> int:
    """The most file objects a sandbox with this memory limit can pay for."""
    return (memory_mb << 20) // FILE_BYTES


def files_needed(concurrent: int, memory_mb: int, in_use: int) -> int:
    """The file table that ``concurrent`` sandboxes, each filling a memory
    limit of ``memory_mb`` with file objects, cannot drain."""
    return in_use + HOST_FILES + concurrent * files_per_sandbox(memory_mb)


def size_file_table(concurrent: int, memory_mb: int, file_max: Path = PROC_FILE_MAX,
                    file_nr: Path = PROC_FILE_NR) -> int | None:  # fmt: skip
    """Raise ``fs.file-max`` to :func:`files_needed` if it is lower; never
    lowers it. Returns the table's size afterwards (None: unreadable)."""
    try:
        current = int(file_max.read_text())
        in_use = int(file_nr.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    need = files_needed(concurrent, memory_mb, in_use)
    if current >= need:
        return current
    try:
        file_max.write_text(f"{need}\n")
    except OSError as exc:
        log.warning(
            "fs.file-max is %d, under the %d that %d sandboxes of %d MiB could hold in file "
            "objects, and cannot be raised (%s): raise it, or lower max_concurrent_vms",
            current, need, concurrent, memory_mb, exc,
        )  # fmt: skip
        return current
    log.info("fs.file-max raised from %d to %d for %d sandboxes of up to %d MiB",
             current, need, concurrent, memory_mb)  # fmt: skip
    with contextlib.suppress(OSError, ValueError):
        return int(file_max.read_text())
    return need
