"""The native API for live sandboxes: ``/api/v1/sandboxes/...``.

Create one (``POST /api/v1/sandboxes``), then run commands in it (collected,
or in the background with their events as NDJSON, or over a WebSocket with
stdin and signals, :mod:`tvm.pyroshell.live_ws`), move files (raw bytes),
run Python code in contexts that keep their state, and kill it (or let its
timeout end it). Authentication is the gateway's API key; a key sees only
the sandboxes it created. Errors are TVM's usual ``{"message", "field"}``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import signal
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse

from tvm.api import ErrorBody
from tvm.errors import LiveOperationError, NotFound, SandboxEnded
from tvm.live_api import (
    PATH_PATTERN,
    CodeRequest,
    CodeResult,
    CommandInput,
    CommandRequest,
    CommandResult,
    CommandSignal,
    ContextCreate,
    ContextInfo,
    EntryInfo,
    MoveRequest,
    PathRequest,
    ProcessInfo,
    SandboxCreate,
    SandboxInfo,
    TimeoutUpdate,
)
from tvm.pyroshell.live_gate import live_gate
from tvm.pyroshell.live_ops import default_context, download, live_manager, upload
from tvm.pyroshell.live_ws import router as command_socket_router
from tvm.pyrovm.live import LiveRequest, LiveSandbox
from tvm.pyrovm.live_session import Output, ProcessEnd, ProcessRecord, WatchEvent
from tvm.utils.responses import errors

PREFIX = "/api/v1/sandboxes"
# Most output a collected command keeps per stream.
OUTPUT_CAP = 16 << 20
SIGNALS = {"SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL, "SIGINT": signal.SIGINT}


async def _who(request: Request) -> str:
    return await live_gate(request).owner(request)


Who = Annotated[str, Depends(_who)]  # the caller, as a sandbox's owner ("" with keys off)
FilePath = Annotated[str, Query(min_length=1, pattern=PATH_PATTERN)]

# What each route can answer besides its success (the OpenAPI schema): every one
# a bad request or key, or no worker for live sandboxes; one naming a sandbox also
# 404 (deleted, or never made), 409 (it ended on its own: its lifetime ran out or its
# agent ended, before or during the call) and 410 (lost with its worker); one the agent does
# 404 and 409 for what it finds there (no such file, context, process; one exists,
# or its state refuses the call: a directory read as a file, a file listed as a
# directory, stdin of a command that has none); 403 what the sandbox's user may not
# touch (a path outside its rights). 400 is for a malformed request.
COLLECTION = errors(ErrorBody, 400, 401, 503)
CREATE = errors(ErrorBody, 400, 401, 404, 429, 503)  # 404: no such template
SANDBOX = errors(ErrorBody, 400, 401, 404, 409, 410, 503)
INSIDE = errors(ErrorBody, 400, 401, 403, 404, 409, 410, 503)


@contextlib.contextmanager
def _named_in_body() -> Iterator[None]:
    """What a body names (a cell's context, a path to move or make, a command's
    cwd) is not the resource the URL names: its absence is a 409, the sandbox's
    state refusing the call; a 404 says the URL's own resource (the sandbox) is not
    there."""
    try:
        yield
    except LiveOperationError as exc:
        if exc.code != "not_found":
            raise
        raise LiveOperationError("conflict", exc.message) from exc


def _mine(request: Request, sandbox_id: str, who: str) -> LiveSandbox:
    hidden = NotFound(f"sandbox {sandbox_id} was not found (deleted, or never existed)")
    try:
        live = live_manager(request).get(sandbox_id)
    except SandboxEnded as exc:  # another key's: not even that it was
        raise (hidden if who and exc.owner != who else exc) from None
    if who and live.owner != who:
        raise hidden
    return live


def info(live: LiveSandbox) -> SandboxInfo:
    return SandboxInfo(
        id=live.id, template=live.template, language=live.language.name,
        version=live.language.version, started_at=live.started_at, end_at=live.end_datetime,
        memory_mb=live.memory_mb, disk_mb=live.disk_mb, metadata=live.metadata,
    )  # fmt: skip


def entry(raw: dict[str, Any]) -> EntryInfo:
    return EntryInfo(
        name=raw["name"], type=raw["type"], path=raw["path"], size=raw["size"],
        mode=raw["mode"], permissions=raw["permissions"], owner=raw["owner"],
        group=raw["group"], modified=datetime.fromtimestamp(raw["mtime"], UTC),
    )  # fmt: skip


def _record(live: LiveSandbox, pid: int) -> ProcessRecord:
    record = live.session.processes.get(pid)
    if record is None:
        raise NotFound(f"process {pid} not found in sandbox {live.id}")
    return record


async def collect(live: LiveSandbox, record: ProcessRecord, timeout: float | None) -> CommandResult:
    """Wait for the process's end, keeping its output (killed after ``timeout``)."""
    out = {"stdout": bytearray(), "stderr": bytearray()}
    queue = record.attach()
    deadline = None if timeout is None else time.monotonic() + timeout
    timed_out = False
    try:
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                event = await asyncio.wait_for(queue.get(), left)
            except TimeoutError:
                timed_out = True
                await live.session.request("proc_signal", pid=record.pid, signal=signal.SIGKILL)
                deadline = None
                continue
            if isinstance(event, ProcessEnd):
                break
            kept = out[event.stream]
            kept += event.data[: max(0, OUTPUT_CAP - len(kept))]
    finally:
        record.detach(queue)
    return CommandResult(
        pid=record.pid,
        stdout=out["stdout"].decode(errors="replace"),
        stderr=out["stderr"].decode(errors="replace"),
        exit_code=event.exit_code if event.signal is None else None,
        signal=event.signal,
        timed_out=timed_out,
    )


