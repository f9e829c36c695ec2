"""The file system a namespace sandbox sees, built by its pid 1 (see zygote.py).

The zygote's root is the image, bind-mounted read-only by bubblewrap: in
``/proc/self/mountinfo`` such a bind names its source on the host (the image
store's path, the image's digest, the agent's cache). So each sandbox makes a
root of its own instead, and pivots into it:

* ``/``: a read-only overlay whose only layers are the zygote's ``/`` and an
  empty directory. Its mount line names those two paths as the sandbox sees
  them, nothing of the host; and its inodes are this sandbox's own, so an
  inotify watch on an image file sees only this sandbox's opens, never those
  of another sandbox of the same image;
* ``/.tvm/tvm_agent``: the agent, the same way;
* ``/dev``: the zygote's (bubblewrap's six device nodes), with a new devpts
  of at most ``PTY_MAX`` terminals (``kernel.pty.max`` is one pool for the
  whole host) and a size-capped ``/dev/shm``;
* ``/work``, ``/tmp``: size- and inode-capped tmpfs;
* ``/proc``: its own, with bubblewrap's read-only covers, and the host's
  kernel command line covered by an empty file.

Stdlib only; runs inside the image.
"""

from __future__ import annotations

import ctypes
import os

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 0x2
SYS_PIVOT_ROOT = 155  # x86_64

# Parts of procfs that are not safe to leave writable (as bubblewrap does).
PROC_COVERS = ("sys", "sysrq-trigger", "irq", "bus")
# Files of /proc that describe the host, not the sandbox.
PROC_HIDDEN = ("cmdline",)
PTY_MAX = 16
DEVPTS_OPTIONS = f"newinstance,ptmxmode=0666,mode=620,max={PTY_MAX}"
# A tmpfs's inodes are capped as its pages are: one per 4 KiB of its size.
TMPFS_BYTES_PER_INODE = 4096
# Scratch space for the new root's mount points, on the image's own /tmp; it
# is out of sight once the sandbox has pivoted.
STAGE = "/tmp"
NEW_ROOT = f"{STAGE}/root"
EMPTY = f"{STAGE}/empty"
AGENT = "/.tvm/tvm_agent"

_libc = ctypes.CDLL(None, use_errno=True)


def check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source: str, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    check(
        _libc.mount(
            source.encode(),
            target.encode(),
            fstype.encode() if fstype else None,
            flags,
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def tmpfs(target: str, size: int, mode: str = "1777") -> None:
    inodes = max(1024, size // TMPFS_BYTES_PER_INODE)
    options = f"mode={mode},size={size},nr_inodes={inodes}"
    mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, options)


def _overlay(lower: str, target: str) -> None:
    """``lower`` again at ``target``, read-only, as a file system of its own."""
    flags = MS_RDONLY | MS_NOSUID | MS_NODEV
    mount("overlay", target, "overlay", flags, f"lowerdir={lower}:{EMPTY}")


def build_root(workdir_bytes: int, tmp_bytes: int, shm_bytes: int, home_bytes: int = 0) -> None:
    """Make this mount namespace's new root and move into it (see the module
    docstring). Call it in a new mount namespace, before anything else runs.
    ``home_bytes``: a writable /home of that size (a live sandbox's)."""
    mount("none", "/", None, MS_REC | MS_PRIVATE)
    tmpfs(STAGE, 1 << 20, mode="0700")
    os.mkdir(NEW_ROOT)
    os.mkdir(EMPTY)
    _overlay("/", NEW_ROOT)
    new = NEW_ROOT
    tmpfs(f"{new}/.tvm", 1 << 16, mode="0755")
    os.mkdir(f"{new}{AGENT}")
    _overlay(AGENT, f"{new}{AGENT}")
    mount(
        f"{new}/.tvm", f"{new}/.tvm", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV
    )
    mount("/dev", f"{new}/dev", None, MS_BIND | MS_REC)
    tmpfs(f"{new}/work", workdir_bytes)
    tmpfs(f"{new}/tmp", tmp_bytes)
    tmpfs(f"{new}/dev/shm", shm_bytes)
    if home_bytes:
        tmpfs(f"{new}/home", home_bytes)
    mount("devpts", f"{new}/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, DEVPTS_OPTIONS)
    mount("proc", f"{new}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for name in PROC_COVERS:
        path = f"{new}/proc/{name}"
        if os.path.exists(path):
            mount(path, path, None, MS_BIND | MS_REC)
            mount(path, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    for name in PROC_HIDDEN:
        mount(f"{new}/dev/null", f"{new}/proc/{name}", None, MS_BIND)
    os.chdir(new)
    check(_libc.syscall(SYS_PIVOT_ROOT, b".", b"."), "pivot_root")
    check(_libc.umount2(b".", MNT_DETACH), "umount the old root")
    os.chdir("/")
