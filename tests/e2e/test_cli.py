"""The `tvm` command as an operator uses it: run, languages, status, start/stop."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Server, require_languages
from tvm.config.settings import Settings

TVM = [sys.executable, "-m", "tvm.cli"]


def tvm(
    *args: str, stdin: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*TVM, *args], input=stdin, capture_output=True, timeout=120,
                          env={**os.environ, **(env or {})}, check=False)  # fmt: skip


def test_run_locally_passes_stdin_and_args_and_exit_code(
    tmp_path: Path, settings: Settings
) -> None:
    require_languages(settings, "python@3.11")
    program = tmp_path / "prog.py"
    program.write_text("import sys\nprint(input().upper(), sys.argv[1:])\nsys.exit(3)\n")
    stdin = tmp_path / "in.txt"
    stdin.write_text("hello\n")
    done = tvm("run", str(program), "--version", "3.11", "--stdin", str(stdin), "--", "x", "-y")
    assert done.stdout == b"HELLO ['x', '-y']\n", done.stderr
    assert done.returncode == 3


def test_run_against_a_server(tmp_path: Path, settings: Settings) -> None:
    require_languages(settings, "c@12")
    program = tmp_path / "main.c"
    program.write_text('#include <stdio.h>\nint main(void) { puts("from c"); return 0; }\n')
    server = Server(tmp_path, env={"TVM_DRIVER": "namespace"})
    try:
        done = tvm("run", str(program), "--version", "12", "--url", server.url)
    finally:
        server.stop()
    assert done.stdout == b"from c\n", done.stderr
    assert done.returncode == 0


def test_run_reports_compile_errors(tmp_path: Path, settings: Settings) -> None:
    require_languages(settings, "c@12")
    program = tmp_path / "bad.c"
    program.write_text("int main(void) { return 0 }\n")
    done = tvm("run", str(program), "--version", "12")
    assert done.returncode != 0
    assert b"error" in done.stderr


def test_unknown_extension_says_what_to_do(tmp_path: Path) -> None:
    program = tmp_path / "prog.xyz"
    program.write_text("x")
    done = tvm("run", str(program))
    assert done.returncode == 2 and b"--language" in done.stderr


def test_languages_and_status_tables() -> None:
    languages = tvm("languages", env={"COLUMNS": "200"})
    assert languages.returncode == 0
    assert b"python" in languages.stdout and b"c++" in languages.stdout
    status = tvm("status", env={"COLUMNS": "200"})
    assert status.returncode == 0
    for driver in (b"namespace", b"gvisor", b"qemu", b"firecracker"):
        assert driver in status.stdout
    assert b"TVM_DRIVER=" in status.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="tvm start needs root for the namespace driver")
def test_stop_stops_a_running_service(tmp_path: Path, settings: Settings) -> None:
    require_languages(settings, "python@3.11")
    home = tmp_path / "home"
    (home / "images").mkdir(parents=True)
    # Same images, private pid file: point the images dir at the real one.
    (home / "images").rmdir()
    (home / "images").symlink_to(settings.images_dir)
    server = Server(tmp_path, env={"TVM_HOME": str(home), "TVM_DRIVER": "namespace"})
    try:
        done = tvm("stop", env={"TVM_HOME": str(home)})
        assert done.returncode == 0, done.stderr
        assert server.proc.wait(30) is not None
    finally:
        server.stop()
