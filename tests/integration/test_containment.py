"""Containment, written as attacks.

Every test sends a hostile program through the real HTTP API of a real
``tvm start`` server (the ``api`` fixture) into a real bubblewrap sandbox, and
asserts three things:

* the attack is contained, with a specific observable (an errno name, a status,
  a file that is not there, ...) printed by the program itself;
* the service stays healthy: ``GET /health`` answers 200 and a normal hello
  world still works right after (the ``healthy`` fixture, on every test);
* nothing is left on the host: no sandbox-uid process, cgroup, mount or temp
  dir (the ``no_leaks`` fixture, on every test).

Network probes only ever target loopback or non-routable addresses
(10.255.255.1, 192.0.2.1 of TEST-NET-1) from inside the sandbox's own, empty
network namespace, where there is no route at all.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import platform
import struct
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, free_port, require_languages, sandbox_processes
from tvm.config.settings import Settings

pytestmark = [pytest.mark.namespace]

# The Python every attack is written in; 3.11 lives in the bookworm-base image
# that also carries bash.
PY = "python@3.11"
PY_VERSION = "3.11"
X86_64 = platform.machine() == "x86_64"


# -- helpers -------------------------------------------------------------------
def execute(
    api: httpx.Client,
    language: str,
    code: str,
    *,
    version: str | None = None,
    stdin: str = "",
    args: list[str] | None = None,
    limits: dict[str, int] | None = None,
) -> dict[str, Any]:
    """POST /api/v1/execute; the run stage must come back as a result (HTTP 200)."""
    body: dict[str, Any] = {"language": language, "code": code, "stdin": stdin}
    if version:
        body["version"] = version
    if args:
        body["args"] = args
    if limits:
        body["limits"] = limits
    response = api.post("/api/v1/execute", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["run"] is not None or result.get("compile"), result
    return result


def python(api: httpx.Client, code: str, **kwargs: Any) -> dict[str, Any]:
    return execute(api, "python", code, version=PY_VERSION, **kwargs)


def bash(api: httpx.Client, code: str, **kwargs: Any) -> dict[str, Any]:
    return execute(api, "bash", code, **kwargs)


def c(api: httpx.Client, version: str, code: str, **kwargs: Any) -> dict[str, Any]:
    result = execute(api, "c", code, version=version, **kwargs)
    assert result["compile"]["status"] == "ok", result["compile"]
    return result


def lines(result: dict[str, Any]) -> dict[str, str]:
    """The program's ``key: value`` report lines."""
    found = {}
    for line in result["run"]["stdout"].splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            found[key.strip()] = value.strip()
    return found


def assert_healthy(api: httpx.Client) -> None:
    assert api.get("/health").status_code == 200
    hello = python(api, "print('hello, world')")
    assert hello["status"] == "ok", hello
    assert hello["run"]["stdout"] == "hello, world\n"


@pytest.fixture
def py(settings: Settings) -> None:
    require_languages(settings, PY)


@pytest.fixture
def sh(settings: Settings) -> None:
    require_languages(settings, PY, "bash")


@pytest.fixture
def gcc(settings: Settings) -> str:
    """The newest C whose image is built (the attacks do not depend on its version)."""
    from tvm.config.catalog import load_catalog
    from tvm.pyrovm.images import ImageStore

    images = ImageStore(settings)
    built = [lang for lang in load_catalog() if lang.name == "c" and images.is_built(lang.image)]
    if not built:
        require_languages(settings, "c")  # skips, naming the missing image
    version = max(built, key=lambda lang: [int(x) for x in lang.version.split(".")]).version
    require_languages(settings, PY, f"c@{version}")
    return version


# -- one real service per isolation driver ----------------------------------------
# The attacks run against every driver that can run here (``auto`` picks the
# strongest, so a held-back probe may meet any of them).
DRIVERS = ["namespace", "gvisor"]

# Where gVisor's own kernel answers differently but the attack is just as contained
# (each checked by hand against runsc 2022-12; docs/isolation.md):
# * no route: EHOSTUNREACH where Linux says ENETUNREACH;
# * a read-only mount: EACCES where Linux says EROFS;
# * /proc/self/status has no CapAmb line;
# * /proc/1/fd can be listed and the agent's fds 0/1 (/dev/null) reopened, fd 2
#   gives ENXIO; the channel fds are refused, as on Linux;
# * seccomp argument filters are not applied by runsc, so clone(CLONE_NEWUSER)
#   makes a user namespace of the Sentry's own (unshare/setns are still denied);
# * /dev/fuse and /dev/net exist (mounting needs CAP_SYS_ADMIN; no network);
# * RLIMIT_NPROC lets the last fork in (the limit counts from the parent);
# * /proc/self/status has no NoNewPrivs/Seccomp lines (both set, see the unit
#   tests of the OCI config and test_denied_syscalls); /sys is the Sentry's own;
# * the agent's /proc/1/environ is readable: it holds only the fixed public
#   environment every program gets (PATH, HOME, LANG...), nothing of the host.
GVISOR = "gvisor"


@pytest.fixture(scope="module", params=DRIVERS)
def driver(request: pytest.FixtureRequest, settings: Settings) -> str:
    from tvm.pyrovm.drivers import driver_class

    name = str(request.param)
    try:
        availability = driver_class(name).probe(settings)
    except Exception as exc:
        pytest.skip(f"driver {name}: {exc}")
    if not availability.usable:
        pytest.skip(f"driver {name}: {availability.reason}")
    require_languages(settings, PY)
    return name


def server_env(driver: str, **extra: str) -> dict[str, str]:
    # Its own worker port: another `tvm start` on this host must not serve our requests.
    return {"TVM_DRIVER": driver, "TVM_WORKER_PORT": str(free_port()), **extra}


