"""Containment of what a program can make the kernel hold, written as attacks.

The companion of ``test_containment.py`` (same real ``tvm start`` per driver,
same ``healthy`` and ``no_leaks`` checks after every test): kernel memory past
the memory limit (netlink queues, TCP/UDP buffers), CPU that escapes the
accounting (children reaped by the kernel, parallel children, more cores than
the quota), host-wide pools drained from one sandbox and seen from another
(AIO contexts, ptys), and what a sandbox can see of others and of the host
(inotify on the shared image, mountinfo, the kernel command line).

Every attack is in Python, and the ones that need native code also in C.
Sizes stay small: at most a few hundred MiB attempted against 32 MiB limits,
so the host never nears its own limits even when a defence is missing.
"""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, sandbox_cgroups
from tests.integration import test_containment as base
from tests.integration.test_containment import ERRNO, GVISOR, PY_VERSION, c, lines, python
from tvm.config.settings import Settings

pytestmark = [pytest.mark.namespace]

# The same fixtures as the main containment suite: one real service per driver,
# health and leak checks after every test.
driver, server, healthy = base.driver, base.server, base.healthy
py, gcc = base.py, base.gcc

LIMIT_MB = 32


# A TCP socket whose cgroup is at its limit may still queue one packet (the
# kernel force-charges it, to the same counter, rather than stall the
# connection): on loopback a packet carries at most 64 KiB. Sockets are capped
# by the sandbox's open_files.
PACKET_KIB = 64


def held_within(result: dict[str, Any], limit_mb: int) -> None:
    """The program either could not queue more than its limit (and the one
    packet each TCP socket it reports may force), or it was killed for
    memory: never ``ok`` with more held than it may use."""
    run = result["run"]
    if run["status"] == "memory_limit":
        return
    assert run["status"] == "ok", run
    report = lines(result)
    held = int(report["held MiB"])
    forced_mb = -(-int(report.get("tcp sockets", 0)) * PACKET_KIB // 1024)
    assert held <= limit_mb + forced_mb, run
    # What was held is what the result reports (socket buffers included).
    assert run["memory_kb"] >= (held << 10) * 3 // 4, run


# -- kernel memory past the memory limit --------------------------------------------
NETLINK_PY = (
    ERRNO
    + """
import socket, struct, termios, fcntl
held, socks = 0, []
try:
    dst = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 2)  # NETLINK_USERSOCK
    dst.bind((0, 0))
    print("netlink: ALLOWED", flush=True)
    for i in range(64):  # each sender queues into the one receiver, up to its rcvbuf
        r = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 2); r.bind((0, 0))
        r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 2); s.setblocking(False)
        socks += [r, s]
        try:
            while True:
                s.sendto(b"x" * 60000, (r.getsockname()[0], 0))
        except OSError:
            pass
        held += struct.unpack("i", fcntl.ioctl(r, termios.FIONREAD, b"0000"))[0]
except OSError as exc:
    print(f"netlink: {name(exc)}", flush=True)
print(f"held MiB: {held >> 20}")
"""
)

NETLINK_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/netlink.h>
int main(void) {
    static char buf[60000];
    long held = 0;
    int probe = socket(AF_NETLINK, SOCK_RAW, NETLINK_USERSOCK);
    if (probe < 0) { printf("netlink: %s\nheld MiB: 0\n", strerrorname_np(errno)); return 0; }
    printf("netlink: ALLOWED\n");
    for (int i = 0; i < 64; i++) {
        int r = socket(AF_NETLINK, SOCK_RAW, NETLINK_USERSOCK), big = 8 << 20;
        int s = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK, NETLINK_USERSOCK);
        struct sockaddr_nl a = {.nl_family = AF_NETLINK};
        socklen_t len = sizeof a;
        if (r < 0 || s < 0) break;
        setsockopt(r, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
        bind(r, (struct sockaddr *)&a, sizeof a);
        getsockname(r, (struct sockaddr *)&a, &len);
        while (sendto(s, buf, sizeof buf, 0, (struct sockaddr *)&a, sizeof a) > 0) {}
        int queued = 0;
        ioctl(r, FIONREAD, &queued);
        held += queued;
    }
    printf("held MiB: %ld\n", held >> 20);
    return 0;
}
"""


def test_netlink_queues_cannot_hold_memory_past_the_limit(
    api: httpx.Client, py: None, driver: str
) -> None:
    result = python(api, NETLINK_PY, limits={"memory_mb": LIMIT_MB})
    report = lines(result)
    if driver == GVISOR:  # the Sentry's netlink has no NETLINK_USERSOCK
        assert report["netlink"] == "EPROTONOSUPPORT", result["run"]
    else:  # its queues are charged to no cgroup: refused outright
        assert report["netlink"] == "EAFNOSUPPORT", result["run"]
    held_within(result, LIMIT_MB)


def test_netlink_in_c(api: httpx.Client, gcc: str, driver: str) -> None:
    result = c(api, gcc, NETLINK_C, limits={"memory_mb": LIMIT_MB})
    assert lines(result)["netlink"] in ("EAFNOSUPPORT", "EPROTONOSUPPORT"), result["run"]
    held_within(result, LIMIT_MB)


SOCKETS_PY = """
import socket, fcntl, struct, termios
def queued(s, request):
    return struct.unpack("i", fcntl.ioctl(s, request, b"0000"))[0]
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(512)
pairs, held, stuck = [], 0, 0
while held < (256 << 20) and stuck < 20 and len(pairs) < 200:
    c = socket.socket(); c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    c.connect(srv.getsockname()); a, _ = srv.accept()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    c.setblocking(False)
    sent = 0
    try:
        while True:
            sent += c.send(b"x" * 65536)
    except OSError:
        pass
    pairs.append((c, a))
    held += sent
    stuck = stuck + 1 if sent < 65536 else 0
udp = []
for i in range(64):  # datagrams queued on sockets nobody reads
    r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); r.bind(("127.0.0.1", 0))
    r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setblocking(False)
    for k in range(100):
        try:
            s.sendto(b"y" * 60000, r.getsockname())
        except OSError:
            break
    udp.append((r, s))
