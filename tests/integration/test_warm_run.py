"""An interpreter pre-started in a warm sandbox gives exactly what a cold one gives.

For every language whose catalog entry has ``warm_run`` (node), the same
programs are run twice in real sandboxes taken from the warm pool: once by the
pre-started interpreter, once cold (``prestart_compilers`` off). stdout,
stderr, status, exit code and signal must be byte for byte the same: hello
world, a realistic program reading its input and arguments, an uncaught
exception's stack trace, what the program can see of how it was started (its
argv and execArgv, its module cache, its descriptors, its limits), an exit
code, a signal, and the stage's limits (CPU time, file size) biting as they
bite cold. The warm side must really have been served by the pre-started
interpreter (the stage reply says so), or the comparison would prove nothing.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tests.conftest import require_languages, warm_pool
from tvm.config.catalog import Language, StageLimits, load_catalog
from tvm.config.settings import Settings
from tvm.pyrovm.engine import run_argv

pytestmark = pytest.mark.usefixtures("no_leaks")

STDIN = "3\n10 20 30\nhello world\n"
ARGS = ["first", "second arg", "ü"]
# The CPU line of /proc/self/limits differs by design: the pre-started
# interpreter's CPU limit is what it used starting up plus the stage's.
INTROSPECT = """
const fs = require("fs");
const limits = fs.readFileSync("/proc/self/limits", "utf8")
  .split("\\n").filter((line) => !line.startsWith("Max cpu time")).join("\\n");
