"""More host-wide pools and shared objects, written as attacks (round 2).

The companion of ``test_kernel_containment.py``, with the same real service per
driver and the same health and leak checks after every test: the host's file
table (``fs.file-max``), per-uid pools (inotify instances), SysV shared memory
past the memory limit and across runs, locks on the shared image, abstract
Unix sockets between sandboxes, ``/proc/sys`` writes, huge mappings, and
signals to processes outside.

Sizes stay small: the file probe holds at most tens of thousands of files
(1-3 % of this host's file table) against a 32 MiB limit.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import Server
from tests.integration import test_containment as base
from tests.integration.test_containment import ERRNO, GVISOR, c, lines, python
from tests.integration.test_kernel_containment import HOLDING, side_by_side
from tvm.config.catalog import load_catalog
from tvm.config.settings import Settings
from tvm.pyrovm import hostlimits

pytestmark = [pytest.mark.namespace]

driver, server, healthy = base.driver, base.server, base.healthy
py, gcc = base.py, base.gcc

LIMIT_MB = 32


# -- the host's file table ---------------------------------------------------------
# A file object outlives its descriptor while a mapping holds it: open, mmap one
# page, close, again. RLIMIT_NOFILE never sees these; only the memory charge does.
FILES_PY = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
held, most = 0, int(sys.argv[1])
try:
    while held < most:
        fd = os.open("/usr/bin/python3", os.O_RDONLY)  # a new struct file each time
        if libc.mmap(None, 4096, 1, 2, fd, 0) in (None, ctypes.c_void_p(-1).value):
            print("mmap:", os.strerror(ctypes.get_errno()), flush=True)
            break
        os.close(fd)
        held += 1
        if held % 4096 == 0:
            print("held:", held, flush=True)
except OSError as exc:
    print("open:", exc.strerror, flush=True)
print("held:", held, flush=True)
"""

FILES_C = r"""
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
int main(int argc, char **argv) {
    long held = 0, most = atol(argv[1]);
    while (held < most) {
        int fd = open("/bin/sh", O_RDONLY);
        if (fd < 0) { printf("open: %s\n", strerror(errno)); break; }
        if (mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0) == MAP_FAILED) {
            printf("mmap: %s\n", strerror(errno)); break;
        }
        close(fd);
        if (++held % 4096 == 0) { printf("held: %ld\n", held); fflush(stdout); }
    }
    printf("held: %ld\n", held);
    return 0;
}
"""

# More than the memory limit can pay for at the cheapest charge per file.
ATTEMPT = (LIMIT_MB << 20) // hostlimits.FILE_BYTES * 2


def files_within(run: dict[str, object]) -> None:
    """Either the memory limit ended it, or what it held fits in that limit at
    the least a file object is charged: files cost the sandbox memory."""
    held = max(int(line.split()[1]) for line in str(run["stdout"]).splitlines()
               if line.startswith("held:"))  # fmt: skip
    # (gVisor's Sentry is slow at mmap: its time limit may come first.)
    assert run["status"] in ("memory_limit", "ok", "timeout"), run
    print(f"held {held} files, {run['status']}, {run['memory_kb']} KiB")
    assert held * hostlimits.FILE_BYTES <= LIMIT_MB << 20, run


def test_files_held_by_mappings_are_paid_in_memory(api: httpx.Client, py: None) -> None:
    result = python(api, FILES_PY, args=[str(ATTEMPT)], limits={"memory_mb": LIMIT_MB})
    files_within(result["run"])


def test_files_held_by_mappings_in_c(api: httpx.Client, gcc: str) -> None:
    result = c(api, gcc, FILES_C, args=[str(ATTEMPT)], limits={"memory_mb": LIMIT_MB})
    files_within(result["run"])


def test_the_file_table_outsizes_every_sandbox_at_once(
    server: Server, settings: Settings, driver: str
) -> None:
    """With as many sandboxes as the worker runs at once, each holding as many
    file objects as its largest memory limit pays for, the host's file table
    still has room: the service sized it at start (as systemd does on most
    hosts) or it was already large enough."""
    if driver == GVISOR:
        pytest.skip("a gVisor program's files are the Sentry's own, not the host's")
    largest = max(lang.run_limits.maximum.memory_mb for lang in load_catalog())
    in_use = int(Path("/proc/sys/fs/file-nr").read_text().split()[0])
    room = settings.max_concurrent_vms * hostlimits.files_per_sandbox(largest)
    assert int(Path("/proc/sys/fs/file-max").read_text()) >= in_use + room