total = sum(queued(c, termios.TIOCOUTQ) + queued(a, termios.FIONREAD) for c, a in pairs)
total += sum(queued(r, termios.FIONREAD) for r, s in udp)
print(f"tcp sockets: {2 * len(pairs)}")
print(f"held MiB: {total >> 20}")
"""

SOCKETS_C = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/sockios.h>
int main(void) {
    static char buf[65536];
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int srv = socket(AF_INET, SOCK_STREAM, 0), big = 4 << 20;
    bind(srv, (struct sockaddr *)&a, sizeof a);
    listen(srv, 512);
    getsockname(srv, (struct sockaddr *)&a, &len);
    long held = 0;
    int sockets = 0;
    for (int i = 0, stuck = 0; i < 200 && stuck < 20 && held < (256L << 20); i++) {
        int c = socket(AF_INET, SOCK_STREAM, 0);
        setsockopt(c, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
        if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof a) < 0) break;
        int s = accept(srv, 0, 0);
        setsockopt(s, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
        fcntl(c, F_SETFL, O_NONBLOCK);
        long sent = 0, n;
        while ((n = send(c, buf, sizeof buf, 0)) > 0) sent += n;
        int out = 0, in = 0;
        ioctl(c, SIOCOUTQ, &out);
        ioctl(s, SIOCINQ, &in);
        held += out + in;
        stuck = sent < (long)sizeof buf ? stuck + 1 : 0;
        sockets += 2;
    }
    printf("tcp sockets: %d\nheld MiB: %ld\n", sockets, held >> 20);
    return 0;
}
"""


def test_tcp_and_udp_buffers_count_against_the_limit(api: httpx.Client, py: None) -> None:
    result = python(api, SOCKETS_PY, limits={"memory_mb": LIMIT_MB})
    held_within(result, LIMIT_MB)


def test_tcp_buffers_in_c(api: httpx.Client, gcc: str) -> None:
    result = c(api, gcc, SOCKETS_C, limits={"memory_mb": LIMIT_MB})
    held_within(result, LIMIT_MB)


# -- CPU ------------------------------------------------------------------------
REAPED_PY = """
import os, signal, sys, time
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps them: no rusage
each, count = float(sys.argv[1]), int(sys.argv[2])
for i in range(count):
    if os.fork() == 0:
        start = time.process_time()
        while time.process_time() - start < each:
            pass
        os._exit(0)
    time.sleep(each * 1.2)
try:
    os.wait()  # with SIGCHLD ignored: blocks until all have exited, then ECHILD
except ChildProcessError:
    pass
print("done")
"""

