"""The JavaScript context's kernel, run by the host's Node.js over the same
fds as in a sandbox (cells on fd 3, replies on fd 4)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tvm.pyrovm.agent import jskernel

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")


class Kernel:
    def __init__(self) -> None:
        cells_r, self.cells_w = os.pipe()
        self.replies_r, replies_w = os.pipe()
        script = f'exec node -e "$1" 3<&{cells_r} 4>&{replies_w} {cells_r}<&- {replies_w}>&-'
        self.proc = subprocess.Popen(
            ["bash", "-c", script, "bash", jskernel.SOURCE], pass_fds=(cells_r, replies_w),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        os.close(cells_r)
        os.close(replies_w)
        self.replies = os.fdopen(self.replies_r, "rb")

    def run(self, code: str, env: dict[str, str] | None = None) -> dict[str, Any]:
        os.write(self.cells_w, json.dumps({"code": code, "env": env or {}}).encode() + b"\n")
        reply: dict[str, Any] = json.loads(self.replies.readline())
        return reply

    def close(self) -> tuple[bytes, bytes]:
        """End of input: the kernel exits; what it printed."""
        os.close(self.cells_w)
        self.cells_w = -1
        out, err = self.proc.communicate(timeout=30)
        return out, err

    def dispose(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=30)  # closes its pipes
        if self.cells_w >= 0:
            os.close(self.cells_w)
        self.replies.close()


@pytest.fixture
def kernel() -> Iterator[Kernel]:
    k = Kernel()
    try:
        yield k
    finally:
        k.dispose()


def test_state_results_and_errors(kernel: Kernel) -> None:
    assert kernel.run("const a = 20; let b = 1; function twice(n) { return 2 * n }") == {
        "result": None, "error": None, "count": 1,
    }  # fmt: skip
    assert kernel.run("twice(a) + b")["result"] == "41"
    assert kernel.run("'text'")["result"] == "'text'"
    assert kernel.run("_ + 1")["result"] == "'text1'"  # the last value, as in Node's REPL
    assert kernel.run("Promise.resolve([1, 2])")["result"] == "[ 1, 2 ]"
    error = kernel.run("undefinedName + 1")["error"]
    assert (error["name"], error["value"]) == ("ReferenceError", "undefinedName is not defined")
    assert "<cell-6>" in error["traceback"]
    syntax = kernel.run("let = = 1")["error"]
    assert syntax["name"] == "SyntaxError"
    assert kernel.run("throw 'plain'")["error"]["value"] == "'plain'"
    assert kernel.run("process.env.GREETING", env={"GREETING": "hej"})["result"] == "'hej'"
    assert kernel.run("typeof process.env.GREETING")["result"] == "'undefined'"
    assert kernel.run("a")["count"] == 11


def test_output_comes_before_the_reply(kernel: Kernel) -> None:
    kernel.run("console.log('one'); console.error('two')")
    kernel.run("setTimeout(() => { throw new Error('later') }, 0); 1")
    assert kernel.run("2")["result"] == "2"  # the timer's throw did not end the context
    out, err = kernel.close()
    assert out == b"one\n"
    assert b"two\n" in err and b"Uncaught Error: later" in err
