"""Who this gateway is among the replicas on one database, and the SQLite rule.

* :func:`replica_id`: the name written on this gateway's leases
  (``replica_id`` setting, else ``<hostname>:<port>``). It must differ between
  replicas that live at the same time, and stay the same across a restart of
  one replica, so that a restarted replica takes its own interrupted work back
  at once instead of after ``lease_seconds``.
* :class:`SingleGateway`: SQLite is the embedded single-node database. One
  gateway per SQLite file: a second one is refused at start with an error that
  says what to do, instead of two gateways silently sharing one queue. The lock
  is an ``flock`` on ``<database>.gateway.lock``, released by the kernel when
  the process dies (so a SIGKILLed gateway never blocks its successor).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from pathlib import Path

from sqlalchemy.engine import make_url

from tvm.config.settings import Settings
from tvm.errors import ConfigError


def replica_id(settings: Settings) -> str:
    return settings.replica_id or f"{socket.gethostname()}:{settings.port}"


class SingleGateway:
    """Holds the one-gateway lock of an SQLite database while the gateway runs."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        self.database = parsed.database or ""
        self._fd: int | None = None

    @property
    def needed(self) -> bool:
        return bool(self.database) and self.database != ":memory:"

    def acquire(self) -> None:
        if not self.needed:
            return
        path = Path(f"{self.database}.gateway.lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ConfigError(
                f"another gateway (pid {holder}) already serves the SQLite database "
                f"{self.database}: SQLite is for one gateway. Stop that one, give this one "
                "its own TVM_HOME, or run several replicas on one PostgreSQL "
                "(TVM_DATABASE_URL=postgresql+asyncpg://...)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def check(self) -> None:
        """Refuse early (before the server starts) when another gateway holds it."""
        self.acquire()
        self.release()

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