REAPED_C = r"""
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
static double cpu(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}
int main(int argc, char **argv) {
    double each = atof(argv[1]);
    int count = atoi(argv[2]);
    signal(SIGCHLD, SIG_IGN);
    for (int i = 0; i < count; i++) {
        if (fork() == 0) { double s = cpu(); while (cpu() - s < each) {} _exit(0); }
        usleep((useconds_t)(each * 1.2e6));
    }
    while (wait(NULL) > 0) {}  /* SIGCHLD ignored: returns ECHILD once all are gone */
    puts("done");
    return 0;
}
"""


def counted(cpu_ms: int, burned_ms: int, driver: str) -> bool:
    """Whether ``cpu_ms`` holds CPU that the children measured as ``burned_ms``.
    Under gVisor cpu_ms is the host's count for the Sentry, whose own clock
    (what the children measured) runs ahead of it: half is the floor there."""
    return cpu_ms >= burned_ms * (0.5 if driver == GVISOR else 0.9)


def test_reaped_children_are_counted_and_stopped(api: httpx.Client, py: None, driver: str) -> None:
    # 40 children of 50 ms: 2 s of CPU, none of it ever in anyone's rusage.
    args = ["0.05", "40"]
    limits = {"cpu_time_ms": 500, "timeout_ms": 20000}
    result = python(api, REAPED_PY, args=args, limits=limits)
    run = result["run"]
    assert run["status"] == "timeout", run
    assert run["cpu_ms"] >= 500, run
    assert "done" not in run["stdout"], run
    # Under a limit it does not reach, every child's CPU is in cpu_ms.
    result = python(api, REAPED_PY, args=["0.05", "8"],
                    limits={"cpu_time_ms": 5000, "timeout_ms": 20000})  # fmt: skip
    run = result["run"]
    assert run["status"] == "ok" and run["stdout"] == "done\n", run
    assert counted(run["cpu_ms"], 8 * 50, driver), run


def test_reaped_children_in_c(api: httpx.Client, gcc: str, driver: str) -> None:
    limits = {"cpu_time_ms": 500, "timeout_ms": 20000}
    result = c(api, gcc, REAPED_C, args=["0.05", "40"], limits=limits)
    assert result["run"]["status"] == "timeout", result["run"]
    assert result["run"]["cpu_ms"] >= 500, result["run"]
    result = c(api, gcc, REAPED_C, args=["0.05", "8"],
               limits={"cpu_time_ms": 5000, "timeout_ms": 20000})  # fmt: skip
    assert result["run"]["status"] == "ok", result["run"]
    assert counted(result["run"]["cpu_ms"], 8 * 50, driver), result["run"]


PARALLEL_PY = """
import os, sys, time
pids = []
for i in range(int(sys.argv[1])):
    pid = os.fork()
    if pid == 0:
        start = time.process_time()
        while time.process_time() - start < float(sys.argv[2]):
            pass
        os._exit(0)
    pids.append(pid)
for pid in pids:
    os.waitpid(pid, 0)
print("done")
"""


def test_waited_parallel_children_are_stopped_while_they_run(
    api: httpx.Client, py: None, driver: str
) -> None:
    # 4 children of 2 s each: 8 s of CPU, counted by rusage only once waited for.
    limits = {"cpu_time_ms": 500, "timeout_ms": 20000}
    run = python(api, PARALLEL_PY, args=["4", "2"], limits=limits)["run"]
    assert run["status"] == "timeout", run
    assert "done" not in run["stdout"], run
    assert counted(run["cpu_ms"], 500, driver) and run["cpu_ms"] < 8000, run


BUSY_PY = """
import os, sys, time
# Busy processes for a fixed stretch of wall time: as many cores as it can get.
deadline = time.monotonic() + float(sys.argv[2])
for i in range(int(sys.argv[1])):
    if os.fork() == 0:
        while time.monotonic() < deadline:
            pass
        os._exit(0)
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
print("done")
"""


