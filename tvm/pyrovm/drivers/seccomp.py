"""The seccomp filter every sandbox runs under, built with the system libseccomp.

A deny list on top of the capability drop: the syscalls a program has no
business making (tracing, mounting, kernel modules, BPF, keyrings, new
namespaces, ...) fail with EPERM; those that draw on a pool or a view the host
shares between sandboxes (AIO contexts) fail with ENOSYS; socket
families other than Unix and IP (netlink among them) with EAFNOSUPPORT.
Foreign-architecture syscalls are killed (libseccomp's default for a bad
arch). ``clone3`` fails with ENOSYS so libc falls back to ``clone``, whose
flags can be checked.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from functools import lru_cache

from tvm.errors import DriverUnavailable

DENIED = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "chroot",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "unshare",
    "setns",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "query_module",
    "get_kernel_syms",
    "swapon",
    "swapoff",
    "reboot",
    "acct",
    "quotactl",
    "quotactl_fd",
    "syslog",
    "iopl",
    "ioperm",
    "open_by_handle_at",
    "name_to_handle_at",
    "lookup_dcookie",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "fanotify_init",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "uselib",
    "sysfs",
    "ustat",
    "_sysctl",
    "vhangup",
    "nfsservctl",
    "mbind",
    "set_mempolicy",
    "migrate_pages",
    "move_pages",
    "memfd_secret",
)

# Refused with ENOSYS ("this kernel has none"), so that libraries fall back
# (libaio users take a thread pool), by the host kernel's filter only: each
# draws on a pool the whole host shares. Under gVisor they are the Sentry's
# own, per sandbox, and stay allowed.
# * io_setup: AIO contexts come from one host-wide pool (fs.aio-max-nr); one
#   sandbox could take all of them from every other.
# (inotify stays: each sandbox's image is an overlay of its own, agent/mounts.py,
# so a watch sees only its own sandbox's opens; fanotify is denied above.)
HOST_SHARED = ("io_setup",)

CLONE_NAMESPACE_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)

# Socket address families a program may create; every other one fails with
# EAFNOSUPPORT. The network namespace isolates only IP (and netlink/unix);
# AF_VSOCK in particular is not namespaced at all: on a host that is itself a
# VM (/dev/vsock), it would let a program talk to the hypervisor and to vsock
# services of the host, past the empty network namespace.
#
# AF_NETLINK is refused too: its socket queues are not charged to any memory
# cgroup, and a NETLINK_USERSOCK socket may unicast to another one, so a
# program could hold hundreds of MiB of kernel memory past its limit. glibc's
# getaddrinfo does without it (it then assumes IPv4 and IPv6 both configured).
ALLOWED_SOCKET_FAMILIES = (
    1,  # AF_UNIX
    2,  # AF_INET
    10,  # AF_INET6
)
# Families are below 64 (AF_MAX is 46 in Linux 6.1); the kernel refuses larger.
MAX_SOCKET_FAMILY = 64

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_MASKED_EQ = 7


def _act_errno(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


class _ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def _libseccomp() -> ctypes.CDLL:
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as exc:
        raise DriverUnavailable(
            f"libseccomp not found ({exc}); apt-get install libseccomp2"
        ) from exc
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_ArgCmp),
    ]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    return lib


@lru_cache(maxsize=1)
def build_filter() -> bytes:
    """The compiled BPF program, as bwrap's ``--seccomp FD`` expects it."""
    lib = _libseccomp()
    ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
    if not ctx:
        raise DriverUnavailable("seccomp_init failed")
    try:

        def rule(action: int, name: str, *cmps: _ArgCmp) -> None:
            nr = lib.seccomp_syscall_resolve_name(name.encode())
            if nr < 0:  # unknown on this architecture
                return
            array = (_ArgCmp * len(cmps))(*cmps) if cmps else None
            rc = lib.seccomp_rule_add_array(ctx, action, nr, len(cmps), array)
            if rc < 0:
                raise DriverUnavailable(f"seccomp rule for {name} failed: {os.strerror(-rc)}")

        for name in DENIED:
            rule(_act_errno(errno.EPERM), name)
        for name in HOST_SHARED:
            rule(_act_errno(errno.ENOSYS), name)
        for flag in CLONE_NAMESPACE_FLAGS:
            rule(_act_errno(errno.EPERM), "clone", _ArgCmp(0, SCMP_CMP_MASKED_EQ, flag, flag))
        rule(_act_errno(errno.ENOSYS), "clone3")
        # socket(family, ...): the kernel reads family as a 32-bit int, so compare
        # only the low 32 bits (high garbage bits must not slip past the filter).
        for family in range(MAX_SOCKET_FAMILY):
            if family not in ALLOWED_SOCKET_FAMILIES:
                cmp = _ArgCmp(0, SCMP_CMP_MASKED_EQ, 0xFFFFFFFF, family)
                rule(_act_errno(errno.EAFNOSUPPORT), "socket", cmp)
        read_fd, write_fd = os.pipe()
        try:
            rc = lib.seccomp_export_bpf(ctx, write_fd)
            os.close(write_fd)
            write_fd = -1
            if rc < 0:
                raise DriverUnavailable(f"seccomp_export_bpf failed: {os.strerror(-rc)}")
            chunks = []
            while chunk := os.read(read_fd, 65536):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(read_fd)
            if write_fd >= 0:
                os.close(write_fd)
    finally:
        lib.seccomp_release(ctx)


def oci_profile() -> dict[str, object]:
    """The same deny list as an OCI runtime-spec ``linux.seccomp`` section, for
    runtimes that build their own filter from it (gVisor's ``--oci-seccomp``)."""
    eperm = {"action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM}
    # Only the plain deny list: the Debian runsc applies a rule's action without
    # its argument conditions and answers EPERM whatever errnoRet says, so the
    # clone-flag rules and clone3's ENOSYS (which glibc needs to fall back to
    # clone) would deny every thread. New namespaces inside the Sentry are the
    # Sentry's own; unshare and setns are denied outright.
    rules: list[dict[str, object]] = [{"names": list(DENIED), **eperm}]
    return {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}
