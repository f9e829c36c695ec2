"""Piston's real clients, unchanged, against a real ``tvm start``: npm ``piston-client``
(on the machine's Node.js; ``.ci/run`` installs it into tests/e2e/clients) and PyPI
``ultra-piston``: runtimes, several languages, stdin/args, a compile error (whose
``run`` repeats it), a run timeout, float and 0 timeouts, Piston's error messages."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server
from tests.e2e.piston_stack import start_tvm

pytestmark = [pytest.mark.namespace, pytest.mark.slow]
CLIENTS = Path(__file__).with_name("clients")
LANGUAGES = ("python@3.13.5", "c@14.2.0", "javascript@20.19.2", "bash@5.2.15")


@pytest.fixture(scope="module")
def tvm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from start_tvm(tmp_path_factory.mktemp("piston-clients"), *LANGUAGES)


@pytest.fixture(scope="module")
def node_results(tvm: Server) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed (.ci/run installs it)")
    if not (CLIENTS / "node_modules" / "piston-client").is_dir():
        pytest.skip(f"piston-client is not installed: run `npm install --prefix {CLIENTS}`")
    done = subprocess.run([node, "piston_client.mjs", tvm.url], cwd=CLIENTS, text=True,
                          capture_output=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    results: dict[str, Any] = json.loads(done.stdout)
    return results


def test_node_runtimes(node_results: dict[str, Any]) -> None:
    offered = {(r["language"], r["version"]) for r in node_results["runtimes"]}
    assert {tuple(key.split("@")) for key in LANGUAGES} <= offered
    assert all(isinstance(r["aliases"], list) for r in node_results["runtimes"])


def test_node_languages_stdin_and_args(node_results: dict[str, Any]) -> None:
    assert node_results["python"]["run"]["stdout"] == "hello ['a', 'b c']\n"
    assert node_results["default_args"]["run"]["stdout"] == "['1', '2', '3']\n"
    assert node_results["javascript"]["run"]["stdout"] == "42\n"
    assert node_results["bash"]["run"]["stdout"] == "got it\n"
    c = node_results["c"]
    assert c["compile"]["code"] == 0 and c["run"]["stdout"] == "hi from c\n"


def test_node_runs_the_first_file_by_its_name(node_results: dict[str, Any]) -> None:
    assert node_results["named_files"]["run"]["stdout"] == "solution.py 7\n"


def test_node_stdin_ends_with_a_newline_as_in_piston(node_results: dict[str, Any]) -> None:
    assert node_results["stdin_newline"]["run"]["stdout"] == "'a\\nb\\n'\n"
    assert node_results["stdin_kept"]["run"]["stdout"] == "'a\\n'\n"
    assert node_results["stdin_none"]["run"]["stdout"] == "'\\n'\n"


def test_node_compile_error_is_repeated_as_run(node_results: dict[str, Any]) -> None:
    failed = node_results["compile_error"]
    assert failed["compile"]["code"] != 0 and "error" in failed["compile"]["stderr"]
    assert failed["run"] == failed["compile"]
    assert "error" in failed["run"]["output"]


def test_node_timeouts(node_results: dict[str, Any]) -> None:
    run = node_results["timeout"]["run"]
    assert (run["status"], run["signal"], run["message"]) == (
        "TO",
        "SIGKILL",
        "Time limit exceeded",
    )
    assert 400 <= run["wall_time"] < 3000
    assert node_results["float_timeouts"]["run"]["stdout"] == "ok\n"


def test_node_sees_pistons_messages(node_results: dict[str, Any]) -> None:
    assert node_results["bad_limit"] == {
        "message": "run_timeout cannot exceed the configured limit of 30000"}  # fmt: skip
    assert node_results["unknown"] == {"message": "python-0.0.1 runtime is unknown"}


@pytest.fixture(scope="module")
def ultra(tvm: Server) -> Any:
    ultra_piston = pytest.importorskip("ultra_piston", reason="ultra-piston is a dev extra")
    return ultra_piston.PistonClient(base_url=f"{tvm.url}/api/v2/", rate_limit=0)


def test_ultra_piston(ultra: Any) -> None:
    from ultra_piston import File
    from ultra_piston.errors import BadRequestError

    runtimes = {(r.language, r.version) for r in ultra.get_runtimes()}
    assert ("python", "3.13.5") in runtimes
    out = ultra.post_execute("python", "3", File(content="import sys; print(input(), sys.argv[1:])"),
                             stdin="in", args=["x"], run_timeout=2500.5, compile_timeout=0)  # fmt: skip
    assert out.language == "python" and out.run.stdout == "in ['x']\n"
    out = ultra.post_execute(
        "javascript", "*", File(name="index.js", content="console.log(__filename)")
    )
    assert out.run.stdout == "/work/index.js\n"
    out = ultra.post_execute("javascript", "*", File(content="console.log([1,2].map(x => x * 2))"))
    assert out.run.stdout == "[ 2, 4 ]\n"
    out = ultra.post_execute("c", "14", File(name="main.c", content="int main( {"))
    assert out.compile is not None and out.compile.code != 0
    assert out.run.output == out.compile.output and "error" in out.run.output
    out = ultra.post_execute("bash", "*", File(content="sleep 5"), run_timeout=300)
    assert out.run.signal == "SIGKILL" and out.run.code is None
    with pytest.raises(BadRequestError):
        ultra.post_execute("python", "0.0.1", File(content="print(1)"))
    packages = ultra.get_packages()
    assert any(p.language == "python" and p.installed for p in packages)
