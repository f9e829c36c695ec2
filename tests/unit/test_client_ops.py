"""tvm.client: its operations over a mock transport (shapes, errors), and the
two clients offering the same methods."""

from __future__ import annotations

import asyncio
import inspect
import json

import httpx
import pytest

from tvm.client import AsyncClient, Client, aio, ops, sync
from tvm.errors import (
    CapacityError,
    InvalidRequest,
    LiveOperationError,
    NotFound,
    SandboxEnded,
    TVMError,
)

INFO = {"id": "sb1", "template": "base", "language": "python", "version": "3.11.2",
        "started_at": "2026-01-01T00:00:00Z", "end_at": "2026-01-01T00:05:00Z",
        "memory_mb": 512, "disk_mb": 256, "metadata": {}}  # fmt: skip


ENTRY = {"name": "new", "type": "dir", "path": "/home/user/new", "size": 0, "mode": 493,
         "permissions": "drwxr-xr-x", "owner": "user", "group": "user",
         "modified": "2026-01-01T00:00:00Z"}  # fmt: skip


def handler(request: httpx.Request) -> httpx.Response:
    path, method = request.url.path, request.method
    if (method, path) == ("POST", "/api/v1/sandboxes"):
        body = json.loads(request.content)
        if body.get("timeout") == 0:
            return httpx.Response(
                400, json={"message": "timeout: must be >= 1", "field": "timeout"}
            )
        return httpx.Response(201, json={**INFO, "metadata": body.get("metadata", {})})
    if (method, path) == ("POST", "/api/v1/sandboxes/sb1/commands"):
        body = json.loads(request.content)
        return httpx.Response(200, json={"pid": 7, "stdout": body["cmd"], "exit_code": 0})
    if (method, path) == ("GET", "/api/v1/sandboxes/sb1/files"):
        if request.url.params["path"] == "missing":
            return httpx.Response(404, json={"message": "No such file: missing"})
        return httpx.Response(200, content=b"\x00\xff")
    if (method, path) == ("PUT", "/api/v1/sandboxes/sb1/files"):
        assert request.headers["content-type"] == "application/octet-stream"
        return httpx.Response(200, json={"name": "f", "type": "file", "path": "/home/user/f",
                                         "size": len(request.content), "mode": 420,
                                         "permissions": "-rw-r--r--", "owner": "user",
                                         "group": "user", "modified": "2026-01-01T00:00:00Z"})  # fmt: skip
    if (method, path) == ("POST", "/api/v1/sandboxes/sb1/files/mkdir"):
        target = json.loads(request.content)["path"]
        if target == "new":
            return httpx.Response(200, json=ENTRY)
        code = "already_exists" if target == "d" else "conflict"
        return httpx.Response(409, json={"message": f"{target}: refused", "code": code})
    if (method, path) == ("DELETE", "/api/v1/sandboxes/sb1"):
        return httpx.Response(204)
    if (method, path) == ("GET", "/api/v1/sandboxes"):
        return httpx.Response(429, headers={"Retry-After": "7"}, json={"message": "busy"})
    return httpx.Response(500, json={"message": f"unexpected {method} {path}"})


def test_sync_client_results_and_errors() -> None:
    http = httpx.Client(transport=httpx.MockTransport(handler), base_url="http://tvm")
    client = Client(http=http)
    with client.sandboxes.create(metadata={"a": "b"}) as sbx:
        assert sbx.info.metadata == {"a": "b"}
        assert sbx.commands.run("echo hi").stdout == "echo hi"
        assert sbx.files.read("blob") == b"\x00\xff"
        assert sbx.files.write("f", b"abc").size == 3
        with pytest.raises(NotFound, match="No such file"):
            sbx.files.read("missing")
        # a 409 says why: the directory exists (False), or the sandbox's state refuses it
        assert sbx.files.make_dir("new") is True and sbx.files.make_dir("d") is False
        with pytest.raises(LiveOperationError) as refused:
            sbx.files.make_dir("f/d")
        assert refused.value.code == "conflict" and refused.value.status_code == 409
    with pytest.raises(InvalidRequest) as bad:
        client.sandboxes.create(timeout=0)
    assert (bad.value.field, bad.value.problem) == ("timeout", "must be >= 1")
    with pytest.raises(CapacityError) as busy:
        client.sandboxes.list()
    assert busy.value.retry_after == 7


def test_async_client_runs_the_same_operations() -> None:
    async def scenario() -> tuple[str, bytes]:
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://tvm")
        client = AsyncClient(http=http)
        async with await client.sandboxes.create() as sbx:
            out = await sbx.commands.run("echo async")
            data = await sbx.files.read("blob")
        with pytest.raises(TVMError):
            await client.sandboxes.get("elsewhere")
        await client.close()
        return out.stdout, data

    assert asyncio.run(scenario()) == ("echo async", b"\x00\xff")


@pytest.mark.parametrize("name", ["Client", "Sandboxes", "Sandbox", "Commands", "Files"])
def test_both_clients_offer_the_same_methods(name: str) -> None:
    blocking = getattr(sync, name)
    asynchronous = getattr(aio, "AsyncClient" if name == "Client" else name)

    def public(cls: type) -> dict[str, inspect.Signature]:
        found = {n: inspect.signature(f) for n, f in vars(cls).items()
                 if inspect.isfunction(f) and not n.startswith("_")}  # fmt: skip
        return found

    assert public(blocking).keys() == public(asynchronous).keys()
    for method, signature in public(blocking).items():
        if method == "run" and name == "Client":
            continue
        other = public(asynchronous)[method]
        assert list(signature.parameters) == list(other.parameters), method
        function = getattr(asynchronous, method)
        # A method may instead hand back an async context manager (``async with``).
        returned = inspect.signature(function).return_annotation
        opens_a_context = hasattr(getattr(aio, str(returned), None), "__aenter__")
        assert inspect.iscoroutinefunction(function) or opens_a_context, method


def test_a_sandbox_that_ended_on_its_own_is_sandbox_ended_and_its_kill_false() -> None:
    ended = {"message": "sandbox sb2 has ended (its lifetime ran out)", "code": "ended"}

    def gone(request: httpx.Request) -> httpx.Response:
        return httpx.Response(409, json=ended)

    client = Client(http=httpx.Client(transport=httpx.MockTransport(gone), base_url="http://t"))
    with pytest.raises(SandboxEnded, match="lifetime ran out") as refused:
        client.run(ops.run_command("sb2", {"cmd": "true"}, None))
    assert refused.value.status_code == 409
    assert client.run(ops.kill_sandbox("sb2")) is False  # it had already ended
