"""The blocking client: :class:`Client`. Every method runs one operation of
:mod:`tvm.client.ops` over ``httpx.Client``."""

from __future__ import annotations

from types import TracebackType
from typing import Any, TypeVar

import httpx

from tvm.api import ExecutionResponse
from tvm.client import ops
from tvm.client.socket import CommandSocket
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


class Client:
    """TVM's native API. ``api_key``: sent as ``X-API-Key`` when the server requires keys."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        timeout: float = 120.0,
        http: httpx.Client | None = None,
    ) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self.http = http or httpx.Client(base_url=base_url, headers=headers, timeout=timeout)
        self.sandboxes = Sandboxes(self)

    def run(self, op: ops.Op[T]) -> T:
        """Drive one operation to its result."""
        try:
            call = next(op)
            while True:
                response = self.http.request(call.method, call.path, **ops.encode(call))
                call = op.send(response)
        except StopIteration as done:
            result: T = done.value
            return result

    def execute(
        self,
        language: str,
        code: str | None = None,
        *,
        files: list[dict[str, str]] | None = None,
        **fields: Any,
    ) -> ExecutionResponse:
        """Run a program once (``POST /api/v1/execute``); its failure is on the result."""
        return self.run(ops.execute(ops.execution_request(language, code, files, **fields)))

    def languages(self) -> list[dict[str, Any]]:
        return self.run(ops.languages())

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Sandboxes:
    def __init__(self, client: Client) -> None:
        self.client = client

    def create(
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
        return Sandbox(self.client, self.client.run(ops.create_sandbox(request)))

    def get(self, sandbox_id: str) -> Sandbox:
        return Sandbox(self.client, self.client.run(ops.get_sandbox(sandbox_id)))

    def list(self) -> list[SandboxInfo]:
        return self.client.run(ops.list_sandboxes())


class Sandbox:
    def __init__(self, client: Client, info: SandboxInfo) -> None:
        self.client = client
        self.info = info
        self.id = info.id
        self.commands = Commands(client, info.id)
        self.files = Files(client, info.id)

    def run_code(
        self, code: str, context: str | ContextInfo | None = None, timeout: float | None = None
    ) -> CodeResult:
        """Run Python in a context that keeps its state (default: the sandbox's own)."""
        ident = context.id if isinstance(context, ContextInfo) else context
        return self.client.run(ops.run_code(self.id, code, ident, timeout))

    def create_context(self, cwd: str | None = None, language: str = "python") -> ContextInfo:
        return self.client.run(ops.create_context(self.id, cwd, language))

    def restart_context(self, context: str | ContextInfo) -> None:
        ident = context.id if isinstance(context, ContextInfo) else context
        self.client.run(ops.restart_context(self.id, ident))

    def set_timeout(self, seconds: int) -> None:
        self.info = self.client.run(ops.set_timeout(self.id, seconds))

    def refresh(self) -> SandboxInfo:
        self.info = self.client.run(ops.get_sandbox(self.id))
        return self.info

    def kill(self) -> bool:
        """End it now; False if it had already ended."""
        return self.client.run(ops.kill_sandbox(self.id))

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.kill()


class Commands:
    def __init__(self, client: Client, sandbox_id: str) -> None:
        self.client, self.sandbox_id = client, sandbox_id

    def run(
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
        return self.client.run(ops.run_command(self.sandbox_id, payload, timeout))

    def wait(self, pid: int) -> CommandResult:
        return self.client.run(ops.wait_command(self.sandbox_id, pid))

    def list(self) -> list[ProcessInfo]:
        return self.client.run(ops.list_commands(self.sandbox_id))

    def send_stdin(self, pid: int, data: str) -> None:
        self.client.run(ops.send_stdin(self.sandbox_id, pid, data))

    def close_stdin(self, pid: int) -> None:
        self.client.run(ops.close_stdin(self.sandbox_id, pid))

    def kill(self, pid: int, signal: str = "SIGKILL") -> bool:
        return self.client.run(ops.kill_command(self.sandbox_id, pid, signal))

    def connect(self, pid: int) -> CommandSocket:
        """The process over a WebSocket: iterate its output until its exit, send
        it stdin and signals (``with sbx.commands.connect(pid) as proc: ...``)."""
        return CommandSocket(self.client.http, self.sandbox_id, pid)


class Files:
    def __init__(self, client: Client, sandbox_id: str) -> None:
        self.client, self.sandbox_id = client, sandbox_id

    def read(self, path: str) -> bytes:
        return self.client.run(ops.read_file(self.sandbox_id, path))

    def read_text(self, path: str) -> str:
        return self.read(path).decode()

    def write(self, path: str, data: str | bytes) -> EntryInfo:
        raw = data.encode() if isinstance(data, str) else data
        return self.client.run(ops.write_file(self.sandbox_id, path, raw))

    def list(self, path: str = ".", depth: int = 1) -> list[EntryInfo]:
        return self.client.run(ops.list_dir(self.sandbox_id, path, depth))

    def stat(self, path: str) -> EntryInfo | None:
        return self.client.run(ops.stat(self.sandbox_id, path))

    def exists(self, path: str) -> bool:
        return self.stat(path) is not None

    def make_dir(self, path: str) -> bool:
        return self.client.run(ops.make_dir(self.sandbox_id, path))

    def move(self, source: str, destination: str) -> EntryInfo:
        return self.client.run(ops.move(self.sandbox_id, source, destination))

    def remove(self, path: str) -> None:
        self.client.run(ops.remove(self.sandbox_id, path))
