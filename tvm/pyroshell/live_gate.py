"""Who may use a live sandbox: the seam between the live routes and API keys.

The live routes (native and E2B's control plane) ask a :class:`LiveGate` whose
call it is (the owner every sandbox records, ``""`` when keys are off) and
whether a new sandbox may start (rate limits). Two gates:

* :class:`KeyGate`, on the gateway: the caller's TVM API key and its limits;
* :class:`ForwardedGate`, on a worker process behind a gateway: the gateway
  checked the key and admitted the call, and names the owner in
  ``X-TVM-Live-Owner`` (it drops that header from what clients send, so only
  it can set it). A worker listens on loopback, or on a network only the
  gateways reach, like its ``/api/v1/execute``.
"""

from __future__ import annotations

from typing import Protocol

from starlette.requests import HTTPConnection

from tvm.pyroshell.auth import Gatekeeper

OWNER_HEADER = "x-tvm-live-owner"
KEY_QUERY = "api_key"


class LiveGate(Protocol):
    async def owner(self, request: HTTPConnection) -> str:
        """Whose call this is: the owner a sandbox records ("" when keys are off)."""

    async def admit(self, request: HTTPConnection) -> None:
        """Raise :class:`~tvm.errors.CapacityError` when the caller may start nothing now."""


class KeyGate:
    def __init__(self, gate: Gatekeeper) -> None:
        self.gate = gate

    async def owner(self, request: HTTPConnection) -> str:
        given = (
            request.query_params.get(KEY_QUERY) if request.scope["type"] == "websocket" else None
        )
        who = await self.gate.principal(request, given)  # a browser's socket has no headers
        return who.bucket if who.key_id is not None else ""

    async def admit(self, request: HTTPConnection) -> None:
        await self.gate.admit(await self.gate.principal(request))


class ForwardedGate:
    async def owner(self, request: HTTPConnection) -> str:
        return request.headers.get(OWNER_HEADER, "")

    async def admit(self, request: HTTPConnection) -> None:
        """The gateway admitted it before forwarding."""


def live_gate(request: HTTPConnection) -> LiveGate:
    app = getattr(request.app.state, "tvm_gateway_app", request.app)
    gate: LiveGate = app.state.live_gate
    return gate