console.log(JSON.stringify({
  argv: process.argv, execArgv: process.execArgv, argv0: process.argv0,
  cache: Object.keys(require.cache), main: require.main === module,
  id: module.id, parent: module.parent, paths: module.paths,
  cwd: process.cwd(), uid: process.getuid(), gid: process.getgid(),
  env: process.env, fds: fs.readdirSync("/proc/self/fd"),
  stdin: fs.fstatSync(0).size, stdinType: process.stdin.constructor.name,
  limits, title: process.title, umask: process.umask(),
}, null, 1));
"""
PROGRAMS = {
    "hello": 'console.log("hello");\n',
    "realistic": 'const fs = require("fs");\n\n'
    "function sum(xs) {\n  return xs.reduce((a, b) => a + b, 0);\n}\n"
    'const shout = (s) => s.toUpperCase() + "!";\n'
    'const lines = fs.readFileSync(0, "utf8").split("\\n");\n'
    'console.log(`${sum(lines[1].split(" ").map(Number))} ${shout(lines[2])}`);\n'
    'console.log(process.argv.slice(2).join("|"));\n',
    "dev-stdin": 'process.stdout.write(require("fs").readFileSync("/dev/stdin"));\n',
    "stream-stdin": 'process.stdin.on("data", (d) => process.stdout.write(d.toString().toUpperCase()));\n',
    "exception": "function f(d) {\n"
    '  if (d === 0) throw new Error("boom");\n  f(d - 1);\n}\nf(3);\n',
    "introspect": INTROSPECT,
    "exit-code": 'console.error("bye");\nprocess.exit(3);\n',
    "signal": 'console.log("before");\nprocess.kill(process.pid, "SIGTERM");\n',
    "esm-syntax": "import fs from 'fs';\n",  # a CommonJS main.js: the same SyntaxError
}
LANGUAGES = [lang.key for lang in load_catalog().languages if lang.warm_run]


def stage(reply: Any) -> dict[str, Any]:
    return {
        "status": reply.status,
        "exit_code": reply.exit_code,
        "signal": reply.signal,
        "stdout": reply.stdout,
        "stderr": reply.stderr,
    }


async def run(
    settings: Settings, lang: Language, code: str, limits: StageLimits | None = None
) -> tuple[bool, dict[str, Any]]:
    """Run ``code`` in a sandbox taken from the warm pool: (served warm, result)."""
    files = [(lang.source_file, code.encode(), 0o644)]
    async with warm_pool(settings, lang, 60) as manager, manager.sandbox(lang) as sandbox:
        manager.set_pool_target(lang, 0)  # taken: make no other
        reply = await sandbox.run_stage(
            "run", run_argv(lang, [], ARGS), STDIN.encode(),
            limits or lang.run_limits.default, files=files,
        )  # fmt: skip
    return bool(reply.warm), stage(reply)


def test_the_catalog_pre_starts_node_for_javascript() -> None:
    assert LANGUAGES and all(key.startswith("javascript@") for key in LANGUAGES)


@pytest.mark.parametrize("key", LANGUAGES)
async def test_a_prestarted_interpreter_gives_what_a_cold_one_gives(
    settings: Settings, key: str
) -> None:
    (lang,) = require_languages(settings, key)
    cold_settings = settings.model_copy(update={"prestart_compilers": False})
    for name, code in PROGRAMS.items():
        served_cold, cold = await run(cold_settings, lang, code)
        served_warm, warm = await run(settings, lang, code)
        assert not served_cold, f"{name}: the cold side was served warm"
        assert served_warm, f"{name}: the pre-started interpreter did not serve the run"
        assert warm == cold, f"{key} {name}: warm and cold differ"
        if name == "hello":
            assert cold["stdout"] == b"hello\n" and cold["status"] == "ok"
        if name == "realistic":
            assert cold["stdout"] == "60 HELLO WORLD!\nfirst|second arg|ü\n".encode()
        if name in ("dev-stdin", "stream-stdin"):
            expected = STDIN.upper() if name == "stream-stdin" else STDIN
            assert cold["stdout"] == expected.encode(), cold
        if name == "exception":
            assert cold["status"] == "runtime_error" and b"Error: boom" in cold["stderr"]
            assert b"at f (/work/main.js:2" in cold["stderr"]
            assert b"node_run" not in cold["stderr"]
        if name == "introspect":
            assert b'"execArgv": []' in cold["stdout"] and b"node_run" not in cold["stdout"]
        if name == "exit-code":
            assert (cold["exit_code"], cold["stderr"]) == (3, b"bye\n")
        if name == "signal":
            assert cold["signal"] == "SIGTERM" and cold["stdout"] == b"before\n"


@pytest.mark.parametrize("key", LANGUAGES[:1])
async def test_the_stage_limits_bite_a_prestarted_interpreter_as_a_cold_one(
    settings: Settings, key: str
) -> None:
    """It starts under the run stage's maximum rlimits and takes the stage's
    own at its go: a file past the stage's size limit and a loop past its CPU
    time end as they do cold."""
    (lang,) = require_languages(settings, key)
    cold_settings = settings.model_copy(update={"prestart_compilers": False})
    small = dataclasses.replace(lang.run_limits.default, file_size_kb=64, cpu_time_ms=500)
    cases = {
        "file-size": 'require("fs").writeFileSync("/tmp/big", Buffer.alloc(1 << 20));\n',
        "cpu-time": "for (;;) {}\n",
    }
    for name, code in cases.items():
        served_cold, cold = await run(cold_settings, lang, code, small)
        served_warm, warm = await run(settings, lang, code, small)
        assert served_warm and not served_cold, name
        assert warm == cold, f"{name}: warm and cold differ"
        if name == "file-size":
            assert cold["signal"] == "SIGXFSZ" or b"EFBIG" in cold["stderr"], cold
        if name == "cpu-time":
            assert cold["status"] == "timeout", cold


async def test_a_run_with_too_little_memory_for_the_waiting_interpreter_runs_cold(
    settings: Settings,
) -> None:
    """A memory limit below twice what the waiting node holds: the agent ends
    it before the stage's limits are set, and the program runs cold."""
    (lang,) = require_languages(settings, LANGUAGES[0])
    limits = dataclasses.replace(lang.run_limits.default, memory_mb=lang.warm_memory_mb)
    served, result = await run(settings, lang, PROGRAMS["hello"], limits)
    assert not served and result["stdout"] == b"hello\n" and result["status"] == "ok"
