"""The host processes a driver starts for a sandbox (bwrap, runsc, a VMM):
started inside the sandbox's host cgroups, their output kept in a ring buffer
for diagnostics, killed and reaped at teardown."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from pathlib import Path

# Enter the cgroups given before ``--``, shield the launcher from the OOM
# killer, then exec the rest: ``sh -c ENTER sh CGROUP_PROCS... -- ARGV...``.
ENTER = (
    'for f in "$@"; do case "$f" in --) shift; break;; esac; echo $$ > "$f"; shift; done;'
    ' { echo -1000 > /proc/self/oom_score_adj; } 2>/dev/null; exec "$@"'
)


def enter_argv(procs_files: Sequence[Path], argv: Sequence[str]) -> list[str]:
    """``argv`` started inside the cgroups whose ``cgroup.procs`` files are given."""
    return ["/bin/sh", "-c", ENTER, "sh", *map(str, procs_files), "--", *argv]


class OutputRing:
    """The last ``size`` bytes a stream produced (a console, a launcher's stderr)."""

    def __init__(self, size: int = 16384) -> None:
        self.size = size
        self._data = bytearray()
        self._task: asyncio.Task[None] | None = None

    def extend(self, chunk: bytes) -> None:
        self._data.extend(chunk)
        del self._data[: -self.size]

    def follow(self, stream: asyncio.StreamReader) -> None:
        """Keep reading ``stream`` into the ring in the background until :meth:`stop`."""
        self._task = asyncio.create_task(self._pump(stream))

    async def _pump(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(4096):
            self.extend(chunk)

    def text(self, limit: int = 2000) -> str:
        return self._data.decode(errors="replace").strip()[-limit:]

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None


async def kill_process(proc: asyncio.subprocess.Process, grace: float = 2.0) -> None:
    """SIGKILL a child process and reap it; safe if it is already gone."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(proc.wait(), grace)


async def run_quietly(argv: Sequence[str], timeout: float = 30.0) -> int | None:
    """Run a helper command without blocking the loop; its exit code, or None if it
    could not run or took longer than ``timeout`` (it is then killed)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
    except OSError:
        return None
    try:
        return await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        return None
    finally:
        await kill_process(proc)
