"""The runner's exec: ``os.execvpe``'s PATH search and errors, without its imports."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tvm.pyrovm.agent.supervisor import exec_program


def _run(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """exec_program in a forked child: (exit status, the error it raised, if any)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        try:
            exec_program(argv, env)
        except OSError as exc:
            os.write(write, f"{type(exc).__name__} {exc.filename}".encode())
        os._exit(99)
    os.close(write)
    with os.fdopen(read) as pipe:
        error = pipe.read()
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), error


def test_it_searches_path_in_order_and_skips_what_is_missing(tmp_path: Path) -> None:
    script = tmp_path / "bin" / "hello"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\nexit 7\n")
    script.chmod(0o755)
    env = {"PATH": f"/nonexistent:{tmp_path / 'file'}:{script.parent}:/usr/bin"}
    (tmp_path / "file").write_text("")  # a PATH entry that is not a directory
    assert _run(["hello"], env) == (7, "")
    assert _run([str(script)], {}) == (7, "")  # a path is not searched
    assert _run(["true"], {}) == (0, "")  # no PATH: the default one


def test_it_raises_what_execvpe_raises(tmp_path: Path) -> None:
    assert _run(["no-such-program"], {"PATH": str(tmp_path)}) == (
        99, f"FileNotFoundError {tmp_path / 'no-such-program'}")  # fmt: skip
    blocked = tmp_path / "blocked"
    blocked.write_text("#!/bin/sh\n")  # found, but not executable
    env = {"PATH": f"{tmp_path}:/nonexistent"}
    assert _run(["blocked"], env) == (99, f"PermissionError {blocked}")


@pytest.mark.parametrize("module", ["warnings"])
def test_it_imports_nothing(module: str) -> None:
    """What it saves: the import a forked runner would pay for on every stage."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        import sys

        sys.modules.pop(module, None)
        try:
            exec_program(["no-such-program"], {"PATH": "/nonexistent"})
        except OSError:
            pass
        os.write(write, b"imported" if module in sys.modules else b"clean")
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        outcome = pipe.read()
    os.waitpid(pid, 0)
    assert outcome == "clean"
