"""Start the pre-started compiler: run as ``java``, ``javac`` or ``tsc`` at prestart.

The agent runs the language's ``warm_compiler`` command (e.g.
``JAVA_OPTS="..." kotlinc``) with ``warm/serve`` first on its PATH, so the
compiler's own launcher script, whatever it does, ends up running one of
these stand-ins with the exact argv it would give the real program. That
argv is the *prefix* a request must start with to be served warm. The
stand-in starts the server instead (``TvmWarm.java`` for the JVM compilers,
``tsc_serve.js`` for tsc), with the same JVM options, and leaves PATH as it
was.

Stdlib only; runs inside the sandbox as the program's uid.
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
WARM = os.path.join(HERE, "warm")
SERVE_BIN = os.path.join(WARM, "serve")
STDOUT_FD, STDERR_FD = 9, 10  # as in warm.py
# java launcher options that take the next word as their value
_VALUE_OPTIONS = {
    "-cp", "-classpath", "--class-path", "-p", "--module-path", "--upgrade-module-path",
    "--add-modules", "--limit-modules", "--add-reads", "--add-exports", "--add-opens",
    "--patch-module", "--source",
}  # fmt: skip


def split_java(argv: list[str]) -> tuple[list[str], str, list[str]] | None:
    """``java`` argv -> (options, main class, its args); None for ``-jar``/``-m``."""
    i = 0
    while i < len(argv):
        word = argv[i]
        if word in ("-jar", "-m", "--module") or word.startswith("--module="):
            return None
        if word in _VALUE_OPTIONS:
            i += 2
            continue
        if word.startswith("-"):
            i += 1
            continue
        return argv[:i], word, argv[i + 1 :]
    return None


def server_argv(tool: str, argv: list[str]) -> list[str] | None:
    """The server to start for ``tool`` called with ``argv`` (None: cannot)."""
    prefix = [tool, *argv]
    if tool == "tsc":
        return ["node", os.path.join(WARM, "tsc_serve.js"), *prefix] if not argv else None
    if tool == "javac":
        if any(not a.startswith("-J") for a in argv):
            return None
        java_home = os.path.dirname(os.path.dirname(os.path.realpath(_which("javac"))))
        options = [a[2:] for a in argv]
        # What the javac launcher gives its JVM (and javac reads application.home
        # to tell it was started by it: its default class path is then ".").
        options += ["--add-modules", "ALL-DEFAULT", f"-Dapplication.home={java_home}"]
        main, main_args = "com.sun.tools.javac.Main", list[str]()
        java = os.path.join(java_home, "bin", "java")
    else:
        split = split_java(argv)
        if split is None:
            return None
        options, main, main_args = split
        java = _which("java")
    source = os.path.join(WARM, "TvmWarm.java")
    return [java, *options, source, main, str(len(main_args)), *main_args, "--", *prefix]


def _which(name: str) -> str:
    for part in os.environ.get("PATH", "").split(":"):
        if part and part != SERVE_BIN:
            candidate = os.path.join(part, name)
            if os.access(candidate, os.X_OK):
                return candidate
    raise FileNotFoundError(name)


def main() -> None:
    tool, argv = sys.argv[1], sys.argv[2:]
    path = os.environ.get("PATH", "").split(":")
    os.environ["PATH"] = ":".join(p for p in path if p != SERVE_BIN)
    server = server_argv(tool, argv)
    if server is None:
        os._exit(70)
    os.dup2(STDOUT_FD, 1)  # the stage's output, kept aside by warm.py
    os.dup2(STDERR_FD, 2)
    os.closerange(STDOUT_FD, STDERR_FD + 1)
    os.execvp(server[0], server)


if __name__ == "__main__":
    main()
