"""A small async client of Firecracker's API (HTTP/1.1 over a Unix socket).

Each request body is built by one function below, named after the API
resource; the driver sends nothing else, and the tests validate every one of
them against Firecracker's published OpenAPI (Swagger 2.0) spec. Successful
PUT/PATCH calls answer ``204``; failures carry ``{"fault_message": ...}``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tvm.errors import SandboxError

Body = dict[str, Any]


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: Body | None = None


# -- request bodies ------------------------------------------------------------
def machine_config(vcpu_count: int, mem_size_mib: int) -> Call:
    body = {"vcpu_count": vcpu_count, "mem_size_mib": mem_size_mib, "smt": False}
    return Call("PUT", "/machine-config", body)


def boot_source(kernel_image_path: str, boot_args: str) -> Call:
    return Call(
        "PUT", "/boot-source", {"kernel_image_path": kernel_image_path, "boot_args": boot_args}
    )


def drive(drive_id: str, path_on_host: str, *, root: bool, read_only: bool) -> Call:
    body = {
        "drive_id": drive_id,
        "path_on_host": path_on_host,
        "is_root_device": root,
        "is_read_only": read_only,
    }
    return Call("PUT", f"/drives/{drive_id}", body)


def vsock(guest_cid: int, uds_path: str) -> Call:
    return Call("PUT", "/vsock", {"guest_cid": guest_cid, "uds_path": uds_path})


def logger(log_path: str, level: str = "Warning") -> Call:
    return Call("PUT", "/logger", {"log_path": log_path, "level": level, "show_level": True})


def instance_start() -> Call:
    return Call("PUT", "/actions", {"action_type": "InstanceStart"})


def pause() -> Call:
    return Call("PATCH", "/vm", {"state": "Paused"})


def resume() -> Call:
    return Call("PATCH", "/vm", {"state": "Resumed"})


def snapshot_create(snapshot_path: str, mem_file_path: str) -> Call:
    body = {"snapshot_type": "Full", "snapshot_path": snapshot_path, "mem_file_path": mem_file_path}
    return Call("PUT", "/snapshot/create", body)


def snapshot_load(snapshot_path: str, mem_file_path: str, *, resume_vm: bool = True) -> Call:
    body = {
        "snapshot_path": snapshot_path,
        "mem_backend": {"backend_type": "File", "backend_path": mem_file_path},
        "resume_vm": resume_vm,
    }
    return Call("PUT", "/snapshot/load", body)


def describe_instance() -> Call:
    return Call("GET", "/")


# -- the client ------------------------------------------------------------------
@dataclass
class FirecrackerAPI:
    """Talks to one Firecracker process. ``transport`` is for tests (MockTransport)."""

    socket_path: Path
    transport: httpx.AsyncBaseTransport | None = None
    sent: list[Call] = field(default_factory=list)
    _client: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            transport = self.transport or httpx.AsyncHTTPTransport(uds=str(self.socket_path))
            self._client = httpx.AsyncClient(
                transport=transport, base_url="http://localhost", timeout=30.0
            )
        return self._client

    async def send(self, call: Call) -> Body | None:
        self.sent.append(call)
        try:
            response = await self.client().request(call.method, call.path, json=call.body)
        except httpx.HTTPError as exc:
            raise SandboxError(f"firecracker API {call.method} {call.path}: {exc}") from exc
        if response.status_code >= 300:
            try:
                fault = response.json().get("fault_message", response.text)
            except ValueError:
                fault = response.text
            raise SandboxError(
                f"firecracker refused {call.method} {call.path} ({response.status_code}): {fault}"
            )
        if response.status_code == 204 or not response.content:
            return None
        data: Body = response.json()
        return data

    async def wait_ready(self, timeout: float = 5.0) -> None:
        """Poll until the API socket answers (Firecracker creates it at start-up)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.transport is not None or self.socket_path.exists():
                try:
                    await self.client().get("/")
                    return
                except httpx.HTTPError:
                    pass
            if time.monotonic() > deadline:
                raise SandboxError(f"firecracker API socket {self.socket_path} not ready")
            await asyncio.sleep(0.005)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
