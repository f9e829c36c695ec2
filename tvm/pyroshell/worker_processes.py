"""Worker processes for ``tvm start`` (role ``all``): start, watch, restart, stop.

Each worker is ``tvm start --role worker`` on a loopback port (``worker_port``
and up; a busy port is replaced by a free one), in its own session so that a
Ctrl-C in the terminal reaches only the supervisor, which then stops them in
order. A worker that dies is started again on the same port (after a pause
that grows while it keeps dying quickly). Workers also get SIGTERM from the
kernel if the supervisor itself is killed (``PR_SET_PDEATHSIG``), so none is
ever left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from tvm.config.settings import Settings

log = logging.getLogger("tvm.worker_processes")

SUPERVISED_ENV = "TVM_SUPERVISED"
STOP_GRACE_SECONDS = 15.0
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class WorkerProcess:
    port: int
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff: float = 0.5

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class WorkerProcesses:
    settings: Settings
    count: int
    extra_args: list[str] = field(default_factory=list)
    workers: list[WorkerProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        taken: set[int] = set()
        for i in range(self.count):
            port = self.settings.worker_port + i
            if port in taken or not port_is_free(port):
                port = free_port()
            taken.add(port)
            self.workers.append(WorkerProcess(port))

    @property
    def urls(self) -> list[str]:
        return [worker.url for worker in self.workers]

    def _uid_slice(self, worker: WorkerProcess) -> dict[str, str]:
        """Each worker its own range of sandbox uids: a uid is what separates two
        concurrent sandboxes (signals, per-uid process limits)."""
        share = self.settings.uid_count // len(self.workers)
        base = self.settings.uid_base + self.workers.index(worker) * share
        return {"TVM_UID_BASE": str(base), "TVM_UID_COUNT": str(share)}

    def _spawn(self, worker: WorkerProcess) -> None:
        argv = [sys.executable, "-m", "tvm.cli", "start", "--role", "worker",
                "--host", "127.0.0.1", "--port", str(worker.port), *self.extra_args]  # fmt: skip
        env = dict(os.environ, **{SUPERVISED_ENV: "1"}, **self._uid_slice(worker))
        worker.proc = subprocess.Popen(
            argv, env=env, start_new_session=True, preexec_fn=_die_with_parent
        )
        worker.started_at = time.monotonic()
        log.info("worker on port %d started (pid %d)", worker.port, worker.proc.pid)

    def start(self) -> None:
        for worker in self.workers:
            self._spawn(worker)
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stopping.wait(0.5):
            with self._lock:
                for worker in self.workers:
                    if self._stopping.is_set():
                        return
                    self._restart_if_dead(worker)

    def _restart_if_dead(self, worker: WorkerProcess) -> None:
        if worker.proc is None or worker.proc.poll() is None:
            return
        lived = time.monotonic() - worker.started_at
        worker.backoff = 0.5 if lived > 30 else min(worker.backoff * 2, 30.0)
        log.warning("worker on port %d exited with %s after %.1f s; restarting in %.1f s",
                    worker.port, worker.proc.returncode, lived, worker.backoff)  # fmt: skip
        if self._stopping.wait(worker.backoff):
            return
        worker.restarts += 1
        self._spawn(worker)

    def stop(self) -> None:
        """SIGTERM every worker's process group, then SIGKILL what is left after the grace."""
        self._stopping.set()
        with self._lock:
            procs = [w.proc for w in self.workers if w.proc is not None and w.proc.poll() is None]
            for proc in procs:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE_SECONDS
            for proc in procs:
                try:
                    proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=5)