@pytest.fixture(scope="module")
def server(driver: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Overrides the session server: one ``tvm start`` per driver."""
    srv = Server(tmp_path_factory.mktemp(f"containment-{driver}"), env=server_env(driver))
    try:
        with srv.client() as client:
            health = client.get("/health").json()
        # The gateway reports its workers (here the embedded one) and their driver.
        assert [worker["driver"] for worker in health["workers"]] == [driver], health
        yield srv
    finally:
        srv.stop()
        print(f"--- {driver} server log ({srv.log}) ---\n{srv.log.read_text()[-3000:]}")


@pytest.fixture(autouse=True)
def healthy(settings: Settings, api: httpx.Client, no_leaks: None) -> Iterator[None]:
    """After every attack: /health is 200 and hello world still runs (then
    ``no_leaks``, torn down after this, checks the host)."""
    require_languages(settings, PY)
    yield
    assert_healthy(api)


# A Python prelude: report an OSError as its errno name.
ERRNO = """
import errno, os, sys
def name(exc):
    return errno.errorcode.get(exc.errno, str(exc.errno))
def attempt(label, fn):
    try:
        fn()
        print(f"{label}: ALLOWED", flush=True)
    except OSError as exc:
        print(f"{label}: {name(exc)}", flush=True)
"""

# x86_64 numbers for syscalls Python has no wrapper for.
SYSCALLS = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def syscall(label, nr, *args):
    ctypes.set_errno(0)
    rc = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    err = ctypes.get_errno()
    print(f"{label}: {'ALLOWED' if rc >= 0 else errno.errorcode.get(err, err)}", flush=True)
"""


# -- resource exhaustion --------------------------------------------------------
def test_fork_bomb_bash(api: httpx.Client, sh: None) -> None:
    # The classic bomb, kept alive by a parent that waits past the timeout.
    code = "bomb() { bomb | bomb & }; bomb; sleep 30\n"
    result = bash(api, code, limits={"timeout_ms": 3000, "processes": 32})
    run = result["run"]
    assert run["status"] == "timeout", run
    assert "fork: retry: Resource temporarily unavailable" in run["stderr"], run["stderr"][-500:]
    assert run["wall_ms"] < 6000


def test_fork_bomb_python_hits_process_limit(api: httpx.Client, py: None, driver: str) -> None:
    code = (
        ERRNO
        + """
import time
children = 0
while True:
    try:
        pid = os.fork()
    except OSError as exc:
        print(f"fork: {name(exc)}", flush=True)
        print(f"children: {children}", flush=True)
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    children += 1
"""
    )
    result = python(api, code, limits={"processes": 16, "timeout_ms": 5000})
    report = lines(result)
    assert report.get("fork") == "EAGAIN", result
    assert int(report["children"]) < (17 if driver == GVISOR else 16)
    # The children sleeping for 60 s did not hold the result back.
    assert result["run"]["wall_ms"] < 5000


def test_memory_bomb_is_memory_limit(api: httpx.Client, py: None) -> None:
    code = """
chunks = []
while True:
    chunks.append(bytearray(8 << 20))  # 8 MiB of touched memory per step
"""
    result = python(api, code, limits={"memory_mb": 64, "timeout_ms": 10_000})
    run = result["run"]
    assert run["status"] == "memory_limit", run
    assert result["status"] == "memory_limit"
    assert run["signal"] == "SIGKILL"


def test_memory_bomb_piston_shape(api: httpx.Client, py: None) -> None:
    response = api.post(
        "/api/v2/execute",
        json={
            "language": "python",
            "version": PY_VERSION,
            "files": [{"content": "x = []\nwhile True:\n    x.append(bytearray(1 << 24))\n"}],
            "run_memory_limit": 64 * 1024 * 1024,
        },
    )
    assert response.status_code == 200, response.text
    run = response.json()["run"]
    assert run["status"] == "SG" and run["signal"] == "SIGKILL", run
    assert run["message"] == "Caught fatal signal 9"  # Piston's words for it
    assert run["memory"] <= 64 * 1024 * 1024 * 1.1, run  # held to its limit


def test_infinite_loop_is_timeout_with_cpu_time(api: httpx.Client, py: None, driver: str) -> None:
    result = python(
        api, "while True:\n    pass\n", limits={"cpu_time_ms": 1000, "timeout_ms": 30000}
    )
    run = result["run"]
    assert run["status"] == "timeout", run
    # The CPU time it burnt is reported; it was stopped for that, not for wall
    # time (which a loaded host may stretch far past the CPU time: hence 30 s).
    # gVisor's agent stops it by the Sentry's clock, which runs ahead of the
    # host's count that cpu_ms reports (more so on a loaded host): half is its floor.
    assert run["cpu_ms"] >= (500 if driver == GVISOR else 800), run
    assert run["wall_ms"] < 29000, run


def test_infinite_loop_piston_is_TO(api: httpx.Client, py: None) -> None:
    response = api.post(
        "/api/v2/execute",
        json={
            "language": "py",
            "version": PY_VERSION,
            "files": [{"content": "while True: pass"}],
            "run_timeout": 1000,
        },
    )
    assert response.status_code == 200, response.text
    run = response.json()["run"]
    assert run["status"] == "TO", run
    assert run["wall_time"] >= 1000, run
    assert run["cpu_time"] > 0, run


def test_sleep_past_the_timeout_is_wall_timeout(api: httpx.Client, py: None) -> None:
    code = "import time\nprint('sleeping', flush=True)\ntime.sleep(60)\nprint('woke')\n"
    result = python(api, code, limits={"timeout_ms": 1000})
    run = result["run"]
    assert run["status"] == "timeout", run
    assert run["stdout"] == "sleeping\n"
    assert 1000 <= run["wall_ms"] < 3000, run
    assert run["cpu_ms"] < 500, run  # a wall-clock timeout, not a CPU one


def test_output_flood_is_truncated(api: httpx.Client, py: None) -> None:
    code = "import sys\nwhile True:\n    sys.stdout.write('A' * 65536)\n"
    result = python(api, code, limits={"output_bytes": 10_000, "timeout_ms": 5000})
    run = result["run"]
    assert run["status"] == "output_limit", run
    assert run["truncated"] is True
    assert run["stdout"] == "A" * 10_000
    assert run["wall_ms"] < 4000


def test_stderr_flood_from_many_processes(api: httpx.Client, sh: None) -> None:
    code = "for i in 1 2 3 4; do (yes flood >&2) & done; wait\n"
    result = bash(api, code, limits={"output_bytes": 4096, "timeout_ms": 5000})
    run = result["run"]
    assert run["status"] == "output_limit", run
    assert run["truncated"] is True
    assert len(run["stderr"]) <= 4096
    assert run["wall_ms"] < 4000


DISK_FILL = (
    ERRNO
    + """
import sys
where = sys.argv[1]
mounts = open("/proc/self/mountinfo").read().splitlines()
fstype = [m.split(" - ")[1].split()[0] for m in mounts if m.split()[4] == where]
print(f"fstype: {fstype[-1]}")
block = b"x" * (1 << 20)
# 1: one file past the file-size limit (RLIMIT_FSIZE; Python ignores SIGXFSZ)
try:
    with open(f"{where}/big", "wb") as fh:
        while True:
            fh.write(block)
            fh.flush()
except OSError as exc:
    print(f"big file: {name(exc)} at {os.path.getsize(where + '/big') >> 20} MiB", flush=True)
os.unlink(f"{where}/big")
# 2: many files under the limit, until the file system is full
total = 0
try:
    for i in range(10_000):
        with open(f"{where}/f{i}", "wb") as fh:
            for _ in range(4):
                fh.write(block)
                fh.flush()
                total += 1
except OSError as exc:
    print(f"fill: {name(exc)} after {total} MiB", flush=True)
"""
)


@pytest.mark.parametrize("where", ["/tmp", "/work"])
def test_disk_fill_is_capped(api: httpx.Client, py: None, settings: Settings, where: str) -> None:
    result = python(
        api,
        DISK_FILL,
        args=[where],
        limits={"file_size_kb": 8192, "memory_mb": 512, "timeout_ms": 20_000},
    )
    assert result["status"] == "ok", result
    report = lines(result)
    assert report["fstype"] == "tmpfs"  # never the host's disk
    assert report["big file"].startswith("EFBIG at 8 MiB"), report
    cap = settings.tmp_size_mb if where == "/tmp" else settings.workdir_size_mb
    verdict, _, amount = report["fill"].partition(" after ")
    assert verdict == "ENOSPC", report
    assert int(amount.split()[0]) <= cap, report


def test_disk_fill_sigxfsz_kills_a_shell(api: httpx.Client, sh: None) -> None:
    result = bash(api, "head -c 50000000 /dev/zero > /tmp/big\necho unreachable\n",
                  limits={"file_size_kb": 1024})  # fmt: skip
    run = result["run"]
    # head is killed by SIGXFSZ; the shell reports it and carries on.
    assert "File size limit exceeded" in run["stderr"], run


def test_huge_stdin(api: httpx.Client, py: None, settings: Settings) -> None:
    size = settings.max_stdin_bytes
    count = "import sys\nprint(len(sys.stdin.buffer.read()))\n"
    result = python(api, count, stdin="z" * size)
    assert result["status"] == "ok", result
    assert result["run"]["stdout"] == f"{size}\n"
    # A program that never reads its (huge) stdin is not blocked by it.
    result = python(api, "print('ignored')", stdin="z" * size)
    assert result["run"]["stdout"] == "ignored\n"
    # One byte more is a bad request, not a crash.
    response = api.post(
        "/api/v1/execute",
        json={"language": "python", "version": PY_VERSION, "code": "", "stdin": "z" * (size + 1)},
    )
    assert 400 <= response.status_code < 500, response.text


# -- network --------------------------------------------------------------------
NETWORK = (
    ERRNO
    + """
import socket, sys
def connect(host, port, family=socket.AF_INET):
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        sock.connect((host, port))
port = int(sys.argv[1])
attempt("service port", lambda: connect("127.0.0.1", port))
attempt("service port v6", lambda: connect("::1", port, socket.AF_INET6))
attempt("private", lambda: connect("10.255.255.1", 80))
attempt("test-net", lambda: connect("192.0.2.1", 80))
def udp():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"x", ("192.0.2.1", 53))
attempt("udp", udp)
# vsock is not network-namespaced: creating the socket must already fail
# (nothing is ever connected or sent).
attempt("vsock", lambda: socket.socket(40, socket.SOCK_STREAM).close())
attempt("packet", lambda: socket.socket(17, socket.SOCK_RAW).close())
def dns():
    socket.getaddrinfo("example.com", 80)
try:
    dns()
    print("dns: ALLOWED")
except socket.gaierror as exc:
    print(f"dns: failed")
ifaces = [line.split(":")[0].strip() for line in open("/proc/net/dev").read().splitlines()[2:]]
print(f"interfaces: {','.join(ifaces)}")
listening = [line.split()[1] for line in open("/proc/net/tcp").read().splitlines()[1:]]
print(f"port visible: {any(a.endswith(':%04X' % port) for a in listening)}")
"""
)


def test_network_is_an_empty_namespace(
    api: httpx.Client, py: None, server: Server, driver: str
) -> None:
    unreachable = {"ENETUNREACH", "EHOSTUNREACH"} if driver == GVISOR else {"ENETUNREACH"}
    result = python(api, NETWORK, args=[str(server.port)], limits={"timeout_ms": 10_000})
    report = lines(result)
    # The service listens on the host's 127.0.0.1: the sandbox has its own loopback.
    assert report["service port"] == "ECONNREFUSED", report
    assert report["service port v6"] in ("ECONNREFUSED", "EADDRNOTAVAIL", "ENETUNREACH"), report
    # No route anywhere else.
    assert report["private"] in unreachable, report
    assert report["test-net"] in unreachable, report
    assert report["udp"] in unreachable, report
    assert report["vsock"] in ("EAFNOSUPPORT", "EPERM"), report
    assert report["packet"] in ("EAFNOSUPPORT", "EPERM"), report
    assert report["dns"] == "failed", report
    assert report["interfaces"] == "lo", report
    assert report["port visible"] == "False", report


# -- the host's files and environment -------------------------------------------
def test_host_only_files_are_invisible(api: httpx.Client, py: None) -> None:
    marker = f"tvm-containment-{uuid.uuid4().hex}"
    paths = [Path("/root") / marker, Path("/etc") / marker, Path("/tmp") / marker]
    try:
        for path in paths:
            path.write_text("host secret\n")
        code = (
            ERRNO + "\nimport sys\nfor p in sys.argv[1:]:\n    attempt(p, lambda: open(p).read())\n"
        )
        code += (
            "for p in sys.argv[1:]:\n"
            "    attempt('/proc/1/root' + p, lambda: open('/proc/1/root' + p).read())\n"
        )
        result = python(api, code, args=[str(p) for p in paths])
        report = lines(result)
        for path in paths:
            # /root of the image is root's (0700): the program cannot even look.
            allowed = ("ENOENT", "EACCES") if path.parent == Path("/root") else ("ENOENT",)
            assert report[str(path)] in allowed, report
            assert report[f"/proc/1/root{path}"] in ("EACCES", "ENOENT"), report
        assert "host secret" not in result["run"]["output"]
    finally:
        for path in paths:
            path.unlink(missing_ok=True)


ENVIRON = """
import os
print("env:", sorted(os.environ))
for pid in ["self", *os.listdir("/proc")]:
    if not pid.isdigit() and pid != "self":
        continue
    for what in ("environ", "cmdline"):
        try:
            data = open(f"/proc/{pid}/{what}", "rb").read()
            print(f"/proc/{pid}/{what}:", data.replace(b"\\0", b" ").decode(errors="replace"))
        except OSError as exc:
            print(f"/proc/{pid}/{what}: {exc.strerror}")
"""


def test_service_environment_does_not_leak(tmp_path: Path, py: None, driver: str) -> None:
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    env = server_env(driver, TVM_CONTAINMENT_SECRET=secret, AWS_SECRET_ACCESS_KEY=secret)
    srv = Server(tmp_path, env=env)
    try:
        # The service really holds the secret ...
        holders = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if secret.encode() in Path(f"/proc/{pid}/environ").read_bytes():
                    holders.append(pid)
            except OSError:
                continue
        assert holders, holders
        # ... and the program cannot see it anywhere.
        with srv.client() as own:
            result = python(own, ENVIRON, limits={"timeout_ms": 10_000})
            run = result["run"]
            assert run["status"] == "ok", run
            assert "env: [" in run["stdout"]
            assert "/proc/self/environ:" in run["stdout"]
            assert secret not in run["output"]
            assert "TVM_CONTAINMENT_SECRET" not in run["output"]
            # The program's environment is the fixed safe set.
            assert "AWS" not in run["stdout"]
            # The same through bash's `env`/`set`.
            result = execute(own, "bash", "env; set; cat /proc/*/environ 2>&1")
            assert secret not in result["run"]["output"]
            assert_healthy(own)
    finally:
        srv.stop()


# -- privileges -----------------------------------------------------------------
PRIVILEGES = (
    ERRNO
    + """
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp"):
    print(f"{key}: {status.get(key, 'absent').strip()}")
print(f"uid: {os.getuid()} {os.geteuid()}")
print(f"gid: {os.getgid()} {os.getegid()}")
print(f"groups: {os.getgroups()}")
attempt("setuid", lambda: os.setuid(0))
attempt("setgid", lambda: os.setgid(0))
attempt("setgroups", lambda: os.setgroups([0]))
attempt("chown", lambda: os.chown("/tmp", 0, 0))
def lower_oom():
    with open("/proc/self/oom_score_adj", "w") as fh:
        fh.write("-1000")
attempt("oom_score_adj", lower_oom)
"""
)


def test_no_capabilities_and_unprivileged_uid(
    api: httpx.Client, py: None, settings: Settings, driver: str
) -> None:
    result = python(api, PRIVILEGES)
    report = lines(result)
    if driver == GVISOR:  # runsc's /proc/self/status lacks these lines; see GVISOR above
        for key, stands_for in (("CapAmb", "0"), ("NoNewPrivs", "1"), ("Seccomp", "2")):
            if report[key] == "absent":
                report[key] = stands_for  # NoNewPrivs: OCI config; Seccomp: denied syscalls
    for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(report[key], 16) == 0, f"{key} = {report[key]}"
    assert report["NoNewPrivs"] == "1"
    assert report["Seccomp"] == "2"
    uid, euid = (int(x) for x in report["uid"].split())
    assert uid == euid and settings.uid_base <= uid < settings.uid_base + settings.uid_count
    gid, egid = (int(x) for x in report["gid"].split())
    assert gid == egid and gid >= settings.uid_base
    assert report["groups"] == "[]"
    assert report["setuid"] == "EPERM"
    assert report["setgid"] == "EPERM"
    assert report["setgroups"] == "EPERM"
    assert report["chown"] == "EPERM"
    # Under gVisor the OOM score is the Sentry's own bookkeeping: the host never sees it.
    assert report["oom_score_adj"] == "EACCES" or driver == GVISOR


def test_setuid_binaries_do_not_elevate(api: httpx.Client, sh: None) -> None:
    # no_new_privs: set-uid bits (su, mount, passwd, ... in the image) are ignored.
    code = (
        "for b in /usr/bin/* /bin/* /usr/sbin/* /sbin/*; do\n"
        '  if [ -u "$b" ]; then echo "setuid: $b"; fi\n'
        "done | sort -u | head -5\n"
        "cp /bin/sh /tmp/sh 2>/dev/null; chmod 4755 /tmp/sh; /tmp/sh -c 'echo euid: $(id -u)'\n"
        "for b in /usr/bin/su /bin/su /usr/bin/passwd /bin/mount; do\n"
        '  [ -u "$b" ] && "$b" --help >/dev/null 2>&1; done\n'
        "echo uid: $(id -u)\n"
    )
    result = bash(api, code)
    report = lines(result)
    assert int(report["uid"]) >= 60000, result
    assert int(report["euid"]) >= 60000, result


def test_image_is_read_only(api: httpx.Client, py: None, driver: str) -> None:
    read_only = {"EROFS", "EACCES"} if driver == GVISOR else {"EROFS"}
    code = (
        ERRNO
        + """
def write(path):
    with open(path, "a") as fh:
        fh.write("owned")
attempt("/", lambda: write("/pwned"))
attempt("/usr", lambda: write("/usr/pwned"))
attempt("/etc", lambda: write("/etc/pwned"))
attempt("/etc/passwd", lambda: write("/etc/passwd"))
attempt("/usr/bin/python3", lambda: write("/usr/bin/python3"))
attempt("agent", lambda: write("/.tvm/tvm_agent/main.py"))
attempt("mkdir", lambda: os.mkdir("/usr/lib/pwned"))
attempt("/sys", lambda: write("/sys/pwned"))
attempt("/dev", lambda: write("/dev/pwned"))
"""
    )
    report = lines(python(api, code))
    for key in ("/", "/usr", "/etc", "mkdir"):
        assert report[key] in read_only, (key, report)
    # Existing files are root's: permission is checked first, and either stops it.
    for key in ("/etc/passwd", "/usr/bin/python3", "agent"):
        assert report[key] in ("EROFS", "EACCES"), (key, report)
    assert report["/sys"] in ("EROFS", "ENOENT", *(("EACCES",) if driver == GVISOR else ())), report
    # /dev is root's, and read-only where the driver shares it between sandboxes.
    assert report["/dev"] == ("EACCES" if driver == GVISOR else "EROFS"), report


def test_nothing_persists_between_executions(api: httpx.Client, py: None) -> None:
    tag = uuid.uuid4().hex
    paths = [f"/tmp/{tag}", f"/work/{tag}", f"/dev/shm/{tag}"]
    write = "import sys\nfor p in sys.argv[1:]:\n    open(p, 'w').write('x')\nprint('written')\n"
    first = python(api, write, args=paths)
    assert first["run"]["stdout"] == "written\n", first
    check = "import os, sys\nfor p in sys.argv[1:]:\n    print(f'{p}: {os.path.exists(p)}')\n"
    report = lines(python(api, check, args=paths))
    assert report == {p: "False" for p in paths}, report


# -- processes left behind ------------------------------------------------------
def test_double_forked_daemon_does_not_survive(
    api: httpx.Client, py: None, settings: Settings
) -> None:
    code = """
import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        # The daemon keeps stdout open and sleeps far past the execution.
        time.sleep(300)
        os._exit(0)
    os._exit(0)
print("parent done", flush=True)
"""
    result = python(api, code, limits={"timeout_ms": 10_000})
    run = result["run"]
    assert run["status"] == "ok", run
    assert run["stdout"] == "parent done\n"
    # The daemon held stdout open, yet the result did not wait for it ...
    assert run["wall_ms"] < 5000, run
    # ... and it is gone as soon as the result is back.
    assert sandbox_processes(settings) == []


def test_background_jobs_in_bash_do_not_survive(
    api: httpx.Client, sh: None, settings: Settings
) -> None:
    code = (
        "nohup sleep 300 >/dev/null 2>&1 &\n"
        "setsid sleep 301 &\n"
        "( trap '' TERM HUP; exec sleep 302 ) & disown\n"
        "echo started\n"
    )
    result = bash(api, code)
    assert result["run"]["stdout"] == "started\n", result
    assert sandbox_processes(settings) == []


def test_kill_minus_one_from_the_program(api: httpx.Client, py: None) -> None:
    code = (
        ERRNO
        + """
import signal, subprocess
child = subprocess.Popen(["sleep", "60"])
attempt("kill -1", lambda: os.kill(-1, signal.SIGKILL))
print(f"child: {child.wait()}")
print("survived: yes")
"""
    )
    result = python(api, code)
    report = lines(result)
    assert result["status"] == "ok", result
    assert report["kill -1"] == "ALLOWED"  # allowed, but reaches only its own uid
    assert report["child"] == str(-9)
    assert report["survived"] == "yes"


def test_kill_minus_one_from_bash(api: httpx.Client, sh: None) -> None:
    result = bash(api, "sleep 60 &\nkill -9 -1\necho survived\n")
    assert result["run"]["stdout"] == "survived\n", result


FIND_SUPERVISOR = """
def others():
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != me:
            st = os.stat(f"/proc/{entry}")
            if st.st_uid != os.getuid():
                yield int(entry)
supervisors = sorted(others())
print(f"supervisors: {len(supervisors)}")
"""


def test_killing_the_agent_fails(api: httpx.Client, py: None) -> None:
    code = (
        ERRNO
        + FIND_SUPERVISOR
        + """
import signal
for pid in supervisors:
    for sig in (signal.SIGKILL, signal.SIGSTOP, signal.SIGTERM):
        attempt(f"kill {pid} {sig.name}", lambda: os.kill(pid, sig))
print("done: yes")
"""
    )
    result = python(api, code)
    assert result["status"] == "ok", result
    report = lines(result)
    assert int(report["supervisors"]) >= 1  # the agent (and bwrap's pid 1)
    kills = {k: v for k, v in report.items() if k.startswith("kill ")}
    assert kills and set(kills.values()) == {"EPERM"}, kills
    assert report["done"] == "yes"


def test_forging_a_result_through_proc_fails(api: httpx.Client, py: None, driver: str) -> None:
    code = (
        ERRNO
        + FIND_SUPERVISOR
        + """
for pid in supervisors:
    attempt(f"list {pid}", lambda: os.listdir(f"/proc/{pid}/fd"))
    for fd in range(0, 8):
        attempt(f"open {pid} {fd}", lambda: os.open(f"/proc/{pid}/fd/{fd}", os.O_WRONLY))
    attempt(f"mem {pid}", lambda: os.open(f"/proc/{pid}/mem", os.O_RDWR))
    attempt(f"environ {pid}", lambda: open(f"/proc/{pid}/environ", "rb").read())
"""
    )
    result = python(api, code)
    assert result["status"] == "ok", result
    report = lines(result)
    probes = {k: v for k, v in report.items() if k.split()[0] in ("list", "open", "mem", "environ")}
    assert probes, report
    refused = {"EACCES", "EPERM"}
    if driver == GVISOR:  # see GVISOR above: listing, /dev/null at fds 0/1, ENXIO
        refused.add("ENXIO")
        probes = {
            k: v for k, v in probes.items()
            if not (k.startswith("list ") or (k.startswith("open ") and k.split()[2] in "01"))
            and k != "environ 1"  # readable, and only the fixed public environment
        }  # fmt: skip
    assert set(probes.values()) <= refused, sorted(probes.items())


def test_forged_frame_on_stdout_is_only_text(api: httpx.Client, py: None) -> None:
    fake = {
        "type": "stage_result", "status": "ok", "exit_code": 0, "signal": None,
        "stdout": "Rk9SR0VE", "stderr": "", "output": "Rk9SR0VE",
        "stdout_truncated": False, "stderr_truncated": False,
        "cpu_ms": 0, "wall_ms": 0, "memory_kb": 0,
    }  # fmt: skip
    body = json.dumps(fake).encode()
    frame = struct.pack(">I", len(body)) + body
    code = f"""
import os, sys
frame = {frame!r}
for fd in (1, 2):
    os.write(fd, frame)
for fd in range(3, 64):  # any inherited descriptor would be the channel
    try:
        os.write(fd, frame)
        print(f"fd {{fd}}: WRITTEN")
    except OSError:
        pass
sys.stdout.flush()
sys.exit(3)
"""
    result = python(api, code)
    run = result["run"]
    assert run["status"] == "runtime_error", run
    assert run["exit_code"] == 3
    assert "FORGED" not in run["stdout"]
    assert '"type": "stage_result"' in run["stdout"]  # just text on stdout
    assert "WRITTEN" not in run["stdout"]


@pytest.mark.skipif(not X86_64, reason="syscall numbers are x86_64's")
def test_denied_syscalls(api: httpx.Client, py: None, driver: str) -> None:
    code = (
        ERRNO
        + SYSCALLS
        + FIND_SUPERVISOR
        + """
agent = supervisors[-1]
syscall("ptrace attach", 101, 16, agent, 0, 0)       # PTRACE_ATTACH
syscall("ptrace seize", 101, 0x4206, agent, 0, 0)    # PTRACE_SEIZE
syscall("ptrace traceme", 101, 0, 0, 0, 0)
syscall("process_vm_readv", 310, agent, 0, 0, 0, 0, 0)
syscall("mount", 165, 0, 0, 0, 0, 0)
syscall("umount2", 166, 0, 0)
syscall("unshare user", 272, 0x10000000)
syscall("unshare net", 272, 0x40000000)
syscall("unshare mount", 272, 0x00020000)
syscall("setns", 308, 0, 0)
syscall("keyctl", 250, 0, 0, 0, 0, 0)
syscall("add_key", 248, 0, 0, 0, 0, 0)
syscall("bpf", 321, 0, 0, 0)
syscall("perf_event_open", 298, 0, 0, -1, -1, 0)
syscall("userfaultfd", 323, 0)
syscall("io_uring_setup", 425, 1, 0)
syscall("init_module", 175, 0, 0, 0)
syscall("kexec_load", 246, 0, 0, 0, 0)
syscall("reboot", 169, 0, 0, 0, 0)
syscall("chroot", 161, 0)
syscall("pivot_root", 155, 0, 0)
syscall("open_by_handle_at", 304, 0, 0, 0)
syscall("clone newuser", 56, 0x10000000 | 17, 0, 0, 0, 0)
syscall("clone3", 435, 0, 0)
"""
    )
    result = python(api, code)
    assert result["status"] == "ok", result
    report = lines(result)
    expected = [
        "ptrace attach", "ptrace seize", "ptrace traceme", "process_vm_readv", "mount",
        "umount2", "unshare user", "unshare net", "unshare mount", "setns", "keyctl",
        "add_key", "bpf", "perf_event_open", "userfaultfd", "io_uring_setup",
        "init_module", "kexec_load", "reboot", "chroot", "pivot_root", "open_by_handle_at",
        "clone newuser",
    ]  # fmt: skip
    if driver == GVISOR:  # no seccomp argument filters in runsc; see GVISOR above
        expected.remove("clone newuser")
    for label in expected:
        assert report[label] == "EPERM", (label, report)
    if driver != GVISOR:
        assert report["clone3"] == "ENOSYS", report  # so libc falls back to a checkable clone


def test_unshare_and_mount_commands_fail(api: httpx.Client, sh: None) -> None:
    code = (
        "unshare -r id 2>&1 | head -1; echo unshare: $?\n"
        "mount -t tmpfs none /tmp 2>&1 | head -1\n"
        "mkdir -p /tmp/m && mount --bind /tmp /tmp/m 2>&1 | head -1\n"
        "echo end\n"
    )
    result = bash(api, code)
    out = result["run"]["stdout"]
    assert "end" in out
    assert "uid=0" not in out and "root" not in out.split("end")[0].replace("must be superuser", "")


def test_concurrent_sandboxes_get_distinct_uids(server: Server, py: None) -> None:
    code = "import os, time\nprint(os.getuid(), os.getgid())\ntime.sleep(1.5)\n"

    def one(_: int) -> str:
        with server.client() as client:
            return str(python(client, code)["run"]["stdout"]).strip()

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(one, range(4)))
    uids = [int(x.split()[0]) for x in ids]
    assert len(set(uids)) == 4, ids
    assert all(x.split()[0] == x.split()[1] for x in ids), ids


