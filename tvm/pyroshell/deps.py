"""What the gateway's route modules share: the :class:`Gateway` state and the
request dependencies (who is asking). Route modules import this, never the app
factory, so that :mod:`tvm.pyroshell.app` can import every route module."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from tvm.config.catalog import Catalog
from tvm.config.settings import Settings
from tvm.pyroshell.auth import Gatekeeper, Principal
from tvm.pyroshell.dispatcher import Dispatcher
from tvm.pyroshell.store import Store
from tvm.pyroshell.workers import WorkerPool

JUDGE0_TAG = "judge0"  # routes with this tag answer errors in Judge0's shapes


@dataclass
class Gateway:
    """Everything the routes share; ``app.state.gateway``."""

    settings: Settings
    catalog: Catalog
    store: Store
    pool: WorkerPool
    dispatcher: Dispatcher
    gate: Gatekeeper


def gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


async def principal(request: Request) -> Principal:
    """Route dependency: who is asking (401 when a key is required and missing)."""
    found = await gateway(request).gate.principal(request)
    request.state.principal = found
    return found


Who = Annotated[Principal, Depends(principal)]
