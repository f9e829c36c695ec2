"""E2B compatibility: E2B's own SDKs, unchanged, against a TVM gateway.

* :mod:`.control`: the control plane (``E2B_API_URL``), on the gateway's app;
* :mod:`.envd` and :mod:`.interpreter`: what runs "inside" a sandbox
  (``E2B_SANDBOX_URL``, the same origin): a request that names a sandbox in
  ``E2b-Sandbox-Id`` goes to the daemon's routes, or to the code
  interpreter's when ``E2b-Sandbox-Port`` is 49999; both act on the live
  sandbox through the embedded worker's :class:`~tvm.pyrovm.live.LiveManager`.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from tvm.pyroshell.e2b import control, envd, interpreter
from tvm.pyroshell.e2b.sandboxes import INTERPRETER_PORT, PORT_HEADER, SANDBOX_HEADER
from tvm.pyroshell.e2b.watch import Watchers


class SandboxRouter:
    """ASGI middleware: requests naming a sandbox go to its daemon or interpreter."""

    def __init__(self, app: ASGIApp, envd_app: ASGIApp, interpreter_app: ASGIApp) -> None:
        self.app = app
        self.envd_app = envd_app
        self.interpreter_app = interpreter_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or ())
            if SANDBOX_HEADER.encode() in headers:
                port = headers.get(PORT_HEADER.encode(), b"")
                target = (
                    self.interpreter_app
                    if port == str(INTERPRETER_PORT).encode()
                    else self.envd_app
                )
                await target(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _sub_app(app: FastAPI, router_factory: object) -> FastAPI:
    sub = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    sub.include_router(router_factory())  # type: ignore[operator]
    sub.state.tvm_gateway_app = app
    sub.state.watchers = Watchers()  # the daemon's directory watchers
    return sub


def install(app: FastAPI) -> None:
    """Serve E2B's control plane and in-sandbox APIs on the gateway ``app``."""
    app.state.tvm_gateway_app = app
    app.include_router(control.router())
    app.add_middleware(
        SandboxRouter,
        envd_app=_sub_app(app, envd.router),
        interpreter_app=_sub_app(app, interpreter.router),
    )
