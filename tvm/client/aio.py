"""The asyncio client: :class:`AsyncClient`, the same operations of
:mod:`tvm.client.ops` as :class:`tvm.client.Client`, over ``httpx.AsyncClient``."""

from __future__ import annotations

from types import TracebackType
from typing import Any, TypeVar

import httpx

from tvm.api import ExecutionResponse
from tvm.client import ops
from tvm.client.socket import AsyncCommandSocket
from tvm.live_api import (
    CodeResult,
    CommandResult,
    ContextInfo,
    EntryInfo,
    ProcessInfo,
    SandboxCreate,
    SandboxInfo,
)

T = TypeVar("T")


class AsyncClient:
    """TVM's native API. ``api_key``: sent as ``X-API-Key`` when the server requires keys."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        timeout: float = 120.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self.http = http or httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout)
        self.sandboxes = Sandboxes(self)

    async def run(self, op: ops.Op[T]) -> T:
        """Drive one operation to its result."""
        try:
            call = next(op)
            while True:
                response = await self.http.request(call.method, call.path, **ops.encode(call))
                call = op.send(response)
        except StopIteration as done:
            result: T = done.value
            return result

    async def execute(
        self,
        language: str,
        code: str | None = None,
        *,
        files: list[dict[str, str]] | None = None,
        **fields: Any,
    ) -> ExecutionResponse:
        """Run a program once (``POST /api/v1/execute``); its failure is on the result."""
        return await self.run(ops.execute(ops.execution_request(language, code, files, **fields)))

    async def languages(self) -> list[dict[str, Any]]:
        return await self.run(ops.languages())

    async def close(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class Sandboxes:
    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    async def create(
        self,
        template: str = "base",
        *,
        timeout: int | None = None,
        memory_mb: int | None = None,
        env: dict[str, str] | None = None,
        metadata: dict[str, str] | None = None,
    ) -> Sandbox:
        """A new live sandbox; as a context manager it is killed at the block's end."""
        request = SandboxCreate(template=template, timeout=timeout, memory_mb=memory_mb,
                                env=env or {}, metadata=metadata or {})  # fmt: skip
        return Sandbox(self.client, await self.client.run(ops.create_sandbox(request)))

    async def get(self, sandbox_id: str) -> Sandbox:
        return Sandbox(self.client, await self.client.run(ops.get_sandbox(sandbox_id)))

    async def list(self) -> list[SandboxInfo]:
        return await self.client.run(ops.list_sandboxes())


class Sandbox:
    def __init__(self, client: AsyncClient, info: SandboxInfo) -> None:
        self.client = client
        self.info = info
        self.id = info.id
        self.commands = Commands(client, info.id)
        self.files = Files(client, info.id)

    async def run_code(
        self, code: str, context: str | ContextInfo | None = None, timeout: float | None = None
    ) -> CodeResult:
        """Run Python in a context that keeps its state (default: the sandbox's own)."""
        ident = context.id if isinstance(context, ContextInfo) else context
        return await self.client.run(ops.run_code(self.id, code, ident, timeout))

    async def create_context(self, cwd: str | None = None, language: str = "python") -> ContextInfo:
        return await self.client.run(ops.create_context(self.id, cwd, language))

    async def restart_context(self, context: str | ContextInfo) -> None:
        ident = context.id if isinstance(context, ContextInfo) else context
        await self.client.run(ops.restart_context(self.id, ident))

    async def set_timeout(self, seconds: int) -> None:
        self.info = await self.client.run(ops.set_timeout(self.id, seconds))

    async def refresh(self) -> SandboxInfo:
        self.info = await self.client.run(ops.get_sandbox(self.id))
        return self.info

    async def kill(self) -> bool:
        """End it now; False if it had already ended."""
        return await self.client.run(ops.kill_sandbox(self.id))

    async def __aenter__(self) -> Sandbox:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.kill()


class Commands:
    def __init__(self, client: AsyncClient, sandbox_id: str) -> None:
        self.client, self.sandbox_id = client, sandbox_id

    async def run(
        self,
        cmd: str,
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        stdin: str | None = None,
        background: bool = False,
        timeout: float | None = 60,
    ) -> CommandResult:
        """Run a shell command; its exit code is on the result. ``background``:
        return at once with its pid (``stdin`` then stays open)."""
        payload = ops.command_payload(cmd, cwd, env, stdin, background, timeout)
        return await self.client.run(ops.run_command(self.sandbox_id, payload, timeout))

    async def wait(self, pid: int) -> CommandResult:
        return await self.client.run(ops.wait_command(self.sandbox_id, pid))

    async def list(self) -> list[ProcessInfo]:
        return await self.client.run(ops.list_commands(self.sandbox_id))

    async def send_stdin(self, pid: int, data: str) -> None:
        await self.client.run(ops.send_stdin(self.sandbox_id, pid, data))

    async def close_stdin(self, pid: int) -> None:
        await self.client.run(ops.close_stdin(self.sandbox_id, pid))

    async def kill(self, pid: int, signal: str = "SIGKILL") -> bool:
        return await self.client.run(ops.kill_command(self.sandbox_id, pid, signal))

    def connect(self, pid: int) -> AsyncCommandSocket:
        """The process over a WebSocket (``async with sbx.commands.connect(pid) as proc``)."""
        return AsyncCommandSocket(self.client.http, self.sandbox_id, pid)


class Files:
    def __init__(self, client: AsyncClient, sandbox_id: str) -> None:
        self.client, self.sandbox_id = client, sandbox_id

    async def read(self, path: str) -> bytes:
        return await self.client.run(ops.read_file(self.sandbox_id, path))

    async def read_text(self, path: str) -> str:
        return (await self.read(path)).decode()

    async def write(self, path: str, data: str | bytes) -> EntryInfo:
        raw = data.encode() if isinstance(data, str) else data
        return await self.client.run(ops.write_file(self.sandbox_id, path, raw))

    async def list(self, path: str = ".", depth: int = 1) -> list[EntryInfo]:
        return await self.client.run(ops.list_dir(self.sandbox_id, path, depth))

    async def stat(self, path: str) -> EntryInfo | None:
        return await self.client.run(ops.stat(self.sandbox_id, path))

    async def exists(self, path: str) -> bool:
        return (await self.stat(path)) is not None

    async def make_dir(self, path: str) -> bool:
        return await self.client.run(ops.make_dir(self.sandbox_id, path))

    async def move(self, source: str, destination: str) -> EntryInfo:
        return await self.client.run(ops.move(self.sandbox_id, source, destination))

    async def remove(self, path: str) -> None:
        await self.client.run(ops.remove(self.sandbox_id, path))