# Sandboxes of one image are forked from one zygote (namespace driver): each
# must still be a world of its own while they run side by side.
SIDE_BY_SIDE = """
import os, sys, time
me, other = sys.argv[1], sys.argv[2]
for d in ("/tmp", "/work", "/dev/shm"):
    open(f"{d}/{me}", "w").write(me)
os.mkfifo(f"/tmp/{me}.fifo")
seen = set()
deadline = time.time() + 2.5
while time.time() < deadline:
    for d in ("/tmp", "/work", "/dev/shm"):
        if os.path.exists(f"{d}/{other}"):
            seen.add(d)
    time.sleep(0.05)
pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
cmdlines = [open(f"/proc/{p}/cmdline", "rb").read().replace(bytes(1), b" ").decode() for p in pids]
print("seen:", sorted(seen))
print("pids:", pids)
print("others:", [c for c in cmdlines if other in c])
print("pts:", sorted(os.listdir("/dev/pts")))
"""


def test_sandboxes_side_by_side_share_nothing(server: Server, py: None) -> None:
    tags = [uuid.uuid4().hex for _ in range(2)]

    def one(i: int) -> dict[str, str]:
        with server.client() as client:
            result = python(client, SIDE_BY_SIDE, args=[tags[i], tags[1 - i]])
            assert result["run"]["status"] == "ok", result["run"]["stderr"]
            return lines(result)

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(one, range(2)))
    for report in reports:
        assert report["seen"] == "[]", report  # not one file of the other
        assert report["others"] == "[]", report  # not one process of the other
        pids = json.loads(report["pids"])
        assert pids[0] == 1 and len(pids) <= 4, report  # its own pid namespace
        assert report["pts"] in ("['ptmx']", "[]"), report  # its own devpts


