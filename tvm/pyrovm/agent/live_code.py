"""Live mode's code contexts: interpreters that keep their state.

Stdlib only (inside the sandbox). Each context is a :mod:`.pykernel` process
(Python) or a Node.js process running :mod:`.jskernel` (JavaScript, where the
image has ``node``)
running as the program's uid (started like any live process); a cell's
stdout and stderr are sent as events of its request while it runs, then the
reply says how it ended. One cell at a time per context; several contexts
per sandbox; ``ctx_restart`` gives a context a fresh interpreter.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import select
import shutil
import signal
import threading

from . import jskernel
from .live_base import LiveError, as_user

KERNEL = "import sys; sys.path.insert(0, '/.tvm'); from tvm_agent.pykernel import main; main()"
KERNELS = {"python": ["python3", "-c", KERNEL], "javascript": ["node", "-e", jskernel.SOURCE]}
LANGUAGES = tuple(KERNELS)


class Context:
    def __init__(self, ident: str, language: str, cwd: str) -> None:
        self.id = ident
        self.language = language
        self.cwd = cwd
        self.pid = 0
        self.cells_w = -1
        self.replies: object = None
        self.out_r = -1
        self.err_r = -1
        self.lock = threading.Lock()

    def describe(self) -> dict:
        return {"ctx": self.id, "language": self.language, "cwd": self.cwd}


class Contexts:
    def __init__(self, live) -> None:
        self.live = live
        self.contexts: dict[str, Context] = {}
        self.ids = itertools.count(1)

    def handler(self, op: str):
        return getattr(self, f"op_{op}", None)

    def _start(self, ctx: Context) -> None:
        cells_r, cells_w = os.pipe()
        replies_r, replies_w = os.pipe()
        for fd in (cells_w, replies_r):
            os.set_inheritable(fd, False)
        env = dict(self.live.env)
        try:
            pid, _, out_r, err_r = self.live.spawn(
                KERNELS[ctx.language], env, ctx.cwd, False, (cells_r, replies_w)
            )
        finally:
            os.close(cells_r)
            os.close(replies_w)
        ctx.pid, ctx.cells_w, ctx.out_r, ctx.err_r = pid, cells_w, out_r, err_r
        ctx.replies = os.fdopen(replies_r, "rb")

    def _stop(self, ctx: Context) -> None:
        if ctx.pid:
            with self.live.priv, as_user(self.live.uid, self.live.gid):
                try:
                    os.killpg(ctx.pid, signal.SIGKILL)
                except OSError:
                    pass
            self.live.wait_status(ctx.pid, 5.0)
        for fd in (ctx.cells_w, ctx.out_r, ctx.err_r):
            if fd >= 0:
                os.close(fd)
        if ctx.replies is not None:
            ctx.replies.close()  # type: ignore[attr-defined]
        ctx.pid, ctx.cells_w, ctx.out_r, ctx.err_r, ctx.replies = 0, -1, -1, -1, None

    def _context(self, message: dict) -> Context:
        ident = str(message.get("ctx") or "")
        ctx = self.contexts.get(ident)
        if ctx is None:
            raise LiveError("not_found", f"context {ident!r} not found")
        return ctx

    # -- operations ------------------------------------------------------------
    def op_ctx_create(self, message: dict) -> dict:
        language = str(message.get("language") or "python")
        if language not in LANGUAGES:
            raise LiveError("invalid", f"language: {language!r} is not one of {list(LANGUAGES)}")
        program = KERNELS[language][0]
        if shutil.which(program, path=self.live.env.get("PATH")) is None:
            raise LiveError(
                "conflict",
                f"language: {language} contexts need {program} in the sandbox's image, which "
                "has none; create the sandbox from the template code-interpreter-v1",
            )
        cwd = self.live.files.resolve(message.get("cwd") or self.live.home)
        ident = str(message.get("ctx") or f"ctx-{next(self.ids)}")
        if ident in self.contexts:
            raise LiveError("already_exists", f"context {ident!r} already exists")
        ctx = Context(ident, language, cwd)
        self._start(ctx)
        self.contexts[ident] = ctx
        return ctx.describe()

    def op_ctx_list(self, message: dict) -> dict:
        return {"contexts": [ctx.describe() for ctx in list(self.contexts.values())]}

    def op_ctx_delete(self, message: dict) -> dict:
        ctx = self._context(message)
        self.contexts.pop(ctx.id, None)
        self._stop(ctx)
        return {}

    def op_ctx_restart(self, message: dict) -> dict:
        ctx = self._context(message)
        self._stop(ctx)
        with ctx.lock:
            self._start(ctx)
        return ctx.describe()

    def op_ctx_interrupt(self, message: dict) -> dict:
        ctx = self._context(message)
        if ctx.pid:
            with self.live.priv, as_user(self.live.uid, self.live.gid):
                os.kill(ctx.pid, signal.SIGINT)
        return {}

    def op_ctx_exec(self, message: dict) -> dict:
        ctx = self._context(message)
        rid = message.get("id")
        request = {"code": str(message.get("code", "")), "env": message.get("env") or {}}
        with ctx.lock:
            if not ctx.pid:
                self._start(ctx)
            data = memoryview(json.dumps(request).encode() + b"\n")
            try:
                while data:
                    data = data[os.write(ctx.cells_w, data) :]
            except BrokenPipeError:
                return self._died(ctx)
            replies = ctx.replies
            reply_fd = replies.fileno()  # type: ignore[attr-defined]
            streams = {ctx.out_r: "stdout", ctx.err_r: "stderr"}
            while True:
                ready, _, _ = select.select([*streams, reply_fd], [], [])
                for fd in ready:
                    if fd in streams:
                        self._pump(rid, fd, streams[fd])
                if reply_fd in ready:
                    line = replies.readline()  # type: ignore[attr-defined]
                    if not line:
                        return self._died(ctx)
                    for fd, kind in streams.items():  # what was written before it
                        while select.select([fd], [], [], 0)[0] and self._pump(rid, fd, kind):
                            pass
                    return json.loads(line)

    def _pump(self, rid: object, fd: int, kind: str) -> bool:
        data = os.read(fd, 65536)
        if data:
            self.live.event(id=rid, kind=kind, data=base64.b64encode(data).decode())
        return bool(data)

    def _died(self, ctx: Context) -> dict:
        self._stop(ctx)  # the next cell starts a fresh interpreter
        error = {
            "name": "DeadKernelError",
            "value": "the context's interpreter exited; its state is lost",
            "traceback": "",
        }
        return {"result": None, "error": error, "count": 0}
