"""Run a Python script in a forked child of the agent: the pre-started interpreter.

The agent is itself a Python interpreter started exactly as ``python3`` would
be for a script (same binary, flags and environment), so for Python programs
it forks and runs the script in the child instead of exec'ing a second
interpreter. Before the user's code runs, the child is made indistinguishable
from ``python3 main.py ARGS``:

* every module the agent imported after start-up is dropped from
  ``sys.modules`` (the baseline is recorded before the agent imports anything);
* ``sys.argv``, ``sys.orig_argv``, ``sys.path[0]`` and ``os.environ`` are the
  script's; signal handlers are Python's start-up defaults;
* the script runs in a fresh ``__main__`` module with ``__file__`` set;
* an uncaught exception prints the same traceback (without this module's
  frame) and exits 1; ``SystemExit`` behaves as in CPython; at the end,
  non-daemon threads are joined, ``atexit`` handlers run and stdio is flushed.

Stdlib only; runs in the child after it dropped to the program's uid.
"""

from __future__ import annotations

import _signal
import os
import sys

TYPE_CHECKING = False  # the agent must not import typing at start-up (it costs ms)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

# The agent's modules, once out of sys.modules (see run_script).
_DROPPED: list[object] = []
# Captured now: the child deletes the agent's modules before running user code.
_ctypes_prctl: Callable[..., Any] | None = None


def _keep_dumpable() -> None:
    """A uid change made the child non-dumpable; a normal exec would not be."""
    if _ctypes_prctl is not None:
        _ctypes_prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE


def bind_prctl(prctl: Callable[..., Any]) -> None:
    global _ctypes_prctl
    _ctypes_prctl = prctl


def _exit_code(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        print(code, file=sys.stderr)
    except Exception:
        pass
    return 1


def _finish(code: int, main_dict: dict) -> None:
    """What the interpreter does at exit, then leave without unwinding the agent."""
    try:
        threading = sys.modules.get("threading")
        if threading is not None:
            threading._shutdown()
    except BaseException:
        pass
    try:
        import atexit

        atexit._run_exitfuncs()
    except BaseException:
        pass
    try:
        main_dict.clear()  # let module globals' finalizers run, as at shutdown
    except BaseException:
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except BrokenPipeError:
            code = code or 120
        except BaseException:
            pass
    os._exit(code)


def run_script(script: str, args: list[str], env: dict[str, str], baseline: set[str]) -> None:
    """Become ``python3 SCRIPT ARGS`` and run it; never returns."""
    _keep_dumpable()
    for sig, handler in (  # _signal: see supervisor.FORKED_CHILD_NOTE
        (_signal.SIGINT, _signal.default_int_handler),
        (_signal.SIGPIPE, _signal.SIG_IGN),
        (_signal.SIGXFSZ, _signal.SIG_IGN),
        (_signal.SIGCHLD, _signal.SIG_DFL),
        (_signal.SIGTERM, _signal.SIG_DFL),
    ):
        _signal.signal(sig, handler)
    os.environ.clear()
    os.environ.update(env)

    path = os.path.abspath(script)
    try:
        with open(path, "rb") as fh:
            source = fh.read()
    except OSError as exc:
        print(
            f"{sys.executable}: can't open file {path!r}: [Errno {exc.errno}] {exc.strerror}",
            file=sys.stderr,
        )
        os._exit(2)

    loader_cls = sys.modules["_frozen_importlib_external"].SourceFileLoader
    main = type(sys)("__main__")
    main.__dict__.update(
        __file__=path,
        __loader__=loader_cls("__main__", path),
        __builtins__=sys.modules["builtins"],
        __spec__=None,
        __cached__=None,
        __package__=None,
        __annotations__={},
    )
    sys.modules["__main__"] = main
    # Out of sys.modules, but kept alive: a module freed here would free all its
    # objects, writing to (and so copying) every page they are on, for nothing:
    # the process ends with os._exit.
    _DROPPED.extend(sys.modules.pop(name) for name in list(sys.modules) if name not in baseline)
    sys.argv = [script, *args]
    sys.orig_argv = [sys.orig_argv[0], script, *args]
    sys.path[0] = os.path.dirname(path)
    sys.path_importer_cache.pop("", None)

    code = 0
    try:
        compiled = compile(source, path, "exec", dont_inherit=True)
        exec(compiled, main.__dict__)
    except SystemExit as exc:
        code = _exit_code(exc)
    except BaseException as exc:
        tb = exc.__traceback__
        exc.__traceback__ = tb.tb_next if tb is not None else None  # drop this frame
        sys.excepthook(type(exc), exc, exc.__traceback__)
        code = 130 if isinstance(exc, KeyboardInterrupt) else 1
    _finish(code, main.__dict__)