# -- what the sandbox can see -----------------------------------------------------
VIEW = """
import os
print("dev:", " ".join(sorted(os.listdir("/dev"))))
for node in ("sda", "vda", "kvm", "mem", "kmem", "port", "kmsg", "nvme0", "loop0", "fuse"):
    print(f"/dev/{node}: {os.path.exists('/dev/' + node)}")
print("sys:", os.listdir("/sys") if os.path.isdir("/sys") else "absent")
for line in open("/proc/self/mountinfo"):
    left, right = line.split(" - ")
    fields = left.split()
    print("mount:", fields[4], fields[3], fields[5], right.split()[0])
try:
    print("proc1root:", os.listdir("/proc/1/root"))
except OSError as exc:
    print("proc1root:", exc.strerror)
print("selfroot:", os.readlink("/proc/self/root"))
print("hostname:", os.uname().nodename)
"""

EXPECTED_MOUNT_POINTS = {
    "/", "/.tvm", "/.tvm/tvm_agent", "/.tvm/cg/memory.procs", "/.tvm/cg/pids.procs",
    "/.tvm/cg/unified.procs", "/proc", "/proc/irq", "/proc/bus", "/proc/sys", "/proc/sysrq-trigger",
    "/proc/fs", "/dev", "/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom",
    "/dev/tty", "/dev/pts", "/dev/ptmx", "/dev/shm", "/work", "/tmp",
    "/proc/cmdline",  # covered: the host's kernel command line is not shown
}  # fmt: skip
ALLOWED_DEVICES = {
    "null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm",
    "fd", "stdin", "stdout", "stderr", "core",
}  # fmt: skip


