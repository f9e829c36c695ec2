"""The sandbox's seccomp filter: it builds, and it denies what it says it denies.

No root needed: the filter is installed (under no_new_privs, as any process
may) in a throw-away child interpreter, which then tries the syscalls.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from tvm.errors import DriverUnavailable
from tvm.pyrovm.drivers import seccomp


@pytest.fixture(scope="module")
def bpf() -> bytes:
    try:
        return seccomp.build_filter()
    except DriverUnavailable as exc:
        pytest.skip(str(exc))


def test_filter_builds(bpf: bytes) -> None:
    assert bpf
    assert len(bpf) % 8 == 0  # an array of struct sock_filter
    assert len(bpf) // 8 < 4096  # BPF_MAXINSNS
    assert seccomp.build_filter() is bpf  # built once, cached


def test_deny_list_names_what_a_program_has_no_business_doing() -> None:
    must = {
        "ptrace", "process_vm_readv", "process_vm_writev", "mount", "umount2", "pivot_root",
        "chroot", "unshare", "setns", "bpf", "perf_event_open", "userfaultfd", "keyctl",
        "add_key", "request_key", "kexec_load", "kexec_file_load", "init_module",
        "finit_module", "delete_module", "reboot", "swapon", "io_uring_setup",
        "open_by_handle_at", "fsopen", "fsmount", "move_mount", "open_tree",
    }  # fmt: skip
    assert must <= set(seccomp.DENIED), must - set(seccomp.DENIED)
    assert len(set(seccomp.DENIED)) == len(seccomp.DENIED)


def test_socket_families() -> None:
    allowed = set(seccomp.ALLOWED_SOCKET_FAMILIES)
    assert {1, 2, 10} <= allowed  # unix, IPv4, IPv6 (inside the empty netns)
    assert 40 not in allowed  # AF_VSOCK is not network-namespaced
    assert 17 not in allowed  # AF_PACKET


# Installs the filter from stdin, then reports what each syscall returned.
CHILD = r"""
import ctypes, errno, json, os, socket, sys
prog = sys.stdin.buffer.read()
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
buf = ctypes.create_string_buffer(prog, len(prog))
fprog = SockFprog(len(prog) // 8, ctypes.addressof(buf))
assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
rc = libc.prctl(22, 2, ctypes.c_void_p(ctypes.addressof(fprog)), 0, 0)  # SECCOMP_MODE_FILTER
assert rc == 0, ctypes.get_errno()
out = {}
def sc(label, nr, *args):
    ctypes.set_errno(0)
    rc = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    out[label] = "ok" if rc >= 0 else errno.errorcode.get(ctypes.get_errno(), "?")
sc("getpid", 39)
sc("ptrace traceme", 101, 0, 0, 0, 0)
sc("mount", 165, 0, 0, 0, 0, 0)
sc("unshare user", 272, 0x10000000)
sc("setns", 308, -1, 0)
sc("keyctl", 250, 0, 0, 0, 0, 0)
sc("bpf", 321, 0, 0, 0)
sc("perf_event_open", 298, 0, 0, -1, -1, 0)
sc("userfaultfd", 323, 0)
sc("io_uring_setup", 425, 1, 0)
sc("init_module", 175, 0, 0, 0)
sc("clone newuser", 56, 0x10000000 | 17, 0, 0, 0, 0)
sc("clone newns", 56, 0x00020000 | 17, 0, 0, 0, 0)
sc("clone3", 435, 0, 0)
sc("socket vsock", 41, 40, 1, 0)
sc("socket vsock high bits", 41, 0x100000028, 1, 0)
sc("socket packet", 41, 17, 3, 0)
for label, family in (("socket inet", socket.AF_INET), ("socket unix", socket.AF_UNIX)):
    try:
        socket.socket(family, socket.SOCK_STREAM).close()
        out[label] = "ok"
    except OSError as exc:
        out[label] = errno.errorcode[exc.errno]
pid = os.fork()  # a plain fork (clone without namespace flags) still works
if pid == 0:
    os._exit(7)
out["fork"] = "ok" if os.waitpid(pid, 0)[1] >> 8 == 7 else "broken"
print(json.dumps(out))
"""


@pytest.mark.skipif(platform.machine() != "x86_64", reason="syscall numbers are x86_64's")
def test_filter_denies_in_a_real_process(bpf: bytes) -> None:
    proc = subprocess.run(
        [sys.executable, "-I", "-c", CHILD], input=bpf, capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr.decode()
    got = json.loads(proc.stdout)
    for label in (
        "ptrace traceme", "mount", "unshare user", "setns", "keyctl", "bpf", "perf_event_open",
        "userfaultfd", "io_uring_setup", "init_module", "clone newuser", "clone newns",
    ):  # fmt: skip
        assert got[label] == "EPERM", (label, got)
    assert got["clone3"] == "ENOSYS"  # so that libc falls back to clone, whose flags are checked
    assert got["socket vsock"] == "EAFNOSUPPORT"
    assert got["socket vsock high bits"] == "EAFNOSUPPORT"
    assert got["socket packet"] == "EAFNOSUPPORT"
    for label in ("getpid", "socket inet", "socket unix", "fork"):
        assert got[label] == "ok", (label, got)
