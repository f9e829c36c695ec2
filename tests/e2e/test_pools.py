"""Warm pools in the real service: used, refilled, sized, and all gone at stop."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.conftest import Server, require_languages, sandbox_cgroups, sandbox_processes
from tvm.config.settings import Settings


def warm(server: Server) -> dict[str, Any]:
    """The sandbox stats of the gateway's embedded worker."""
    with server.client() as client:
        body: dict[str, Any] = client.get("/health").json()
    return dict(body["embedded"]["sandboxes"])


def test_pools_warm_up_refill_and_leave_nothing_at_stop(tmp_path: Path, settings: Settings) -> None:
    require_languages(settings, "python@3.11")
    server = Server(
        tmp_path,
        env={"TVM_POOL_SIZE": "1", "TVM_POOL_LANGUAGES": json.dumps(["bash"]),
             "TVM_DRIVER": "namespace"},
    )  # fmt: skip
    try:
        body = {"language": "python", "version": "3.11", "files": [{"content": "print(6 * 7)"}]}
        with server.client() as client:
            for _ in range(5):
                reply = client.post("/api/v2/execute", json=body).json()
                assert reply["run"]["stdout"] == "42\n", reply
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            stats = warm(server)
            if stats.get("warm", {}).get("python@3.11.2") and stats.get("warm", {}).get(
                "bash@5.2.15"
            ):
                break
            time.sleep(0.2)
        assert stats["warm"]["python@3.11.2"] >= 1  # used, so kept warm
        assert stats["warm"]["bash@5.2.15"] >= 1  # pinned, warm though unused
        assert stats["sandboxes"] <= stats["capacity"]
    finally:
        server.stop()
    deadline = time.monotonic() + 10
    while (sandbox_processes(settings) or sandbox_cgroups()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not sandbox_processes(settings)
    assert not sandbox_cgroups(), "warm sandboxes must be destroyed when the service stops"