def test_view_of_the_system_is_minimal(
    api: httpx.Client, py: None, settings: Settings, driver: str
) -> None:
    result = python(api, VIEW)
    out = result["run"]["stdout"]
    report = lines(result)
    devices = set(report["dev"].split())
    allowed = ALLOWED_DEVICES | ({"fuse", "net"} if driver == GVISOR else set())
    assert devices <= allowed, devices - allowed
    nodes = ["sda", "vda", "kvm", "mem", "kmem", "port", "kmsg", "nvme0", "loop0"]
    for node in nodes if driver == GVISOR else [*nodes, "fuse"]:
        assert report[f"/dev/{node}"] == "False", node
    if driver != GVISOR:  # runsc always shows its own synthetic, read-only /sys
        assert report["sys"] in ("[]", "absent"), report["sys"]  # /sys is not mounted
    mounts = [line.split()[1:] for line in out.splitlines() if line.startswith("mount: ")]
    points = {m[0] for m in mounts}
    expected_points = EXPECTED_MOUNT_POINTS | ({"/sys"} if driver == GVISOR else set())
    assert points <= expected_points, points - expected_points
    assert driver == GVISOR or "/sys" not in points
    for point, root, options, fstype in mounts:
        # Nothing of the host is mounted but the read-only image and agent ...
        if point.startswith("/.tvm/cg/"):
            # The program cgroup's procs files (the agent moves programs there).
            assert fstype in ("cgroup", "cgroup2"), (point, fstype)
            continue
        if driver == GVISOR and point == "/sys":
            continue  # the Sentry's synthetic sysfs, nothing of the host's
        if fstype not in ("tmpfs", "proc", "devpts", "devtmpfs"):
            assert point in ("/", "/.tvm/tvm_agent"), (point, root)
            assert options.split(",")[0] == "ro", (point, options)
        # ... and no host path of interest is the source of any mount.
        # (gVisor serves the read-only image root over its gofer: 9p)
        # (the namespace driver's image and agent are overlays of their own)
        assert root != "/" or fstype in (
            "tmpfs",
            "proc",
            "devpts",
            *(("9p",) if driver == GVISOR else ("overlay",)),
        ), (point, root, fstype)
        for secret in ("/root", "/home", "/run", "/var/run", "/etc"):
            assert not root.startswith(secret + "/") and root != secret, (point, root)
        if root.startswith(f"{settings.home}/"):
            # Of TVM's data dir, only the images and the agent's code (never the
            # database, logs or keys).
            kind = root[len(str(settings.home)) + 1 :].split("/")[0]
            assert kind in ("images", "agent"), (point, root)
    assert report["proc1root"] == "Permission denied", report
    assert report["selfroot"] == "/"
    assert report["hostname"] == "tvm"


