"""``tvm run --interactive`` for real: stdin from a pipe answered line by line
while the program runs, and a terminal (tmux) where typing reaches the program
and Ctrl-C interrupts it (SIGINT), locally and through a server's WebSocket."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Server, own_database, require_languages
from tvm.config.settings import Settings

pytestmark = pytest.mark.namespace

TVM = [sys.executable, "-m", "tvm.cli"]
ECHO = (
    'import sys\nfor line in sys.stdin:\n    print("got", line.strip(), flush=True)\nprint("end")\n'
)
ASK = """import time
name = input("name? ")
print("hi", name, flush=True)
try:
    time.sleep(30)
except KeyboardInterrupt:
    print("interrupted")
"""


@pytest.fixture(scope="module")
def program_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_languages(Settings(), "python@3.11.2")
    root = tmp_path_factory.mktemp("cli-interactive")
    (root / "echo.py").write_text(ECHO)
    (root / "ask.py").write_text(ASK)
    return root


@pytest.fixture(scope="module")
def cli_server(program_dir: Path) -> Iterator[Server]:
    srv = Server(program_dir, env=own_database(program_dir))
    try:
        yield srv
    finally:
        srv.stop()


def test_piped_stdin_is_answered_while_the_program_runs(program_dir: Path) -> None:
    env = {**os.environ, "TVM_POOL_SIZE": "0", "TVM_POOL_LANGUAGES": "[]"}
    argv = [*TVM, "run", "-i", "-v", "3.11.2", str(program_dir / "echo.py")]
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env) as proc:
        assert proc.stdin and proc.stdout
        try:
            for word in ("one", "two"):
                proc.stdin.write(f"{word}\n".encode())
                proc.stdin.flush()
                assert proc.stdout.readline() == f"got {word}\n".encode()  # before any eof
            proc.stdin.close()
            assert proc.stdout.read() == b"end\n"
            assert proc.wait(60) == 0
        finally:
            proc.kill()


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def screen_shows(session: str, text: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        screen = tmux("capture-pane", "-t", session, "-p")
        if text in screen:
            return screen
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not on the screen:\n{screen}")


@pytest.mark.parametrize("through", ["local", "server"])
def test_terminal_typing_and_ctrl_c(
    program_dir: Path, through: str, request: pytest.FixtureRequest
) -> None:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is missing (apt-get install tmux)")
    url = ["--url", request.getfixturevalue("cli_server").url] if through == "server" else []
    session = f"tvm-test-{os.getpid()}-{through}"
    command = " ".join([*TVM, "run", "-i", "-v", "3.11.2", "--timeout", "20000", *url,
                        str(program_dir / "ask.py"), "; echo EXIT=$?; sleep 60"])  # fmt: skip
    env = ["-e", "TVM_POOL_SIZE=0", "-e", "TVM_POOL_LANGUAGES=[]"]
    tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "30", *env, command)
    try:
        screen_shows(session, "name?")
        tmux("send-keys", "-t", session, "Ada", "Enter")
        screen_shows(session, "hi Ada")
        tmux("send-keys", "-t", session, "C-c")
        screen = screen_shows(session, "EXIT=")
        assert "interrupted" in screen and "EXIT=0" in screen
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