# -- per-uid pools, from a second sandbox -----------------------------------------------
INOTIFY_HOG = (
    ERRNO
    + """
import ctypes, time
libc = ctypes.CDLL(None, use_errno=True)
held = []
for i in range(1024):  # fs.inotify.max_user_instances is per uid (128 by default)
    fd = libc.inotify_init1(0)
    if fd < 0:
        print("inotify:", errno.errorcode.get(ctypes.get_errno()), flush=True)
        break
    held.append(fd)
print("instances:", len(held), flush=True)
time.sleep(4)
"""
)
INOTIFY_OTHER = """
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(0)
print("inotify:", "ok" if fd >= 0 else errno.errorcode.get(ctypes.get_errno()))
"""


def test_inotify_instances_cannot_be_drained_from_another_sandbox(server: Server, py: None) -> None:
    hog, other = side_by_side(server, (INOTIFY_HOG, HOLDING), (INOTIFY_OTHER, {}))
    assert hog["run"]["status"] == "ok", hog["run"]
    assert int(lines(hog)["instances"]) < 1024, hog["run"]  # a cap was met
    assert lines(other)["inotify"] == "ok", other["run"]


# -- shared objects between sandboxes ----------------------------------------------------
LOCK_HOLDER = """
import fcntl, time
fh = open("/usr/bin/python3", "rb")
fcntl.flock(fh, fcntl.LOCK_EX)
print("locked: yes", flush=True)
try:
    fcntl.fcntl(fh, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    print("lease: ALLOWED")
except OSError as exc:
    print("lease:", exc.strerror)
time.sleep(4)
"""
LOCK_OTHER = """
import fcntl
fh = open("/usr/bin/python3", "rb")
try:
    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    print("flock: ok")
except OSError as exc:
    print("flock:", exc.strerror)
"""


def test_locks_on_the_shared_image_are_per_sandbox(server: Server, py: None) -> None:
    """A lock on an image file taken in one sandbox is not seen by another
    (no covert channel, no blocking another user's program)."""
    holder, other = side_by_side(server, (LOCK_HOLDER, HOLDING), (LOCK_OTHER, {}))
    assert lines(holder)["locked"] == "yes", holder["run"]
    assert lines(holder)["lease"] != "ALLOWED", holder["run"]  # not the file's owner
    assert lines(other)["flock"] == "ok", other["run"]


ABSTRACT_SERVER = """
import socket, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(b"\\0tvm-probe-abstract")
s.listen(1)
print("bound: yes", flush=True)
time.sleep(4)
"""
ABSTRACT_CLIENT = """
import socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(b"\\0tvm-probe-abstract")
    print("connect: REACHED")
except OSError as exc:
    print("connect:", exc.strerror)
"""


def test_abstract_unix_sockets_do_not_cross_sandboxes(server: Server, py: None) -> None:
    bound, client = side_by_side(server, (ABSTRACT_SERVER, HOLDING), (ABSTRACT_CLIENT, {}))
    assert lines(bound)["bound"] == "yes", bound["run"]
    assert lines(client)["connect"] == "Connection refused", client["run"]


SYSV_SHM = (
    ERRNO
    + """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
if sys.argv[1] == "look":  # a segment of an earlier run, by its key
    sid = libc.shmget(0x7000, 0, 0)
    print("left:", "yes" if sid >= 0 else errno.errorcode.get(ctypes.get_errno()))
if sys.argv[1] == "fill":
    touched = 0
    for key in range(8):  # 8 x 16 MiB segments, touched, under a 32 MiB limit
        sid = libc.shmget(0x7000 + key, 16 << 20, 0o1600)  # IPC_CREAT | 0600
        if sid < 0:
            print("shmget:", errno.errorcode.get(ctypes.get_errno()), flush=True)
            break
        addr = libc.shmat(sid, None, 0)
        ctypes.memset(addr, 1, 16 << 20)
        libc.shmdt(ctypes.c_void_p(addr))  # detached: only the segment holds it
        touched += 16
        print("touched MiB:", touched, flush=True)
"""
)