def test_cgroups_cannot_be_escaped(api: httpx.Client, py: None) -> None:
    code = (
        ERRNO
        + """
import glob
def join(path):
    with open(path, "w") as fh:
        fh.write(str(os.getpid()))
files = glob.glob("/.tvm/cg/*") + ["/sys/fs/cgroup/memory/cgroup.procs", "/sys/fs/cgroup/cgroup.procs"]
for path in files:
    attempt(path, lambda: join(path))
print("cgroup:", " ".join(l.split(":", 2)[2] for l in open("/proc/self/cgroup").read().split()))
"""
    )
    result = python(api, code)
    report = lines(result)
    probes = {k: v for k, v in report.items() if k.startswith("/")}
    for path, outcome in probes.items():
        assert outcome in ("EACCES", "ENOENT", "EROFS"), (path, report)
    # Its own cgroup namespace: the host's cgroup paths are not shown.
    assert set(report["cgroup"].split()) <= {"/", "/program", "/.."}, report


# -- crashes and load -------------------------------------------------------------
def test_segfault_is_a_result(api: httpx.Client, py: None) -> None:
    result = python(api, "import ctypes\nctypes.string_at(0)\n")
    run = result["run"]
    assert run["status"] == "signal", run
    assert run["signal"] == "SIGSEGV"


