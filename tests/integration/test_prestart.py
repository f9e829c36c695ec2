"""The pre-started interpreter is indistinguishable from a fresh `python3 main.py`.

The same introspective programs run once with a fresh interpreter (exec) and
once in a forked child of the agent's interpreter; everything a program can
observe must be identical: __main__, argv, modules, sys.path, flags, env,
signal handlers, ids, capabilities, stdio, exit codes, tracebacks, atexit.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import require_languages
from tvm.api import CodeExecutionRequest, build_job
from tvm.config.catalog import load_catalog
from tvm.config.settings import Settings

pytestmark = pytest.mark.usefixtures("no_leaks")

INTROSPECT = r"""
import sys, os, signal
print(__name__, __file__, sys.argv, sys.orig_argv, sys.executable)
print(sorted(sys.modules))
print(sys.path)
print(sys.flags)
print(sorted(os.environ.items()))
print([signal.getsignal(s) for s in (signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ,
                                     signal.SIGCHLD, signal.SIGTERM)])
print(os.getuid(), os.geteuid(), os.getgid(), os.getgroups(), os.getcwd())
print(sorted(globals()))
print(type(__loader__).__name__, __spec__, __package__, __cached__, __doc__)
status = open('/proc/self/status').read()
print([line for line in status.splitlines() if line.startswith(('Cap', 'NoNewPrivs', 'Seccomp'))])
print(sorted(os.listdir('/proc/self/fd')))
print(sys.stdin.isatty(), sys.stdout.isatty(), sys.stdout.encoding, sys.stdout.line_buffering)
import atexit
atexit.register(lambda: print("atexit ran"))
import threading
threading.Thread(target=lambda: print("thread ran")).start()
print(input(), sys.stdin.read())
"""

PROGRAMS = {
    "introspect": INTROSPECT,
    "traceback": "def f():\n    raise ValueError('boom')\nf()\n",
    "exit-message": "import sys\nsys.exit('bye')\n",
    "exit-code": "import sys\nprint('x', end='')\nsys.exit(42)\n",
    "syntax-error": "def f(:\n    pass\n",
    "doc-and-annotations": '"""doc"""\nx: int = 1\nprint(__doc__, __annotations__)\n',
    "finalizer": "class A:\n    def __del__(self):\n        print('finalized')\na = A()\n",
    "recursion": "import sys\ndef f(n):\n    return f(n + 1)\ntry:\n    f(0)\nexcept RecursionError:\n    print('recursion error')\n",
}


async def run_both(settings: Settings, program: str) -> tuple[dict[str, Any], dict[str, Any]]:
    from tvm.pyrovm.drivers.namespace import NamespaceDriver
    from tvm.pyrovm.engine import Engine

    results = []
    for prestart in (False, True):
        own = settings.model_copy(update={"prestart": prestart})
        engine = Engine(own, load_catalog(), NamespaceDriver(own))
        request = CodeExecutionRequest(
            language="python", version="3.11", code=program, stdin="line one\nrest\n",
            args=["a", "b c"],
        )  # fmt: skip
        try:
            response = await engine.execute(build_job(request, own))
        finally:
            await engine.close()
        assert response.run is not None
        results.append(response.run.model_dump())
    return results[0], results[1]


@pytest.mark.parametrize("name", sorted(PROGRAMS))
async def test_prestarted_python_is_indistinguishable(settings: Settings, name: str) -> None:
    require_languages(settings, "python@3.11")
    fresh, prestarted = await run_both(settings, PROGRAMS[name])
    for key in ("status", "stdout", "stderr", "exit_code", "signal"):
        assert prestarted[key] == fresh[key], f"{key} differs for {name}"
    if name == "introspect":
        assert "tvm_agent" not in fresh["stdout"]
        assert "atexit ran" in fresh["stdout"] and "thread ran" in fresh["stdout"]


async def test_prestarted_interpreter_does_not_pay_a_second_startup(settings: Settings) -> None:
    """Not a timing assertion: CPU time of a trivial program is counted from the fork."""
    require_languages(settings, "python@3.11")
    fresh, prestarted = await run_both(settings, "print(1)\n")
    assert fresh["stdout"] == prestarted["stdout"] == "1\n"
    assert prestarted["cpu_ms"] <= fresh["cpu_ms"]