def test_sysv_shared_memory_is_charged_and_gone_after_the_run(api: httpx.Client, py: None) -> None:
    run = python(api, SYSV_SHM, args=["fill"], limits={"memory_mb": LIMIT_MB})["run"]
    touched = lines({"run": run}).get("touched MiB", "0")
    assert run["status"] == "memory_limit" or int(touched) <= LIMIT_MB, run
    # The segments lived in that sandbox's IPC namespace: the next run sees none.
    after = python(api, SYSV_SHM, args=["look"])["run"]
    assert lines({"run": after})["left"] == "ENOENT", after


# -- the host's settings and other processes -------------------------------------------------
HOST_SETTINGS = (
    ERRNO
    + """
import socket, ctypes, time
for path in ("/proc/sys/fs/file-max", "/proc/sys/kernel/hostname", "/proc/sys/vm/drop_caches",
             "/proc/sys/kernel/core_pattern", "/proc/sysrq-trigger"):
    try:
        with open(path, "w") as fh:
            fh.write("1\\n")
        print(f"{path}: WRITTEN")
    except OSError as exc:
        print(f"{path}:", name(exc))
try:
    socket.sethostname("owned")
    print("sethostname: ALLOWED")
except OSError as exc:
    print("sethostname:", name(exc))
libc = ctypes.CDLL(None, use_errno=True)
class Timespec(ctypes.Structure):
    _fields_ = [("s", ctypes.c_long), ("ns", ctypes.c_long)]
rc = libc.clock_settime(0, ctypes.byref(Timespec(int(time.time()) + 3600, 0)))
print("clock_settime:", "ALLOWED" if rc == 0 else errno.errorcode.get(ctypes.get_errno()))
# Every pid the host could have: only the sandbox's own answer.
visible = []
for pid in range(1, 1 << 15):
    try:
        os.kill(pid, 0)
        visible.append(pid)
    except ProcessLookupError:
        pass
    except PermissionError:
        visible.append(pid)
others = [p for p in visible if p not in (os.getpid(), os.getppid(), 1)]
print("signalable:", len(others))
# Its own pid namespace: what it can signal is what its own /proc lists (a
# thread is signalled by its id too: its process must be listed).
def process_of(pid):
    try:
        with open(f"/proc/{pid}/status") as fh:
            return int(fh.read().split("Tgid:")[1].split()[0])
    except OSError:
        return None
def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True
listed = {int(p) for p in os.listdir("/proc") if p.isdigit()}
outside = []
for pid in others:
    owner = process_of(pid)
    if owner is None and alive(pid) or owner is not None and owner not in listed and alive(owner):
        outside.append(pid)  # (not merely gone meanwhile)
print("outside:", len(outside))
"""
)


def test_host_settings_clock_and_other_processes_are_out_of_reach(
    api: httpx.Client, py: None
) -> None:
    before = Path("/proc/sys/fs/file-max").read_text()
    # It signals every pid the host could have (32,767 system calls, slow under
    # gVisor on a loaded host): room enough that it always reaches its report.
    result = python(api, HOST_SETTINGS, limits={"timeout_ms": 30000, "cpu_time_ms": 30000})
    assert result["run"]["status"] == "ok", result["run"]
    report = lines(result)
    assert Path("/proc/sys/fs/file-max").read_text() == before
    for path in ("/proc/sys/fs/file-max", "/proc/sys/kernel/hostname", "/proc/sys/vm/drop_caches",
                 "/proc/sys/kernel/core_pattern", "/proc/sysrq-trigger"):  # fmt: skip
        assert report[path] != "WRITTEN", report
    assert report["sethostname"] != "ALLOWED" and report["clock_settime"] != "ALLOWED", report
    assert report["signalable"] == "0", report  # its own pid namespace: nobody else
    assert report["outside"] == "0", report


HUGE_MMAP = """
import mmap
m = mmap.mmap(-1, 1 << 40, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_NORESERVE)
print("mapped TiB: 1", flush=True)
for off in range(0, 1 << 40, 1 << 20):  # touch a page per MiB until the limit ends it
    m[off] = 1
print("touched: ALL")
"""


def test_a_huge_mapping_is_paid_for_as_it_is_touched(api: httpx.Client, py: None) -> None:
    run = python(api, HUGE_MMAP, limits={"memory_mb": LIMIT_MB})["run"]
    assert "touched: ALL" not in run["stdout"], run
    assert run["status"] in ("memory_limit", "runtime_error", "signal"), run