def test_segfault_in_c_is_a_result(api: httpx.Client, gcc: str) -> None:
    result = c(api, gcc, "int main(void) { volatile int *p = 0; *p = 1; return 0; }\n")
    run = result["run"]
    assert run["status"] == "signal", run
    assert run["signal"] == "SIGSEGV"
    response = api.post(
        "/api/v2/execute",
        json={"language": "c", "version": gcc,
              "files": [{"content": "int main(void){ return *(volatile int *)0; }"}]},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json()["run"]["signal"] == "SIGSEGV"


def test_thirty_concurrent_requests(server: Server, py: None) -> None:
    code = "import time\ntime.sleep(0.5)\nprint('ok')\n"

    def one(_: int) -> tuple[int, str | None, str]:
        with server.client() as client:
            response = client.post(
                "/api/v2/execute",
                json={"language": "python", "version": PY_VERSION, "files": [{"content": code}]},
            )
            body = response.json()
            stdout = body["run"]["stdout"] if response.status_code == 200 else ""
            return response.status_code, response.headers.get("retry-after"), stdout

    with concurrent.futures.ThreadPoolExecutor(30) as pool:
        results = list(pool.map(one, range(30)))
    codes = [code for code, _, _ in results]
    assert set(codes) <= {200, 429}, codes
    assert codes.count(200) >= 10, codes
    for status, retry_after, stdout in results:
        if status == 429:
            assert retry_after is not None and int(retry_after) >= 1
        else:
            assert stdout == "ok\n"


# -- the same attacks in C ---------------------------------------------------------
def test_c_fork_bomb(api: httpx.Client, gcc: str) -> None:
    code = "#include <unistd.h>\nint main(void){ for(;;) fork(); }\n"
    result = c(api, gcc, code, limits={"timeout_ms": 2000, "processes": 32})
    assert result["run"]["status"] == "timeout", result["run"]


def test_c_memory_bomb(api: httpx.Client, gcc: str) -> None:
    code = (
        "#include <stdlib.h>\n#include <string.h>\n"
        "int main(void){ for(;;){ char *p = malloc(1<<24); if(!p) return 3;\n"
        "  memset(p, 1, 1<<24); } }\n"
    )
    result = c(api, gcc, code, limits={"memory_mb": 64})
    assert result["run"]["status"] == "memory_limit", result["run"]


def test_c_ptrace_and_kill_of_the_agent(api: httpx.Client, gcc: str) -> None:
    code = r"""
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <unistd.h>
int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    DIR *proc = opendir("/proc");
    struct dirent *e;
    int found = 0;
    while ((e = readdir(proc)) != NULL) {
        char path[64];
        struct stat st;
        pid_t pid = (pid_t)atoi(e->d_name);
        snprintf(path, sizeof path, "/proc/%s", e->d_name);
        if (pid <= 0 || stat(path, &st) != 0 || st.st_uid == getuid()) continue;
        found++;  /* a supervisor: the agent or bwrap's init */
        long rc = ptrace(PTRACE_ATTACH, pid, 0, 0);
        printf("ptrace %d: %s\n", pid, rc == 0 ? "ALLOWED" : strerrorname_np(errno));
        int k = kill(pid, SIGKILL);
        printf("kill %d: %s\n", pid, k == 0 ? "ALLOWED" : strerrorname_np(errno));
    }
    printf("supervisors: %d\n", found);
    printf("kill -1: %s\n", kill(-1, SIGKILL) == 0 ? "ok" : strerrorname_np(errno));
    return 0;
}
"""
    result = c(api, gcc, code)
    report = lines(result)
    assert result["run"]["status"] == "ok", result["run"]
    assert int(report["supervisors"]) >= 1, report
    probes = {
        k: v for k, v in report.items() if k.startswith(("ptrace ", "kill ")) and k != "kill -1"
    }
    assert probes and set(probes.values()) == {"EPERM"}, probes


def test_c_double_fork_daemon(api: httpx.Client, gcc: str, settings: Settings) -> None:
    code = r"""
#include <stdio.h>
#include <unistd.h>
int main(void) {
    if (fork() == 0) { setsid(); if (fork() == 0) { for (;;) pause(); } _exit(0); }
    puts("parent done");
    return 0;
}
"""
    result = c(api, gcc, code)
    assert result["run"]["stdout"] == "parent done\n", result
    assert sandbox_processes(settings) == []


def test_service_survives_a_burst_of_attacks(server: Server, py: None) -> None:
    attacks = [
        "while True: pass",
        "import os\nwhile True:\n    try: os.fork()\n    except OSError: pass",
        "x = []\nwhile True: x.append(bytearray(1 << 24))",
        "import sys\nwhile True: sys.stdout.write('x' * 4096)",
    ]

    def one(code: str) -> int:
        with server.client() as client:
            response = client.post(
                "/api/v1/execute",
                json={"language": "python", "version": PY_VERSION, "code": code,
                      "limits": {"timeout_ms": 2000, "memory_mb": 64, "processes": 16}},
            )  # fmt: skip
            return response.status_code

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(one, attacks * 2))
    assert set(codes) <= {200, 429}, codes
    assert time.monotonic() - started < 60
