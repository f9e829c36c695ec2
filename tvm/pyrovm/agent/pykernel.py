"""A Python code context: one interpreter that keeps its globals between cells.

Stdlib only; runs inside a live sandbox as the program's uid, started by
:mod:`.live_code`. Cells arrive as JSON lines on fd 3; after each one a JSON
line on fd 4 says how it ended: the value of its last expression (``repr``,
as a notebook shows it), or the error with its name, value and traceback.
The cell's own stdout and stderr are the process's fds 1 and 2.
"""

from __future__ import annotations

import ast
import builtins
import json
import os
import sys
import traceback


def run_cell(code: str, namespace: dict, count: int) -> dict:
    name = f"<cell-{count}>"
    result = None
    error = None
    try:
        tree = ast.parse(code, name, "exec")
        last = None
        tail = tree.body[-1] if tree.body else None
        if isinstance(tail, ast.Expr):
            tree.body.pop()
            last = ast.Expression(tail.value)
        exec(compile(tree, name, "exec"), namespace)
        if last is not None:
            value = eval(compile(last, name, "eval"), namespace)
            if value is not None:
                namespace["_"] = value
                result = repr(value)
    except BaseException as exc:  # a cell's failure, SystemExit included, is its result
        tb = exc.__traceback__
        if not isinstance(exc, SyntaxError):
            tb = tb.tb_next if tb is not None else None  # not this function's frame
        error = {
            "name": type(exc).__name__,
            "value": str(exc),
            "traceback": "".join(traceback.format_exception(type(exc), exc, tb)),
        }
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return {"result": result, "error": error, "count": count}


def main() -> None:
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    cells = os.fdopen(3, "rb")
    replies = os.fdopen(4, "wb")
    namespace: dict = {"__name__": "__main__", "__builtins__": builtins}
    for count, line in enumerate(cells, 1):
        request = json.loads(line)
        saved = dict(os.environ)
        os.environ.update(request.get("env") or {})
        try:
            reply = run_cell(request["code"], namespace, count)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        replies.write(json.dumps(reply).encode() + b"\n")
        replies.flush()


if __name__ == "__main__":
    main()
