"""Running the platform's command-line tools (``limactl``, ``kubectl``, ``tail``).

One runner for every command the platform code runs, so that ``--debug`` prints each
one exactly as it is run, and a missing tool is one clear error that says how to
install it.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from tvm.errors import PlatformError, ToolMissing

INSTALL_HINTS = {
    "limactl": (
        "limactl (Lima) is not installed. Install it: on macOS `brew install lima`; "
        "on Linux see https://lima-vm.io/docs/installation/ (a release archive, or your "
        "distribution's package), then run this command again"
    ),
    "kubectl": (
        "kubectl is not installed. Install it from your distribution or "
        "https://kubernetes.io/docs/tasks/tools/, or read a Lima deployment's logs with "
        "--lima (kubectl then runs inside the VM)"
    ),
}


def require(tool: str) -> str:
    """The path of ``tool`` on PATH, or :class:`ToolMissing` saying how to install it."""
    path = shutil.which(tool)
    if path is None:
        raise ToolMissing(INSTALL_HINTS.get(tool, f"{tool} is not installed (not on PATH)"))
    return path


@dataclass
class Runner:
    """Runs commands; with ``debug`` each is printed to stderr first, shell-quoted."""

    debug: bool = False

    def show(self, argv: Sequence[str]) -> None:
        if self.debug:
            print(f"+ {shlex.join(argv)}", file=sys.stderr, flush=True)

    def output(self, argv: Sequence[str]) -> str:
        """Run ``argv`` and return its stdout; a failure is a :class:`PlatformError`."""
        self.show(argv)
        require(argv[0])
        done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise PlatformError(
                f"`{shlex.join(argv)}` failed (exit {done.returncode}): "
                f"{done.stderr.strip() or done.stdout.strip()}"
            )
        return done.stdout

    def run(self, argv: Sequence[str]) -> None:
        """Run ``argv`` with the terminal as its output; a failure is a PlatformError."""
        self.show(argv)
        require(argv[0])
        code = subprocess.run(list(argv), check=False).returncode
        if code != 0:
            raise PlatformError(f"`{shlex.join(argv)}` failed (exit {code})")

    def stream(self, commands: Sequence[Sequence[str]], follow: bool) -> None:
        """Print the output of several commands: one after the other, or, when
        following, all at once until Ctrl-C (or until they all end)."""
        for argv in commands:
            require(argv[0])
        if not follow:
            for argv in commands:
                self.run(argv)
            return
        procs = []
        try:
            for argv in commands:
                self.show(argv)
                procs.append(subprocess.Popen(list(argv)))
            for proc in procs:
                proc.wait()
        except KeyboardInterrupt:
            pass
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