def router() -> APIRouter:
    routes = APIRouter(prefix=PREFIX, tags=["sandboxes"])

    @routes.post("", status_code=201, responses=CREATE)
    async def create(body: SandboxCreate, request: Request, who: Who) -> SandboxInfo:
        await live_gate(request).admit(request)
        live = await live_manager(request).create(
            LiveRequest(
                template=body.template,
                timeout=body.timeout,
                memory_mb=body.memory_mb,
                env=body.env,
                metadata=body.metadata,
                owner=who,
            )
        )
        return info(live)

    @routes.get("", responses=COLLECTION)
    async def list_sandboxes(request: Request, who: Who) -> list[SandboxInfo]:
        found = live_manager(request).sandboxes.values()
        return [info(sb) for sb in found if not who or sb.owner == who]

    @routes.get("/{sandbox_id}", responses=SANDBOX)
    async def get_sandbox(sandbox_id: str, request: Request, who: Who) -> SandboxInfo:
        return info(_mine(request, sandbox_id, who))

    @routes.delete("/{sandbox_id}", status_code=204, responses=SANDBOX)
    async def kill(sandbox_id: str, request: Request, who: Who) -> Response:
        live = _mine(request, sandbox_id, who)
        await live_manager(request).kill(live.id)
        return Response(status_code=204)

    @routes.post("/{sandbox_id}/timeout", responses=SANDBOX)
    async def set_timeout(
        sandbox_id: str, body: TimeoutUpdate, request: Request, who: Who
    ) -> SandboxInfo:
        live = _mine(request, sandbox_id, who)
        return info(live_manager(request).set_timeout(live.id, body.timeout))

    # -- commands ---------------------------------------------------------------
    @routes.post("/{sandbox_id}/commands", responses=INSIDE)
    async def run_command(
        sandbox_id: str, body: CommandRequest, request: Request, who: Who
    ) -> CommandResult:
        live = _mine(request, sandbox_id, who)
        keep_open = body.background and body.stdin is not None
        with _named_in_body():
            record = await live.session.start_process(
                {
                    "cmd": "/bin/bash",
                    "args": ["-l", "-c", body.cmd],
                    "env": body.env,
                    "cwd": body.cwd,
                    "stdin": body.stdin is not None,
                    "tag": None,
                }
            )
        if body.stdin:
            data = base64.b64encode(body.stdin.encode()).decode()
            await live.session.request("proc_input", pid=record.pid, data=data)
        if body.stdin is not None and not keep_open:
            await live.session.request("proc_close_stdin", pid=record.pid)
        if body.background:
            return CommandResult(pid=record.pid)
        return await collect(live, record, body.timeout)

    @routes.get("/{sandbox_id}/commands", responses=SANDBOX)
    async def list_commands(sandbox_id: str, request: Request, who: Who) -> list[ProcessInfo]:
        live = _mine(request, sandbox_id, who)
        return [
            ProcessInfo(
                pid=r.pid, cmd=r.config["cmd"], args=r.config["args"], cwd=r.config.get("cwd")
            )
            for r in live.session.running()
        ]

    @routes.post("/{sandbox_id}/commands/{pid}/wait", responses=INSIDE)
    async def wait_command(sandbox_id: str, pid: int, request: Request, who: Who) -> CommandResult:
        live = _mine(request, sandbox_id, who)
        return await collect(live, _record(live, pid), None)

    @routes.get(
        "/{sandbox_id}/commands/{pid}/events",
        description=(
            "The process's output and its exit as NDJSON lines, until it exits (at the latest"
            " when its sandbox ends) or the client goes. The same events, with stdin and"
            " signals sent back, come over a WebSocket: `GET"
            " /api/v1/sandboxes/{sandbox_id}/commands/{pid}/ws` with `Upgrade: websocket`"
            " (JSON text messages; see docs/live-sandboxes.md)."
        ),
        response_class=StreamingResponse,
        responses={
            200: {
                "content": {"application/x-ndjson": {}},
                "description": "CommandEvent lines until its exit",
            },
            **INSIDE,
        },
    )
    async def command_events(sandbox_id: str, pid: int, request: Request, who: Who) -> Response:
        record = _record(_mine(request, sandbox_id, who), pid)

        async def lines() -> AsyncIterator[bytes]:
            queue = record.attach()
            try:
                while True:
                    event = await queue.get()
                    line: dict[str, object]
                    if isinstance(event, Output):
                        text = event.data.decode(errors="replace")
                        line = {"type": event.stream, "data": text}
                    else:
                        line = {"type": "exit", "exit_code": event.exit_code,
                                "signal": event.signal}  # fmt: skip
                    yield json.dumps(line).encode() + b"\n"
                    if isinstance(event, ProcessEnd):
                        return
            finally:
                record.detach(queue)

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    @routes.post("/{sandbox_id}/commands/{pid}/stdin", status_code=204, responses=INSIDE)
    async def send_stdin(
        sandbox_id: str, pid: int, body: CommandInput, request: Request, who: Who
    ) -> Response:
        live = _mine(request, sandbox_id, who)
        data = base64.b64encode(body.data.encode()).decode()
        await live.session.request("proc_input", pid=_record(live, pid).pid, data=data)
        return Response(status_code=204)

    @routes.post("/{sandbox_id}/commands/{pid}/close-stdin", status_code=204, responses=INSIDE)
    async def close_stdin(sandbox_id: str, pid: int, request: Request, who: Who) -> Response:
        live = _mine(request, sandbox_id, who)
        await live.session.request("proc_close_stdin", pid=_record(live, pid).pid)
        return Response(status_code=204)

    @routes.post("/{sandbox_id}/commands/{pid}/signal", status_code=204, responses=INSIDE)
    async def send_signal(
        sandbox_id: str, pid: int, body: CommandSignal, request: Request, who: Who
    ) -> Response:
        live = _mine(request, sandbox_id, who)
        signum = int(SIGNALS[body.signal])
        await live.session.request("proc_signal", pid=_record(live, pid).pid, signal=signum)
        return Response(status_code=204)

    # -- files --------------------------------------------------------------------
    @routes.get(
        "/{sandbox_id}/files",
        response_class=StreamingResponse,
        responses={200: {"content": {"application/octet-stream": {}}}, **INSIDE},
    )
    async def read_file(sandbox_id: str, path: FilePath, request: Request, who: Who) -> Response:
        size, pieces = await download(_mine(request, sandbox_id, who), path)
        return StreamingResponse(pieces, media_type="application/octet-stream",
                                 headers={"Content-Length": str(size)})  # fmt: skip

    @routes.put("/{sandbox_id}/files", responses=INSIDE)
    async def write_file(sandbox_id: str, path: FilePath, request: Request, who: Who) -> EntryInfo:
        live = _mine(request, sandbox_id, who)
        return entry(await upload(live, path, request.stream()))

    @routes.delete("/{sandbox_id}/files", status_code=204, responses=INSIDE)
    async def remove(sandbox_id: str, path: FilePath, request: Request, who: Who) -> Response:
        await _mine(request, sandbox_id, who).session.request("remove", path=path)
        return Response(status_code=204)

    @routes.get("/{sandbox_id}/files/list", responses=INSIDE)
    async def list_dir(
        sandbox_id: str,
        path: FilePath,
        request: Request,
        who: Who,
        depth: Annotated[int, Query(ge=1)] = 1,
    ) -> list[EntryInfo]:
        reply = await _mine(request, sandbox_id, who).session.request(
            "list", path=path, depth=depth
        )
        return [entry(e) for e in reply["entries"]]

    @routes.get("/{sandbox_id}/files/stat", responses=INSIDE)
    async def stat(sandbox_id: str, path: FilePath, request: Request, who: Who) -> EntryInfo:
        reply = await _mine(request, sandbox_id, who).session.request("stat", path=path)
        return entry(reply["entry"])

    @routes.post("/{sandbox_id}/files/mkdir", responses=INSIDE)
    async def make_dir(sandbox_id: str, body: PathRequest, request: Request, who: Who) -> EntryInfo:
        with _named_in_body():
            reply = await _mine(request, sandbox_id, who).session.request("mkdir", path=body.path)
        return entry(reply["entry"])

    @routes.post("/{sandbox_id}/files/move", responses=INSIDE)
    async def move(sandbox_id: str, body: MoveRequest, request: Request, who: Who) -> EntryInfo:
        with _named_in_body():
            reply = await _mine(request, sandbox_id, who).session.request(
                "move", source=body.source, destination=body.destination
            )
        return entry(reply["entry"])

    @routes.get(
        "/{sandbox_id}/files/watch",
        description=(
            "Changes under a directory as they happen (inotify in the sandbox), as NDJSON:"
            ' `{"type": "start", "path"}`, then `{"type": "create"|"write"|"remove"|"rename"'
            '|"chmod", "name"}` (name below the directory), and `{"type": "end"}` when the'
            " directory or the sandbox goes. At most 16 watches per sandbox (then 409);"
            " closing the connection stops the watch."
        ),
        response_class=StreamingResponse,
        responses={200: {"content": {"application/x-ndjson": {}}}, **INSIDE},
    )
    async def watch_dir(
        sandbox_id: str, path: FilePath, request: Request, who: Who, recursive: bool = False
    ) -> Response:
        stream = _mine(request, sandbox_id, who).session.watch(path, recursive)
        root = await anext(stream)  # a bad path, or too many watches, fails here

        async def lines() -> AsyncIterator[bytes]:
            try:
                yield json.dumps({"type": "start", "path": root}).encode() + b"\n"
                async for event in stream:
                    if isinstance(event, WatchEvent):
                        line = {"type": event.op, "name": event.name}
                        yield json.dumps(line).encode() + b"\n"
                yield b'{"type": "end"}\n'
            finally:
                await stream.aclose()

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    # -- code -------------------------------------------------------------------------
    @routes.post("/{sandbox_id}/code", responses=INSIDE)
    async def run_code(
        sandbox_id: str, body: CodeRequest, request: Request, who: Who
    ) -> CodeResult:
        live = _mine(request, sandbox_id, who)
        out: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
        reply: dict[str, Any] = {}
        with _named_in_body():
            ident = body.context or await default_context(live)
            cell = {"ctx": ident, "code": body.code, "env": body.env}
            async for item in live.session.run_cell(cell):
                if isinstance(item, Output):
                    out[item.stream].append(item.data)
                else:
                    reply = item
        return CodeResult(
            text=reply.get("result"),
            stdout=b"".join(out["stdout"]).decode(errors="replace"),
            stderr=b"".join(out["stderr"]).decode(errors="replace"),
            error=reply.get("error"),
            execution_count=reply.get("count", 0),
        )

    @routes.post("/{sandbox_id}/contexts", status_code=201, responses=INSIDE)
    async def create_context(
        sandbox_id: str, body: ContextCreate, request: Request, who: Who
    ) -> ContextInfo:
        with _named_in_body():
            reply = await _mine(request, sandbox_id, who).session.request(
                "ctx_create", language=body.language, cwd=body.cwd
            )
        return ContextInfo(id=reply["ctx"], language=reply["language"], cwd=reply["cwd"])

    @routes.get("/{sandbox_id}/contexts", responses=INSIDE)
    async def list_contexts(sandbox_id: str, request: Request, who: Who) -> list[ContextInfo]:
        reply = await _mine(request, sandbox_id, who).session.request("ctx_list")
        return [ContextInfo(id=c["ctx"], language=c["language"], cwd=c["cwd"])
                for c in reply["contexts"]]  # fmt: skip

    @routes.post("/{sandbox_id}/contexts/{context_id}/restart", status_code=204, responses=INSIDE)
    async def restart_context(
        sandbox_id: str, context_id: str, request: Request, who: Who
    ) -> Response:
        await _mine(request, sandbox_id, who).session.request("ctx_restart", ctx=context_id)
        return Response(status_code=204)

    @routes.delete("/{sandbox_id}/contexts/{context_id}", status_code=204, responses=INSIDE)
    async def delete_context(
        sandbox_id: str, context_id: str, request: Request, who: Who
    ) -> Response:
        await _mine(request, sandbox_id, who).session.request("ctx_delete", ctx=context_id)
        return Response(status_code=204)

    routes.include_router(command_socket_router())
    return routes