def test_one_sandbox_gets_no_more_than_its_cores(api: httpx.Client, py: None) -> None:
    limits = {"cpu_time_ms": 10000, "timeout_ms": 10000, "cpus": 1}
    run = python(api, BUSY_PY, args=["4", "1.5"], limits=limits)["run"]
    assert run["status"] == "ok", run
    # The quota is one core: CPU time cannot outgrow wall time (plus a period).
    assert run["cpu_ms"] <= run["wall_ms"] + 150, run


def test_more_cores_than_the_catalog_allows_is_refused(api: httpx.Client, py: None) -> None:
    response = api.post(
        "/api/v1/execute",
        json={"language": "python", "version": PY_VERSION, "code": "", "limits": {"cpus": 64}},
    )
    assert response.status_code in (400, 422), response.text
    assert "limits.cpus" in response.text and "between 1 and" in response.text


# -- host-wide pools, drained from one sandbox and seen from another ------------------
# The first sandbox of a pair holds what it took for 4 s.
HOLDING: dict[str, Any] = {"limits": {"timeout_ms": 10000}}


def side_by_side(
    server: Server, first: tuple[str, dict[str, Any]], second: tuple[str, dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run ``first``, and ``second`` while the first still holds what it took."""

    def run(code: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        with server.client() as api:
            return python(api, code, **kwargs)

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        hog = pool.submit(run, *first)
        time.sleep(1.0)  # the hog holds for 4 s after taking everything
        other = pool.submit(run, *second)
        return hog.result(), other.result()


AIO_HOG = (
    ERRNO
    + """
import ctypes, time
libc = ctypes.CDLL(None, use_errno=True)
contexts = []
for i in range(4096):  # 4096 x 65536 events would take fs.aio-max-nr many times over
    ctx = ctypes.c_ulong(0)
    if libc.syscall(206, 65536, ctypes.byref(ctx)) != 0:  # io_setup
        print("io_setup:", errno.errorcode.get(ctypes.get_errno()), flush=True)
        break
    contexts.append(ctx)
print("contexts:", len(contexts), flush=True)
time.sleep(4)
"""
)
AIO_OTHER = """
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
ctx = ctypes.c_ulong(0)
rc = libc.syscall(206, 8, ctypes.byref(ctx))
print("io_setup:", "ok" if rc == 0 else errno.errorcode.get(ctypes.get_errno()))
"""

AIO_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/aio_abi.h>
int main(void) {
    int n = 0;
    for (; n < 4096; n++) {
        aio_context_t ctx = 0;
        if (syscall(SYS_io_setup, 65536, &ctx) != 0) {
            printf("io_setup: %s\n", strerrorname_np(errno));
            break;
        }
    }
    printf("contexts: %d\n", n);
    return 0;
}
"""


def test_aio_contexts_cannot_be_drained_from_another_sandbox(
    server: Server, py: None, driver: str
) -> None:
    hog, other = side_by_side(server, (AIO_HOG, HOLDING), (AIO_OTHER, {}))
    report = lines(hog)
    assert hog["run"]["status"] == "ok", hog["run"]
    if driver == GVISOR:  # the Sentry's own AIO, per sandbox
        assert lines(other)["io_setup"] == "ok", other["run"]
    else:  # the host's one pool: refused to every sandbox, as if absent
        assert report["io_setup"] == "ENOSYS", hog["run"]
        assert report["contexts"] == "0", hog["run"]
        assert lines(other)["io_setup"] == "ENOSYS", other["run"]


def test_aio_in_c(api: httpx.Client, gcc: str, driver: str) -> None:
    result = c(api, gcc, AIO_C)
    report = lines(result)
    if driver != GVISOR:
        assert report["io_setup"] == "ENOSYS" and report["contexts"] == "0", result["run"]


PTY_HOG = (
    ERRNO
    + """
import time
fds = []
try:
    while len(fds) < 5000:
        fds.append(os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY))
except OSError as exc:
    print("ptmx:", name(exc), flush=True)
print("ptys:", len(fds), flush=True)
time.sleep(4)
"""
)
PTY_OTHER = (
    ERRNO
    + """
import pty
master, slave = pty.openpty()
os.write(master, b"hi\\n")
print("pty:", os.read(slave, 10).decode().strip())
"""
)


def test_ptys_cannot_be_drained_from_another_sandbox(server: Server, py: None, driver: str) -> None:
    limits = {**HOLDING["limits"], "open_files": 1024}
    hog, other = side_by_side(server, (PTY_HOG, {"limits": limits}), (PTY_OTHER, {}))
    report = lines(hog)
    assert hog["run"]["status"] == "ok", hog["run"]
    if driver != GVISOR:  # the Sentry's devpts is its own; ours is capped
        from tvm.pyrovm.agent.mounts import PTY_MAX

        assert report["ptmx"] == "ENOSPC" and int(report["ptys"]) == PTY_MAX, hog["run"]
    assert lines(other)["pty"] == "hi", other["run"]


# -- what a sandbox sees of others and of the host -----------------------------------
INOTIFY_WATCHER = """
import ctypes, errno, os, select, struct, time
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(os.O_NONBLOCK)
if fd < 0:
    print("inotify:", errno.errorcode.get(ctypes.get_errno()))
    raise SystemExit
print("inotify: ALLOWED")
libc.inotify_add_watch(fd, b"/usr/lib/python3.11/json", 0x20 | 0x1)  # IN_OPEN | IN_ACCESS
open("/usr/lib/python3.11/json/scanner.py").read()  # its own open: seen
seen, end = set(), time.monotonic() + 4
while time.monotonic() < end:
    if select.select([fd], [], [], 0.2)[0]:
        data, off = os.read(fd, 65536), 0
        while off < len(data):
            wd, mask, cookie, size = struct.unpack_from("iIII", data, off)
            seen.add(data[off + 16 : off + 16 + size].rstrip(b"\\0").decode())
            off += 16 + size
print("seen:", ",".join(sorted(seen)))
"""
INOTIFY_OTHER = """
import time
end = time.monotonic() + 2
while time.monotonic() < end:
    open("/usr/lib/python3.11/json/decoder.py").read()
    time.sleep(0.01)
print("opened")
"""


def test_inotify_sees_only_its_own_sandbox(server: Server, py: None) -> None:
    watcher, other = side_by_side(server, (INOTIFY_WATCHER, HOLDING), (INOTIFY_OTHER, {}))
    report = lines(watcher)
    assert watcher["run"]["status"] == "ok", watcher["run"]
    assert report["inotify"] == "ALLOWED", watcher["run"]
    assert lines(other) == {} and other["run"]["stdout"] == "opened\n", other["run"]
    # The watch works (its own open), and the other sandbox's opens never reach it.
    assert report["seen"].split(",") == ["scanner.py"], watcher["run"]


HOST_VIEW = """
print("".join(open("/proc/self/mountinfo").readlines()))
print("cmdline:", repr(open("/proc/cmdline").read()))
"""


def test_no_host_paths_or_kernel_command_line_inside(
    api: httpx.Client, py: None, settings: Settings
) -> None:
    result = python(api, HOST_VIEW)
    out = result["run"]["stdout"]
    assert result["run"]["status"] == "ok", result["run"]
    assert " / / " in out, out  # it did read its mount table
    for host_path in {str(settings.home), "/var/lib/tvm", "images/", "/agent/"}:
        assert host_path not in out, (host_path, out)
    host_cmdline = Path("/proc/cmdline").read_text().strip()
    assert host_cmdline and host_cmdline not in out, out


# -- teardown under cancellation ---------------------------------------------------
STORM = """
import os, time
for i in range(6):  # processes the teardown must kill, whenever it comes
    if os.fork() == 0:
        time.sleep(30)
        os._exit(0)
time.sleep(0.4)
print("finished")
"""


def test_a_cancellation_storm_leaves_nothing(server: Server, py: None) -> None:
    """Clients that give up at every moment of a request (while its sandbox
    starts, runs, or is torn down): every sandbox is still destroyed whole,
    and the service keeps answering (then ``healthy`` and ``no_leaks``)."""

    def one(i: int) -> str:
        body = {"language": "python", "version": PY_VERSION, "code": STORM}
        try:
            with httpx.Client(base_url=server.url, timeout=0.05 + (i % 12) * 0.05) as client:
                return client.post("/api/v1/execute", json=body).json()["run"]["stdout"]
        except httpx.HTTPError:
            return "gave up"

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(one, range(48)))
    assert "gave up" in outcomes, outcomes  # the storm did cancel requests
    # Teardown is off the request path: let it finish before the leak check.
    deadline = time.monotonic() + 60
    while sandbox_cgroups() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not sandbox_cgroups()
