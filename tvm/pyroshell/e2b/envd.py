"""E2B's in-sandbox daemon ("envd") on a live sandbox: its Connect RPC services
``process.Process`` and ``filesystem.Filesystem``, ``/files`` and ``/health``.

Fields are as in E2B's ``process.proto`` and ``filesystem.proto`` (proto3 JSON:
lowerCamelCase names, bytes as base64, enums by name).
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from tvm.errors import InvalidRequest, LiveOperationError, TVMError
from tvm.pyroshell.e2b import connect, watch
from tvm.pyroshell.e2b.sandboxes import (
    SandboxGone,
    e2b_errors,
    error_body,
    health_route,
    sandbox_for,
)
from tvm.pyroshell.live_ops import download, one_chunk, upload
from tvm.pyrovm.live import LiveSandbox
from tvm.pyrovm.live_session import LiveSession, Output, ProcessEnd, ProcessRecord

DEFAULT_KEEPALIVE = 50.0
_TYPES = {"file": "FILE_TYPE_FILE", "dir": "FILE_TYPE_DIRECTORY", "symlink": "FILE_TYPE_SYMLINK"}

Handler = Callable[[LiveSandbox, dict[str, Any], Request], Awaitable[Response]]


def entry_info(entry: dict[str, Any]) -> dict[str, Any]:
    info = {
        "name": entry["name"],
        "type": _TYPES.get(entry["type"], "FILE_TYPE_UNSPECIFIED"),
        "path": entry["path"],
        "size": str(entry["size"]),
        "mode": entry["mode"],
        "permissions": entry["permissions"],
        "owner": entry["owner"],
        "group": entry["group"],
        "modifiedTime": datetime.fromtimestamp(entry["mtime"], UTC)
        .isoformat()
        .replace("+00:00", "Z"),
    }
    if entry.get("symlink_target"):
        info["symlinkTarget"] = entry["symlink_target"]
    return info


# -- process.Process -------------------------------------------------------------
def _selector(message: dict[str, Any]) -> dict[str, Any]:
    chosen = message.get("process") or {}
    if "pid" in chosen:
        return {"pid": int(chosen["pid"])}
    if "tag" in chosen:
        return {"tag": str(chosen["tag"])}
    raise InvalidRequest("process", "needs a pid or a tag")


def _record(session: LiveSession, message: dict[str, Any]) -> ProcessRecord:
    chosen = _selector(message)
    for record in session.running():
        if record.pid == chosen.get("pid") or (
            "tag" in chosen and record.config.get("tag") == chosen["tag"]
        ):
            return record
    raise LiveOperationError("not_found", f"process {next(iter(chosen.values()))} not found")


def _event(event: Output | ProcessEnd) -> dict[str, Any]:
    if isinstance(event, Output):
        return {"event": {"data": {event.stream: base64.b64encode(event.data).decode()}}}
    end: dict[str, Any] = {"exited": event.signal is None, "status": event.status}
    end["exitCode"] = event.exit_code if event.signal is None else -1
    return {"event": {"end": end}}


def _keepalive(request: Request) -> float:
    try:
        return max(1.0, float(request.headers.get("keepalive-ping-interval", DEFAULT_KEEPALIVE)))
    except ValueError:
        return DEFAULT_KEEPALIVE


def _stream(record: ProcessRecord, keepalive: float) -> StreamingResponse:
    async def frames() -> AsyncIterator[bytes]:
        queue = record.attach()
        try:
            yield connect.envelope({"event": {"start": {"pid": record.pid}}})
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), keepalive)
                except TimeoutError:
                    yield connect.envelope({"event": {"keepalive": {}}})
                    continue
                yield connect.envelope(_event(event))
                if isinstance(event, ProcessEnd):
                    break
            yield connect.end_of_stream()
        finally:
            record.detach(queue)

    return StreamingResponse(frames(), media_type=connect.STREAM_TYPE)


async def process_start(live: LiveSandbox, message: dict[str, Any], request: Request) -> Response:
    if message.get("pty"):
        raise LiveOperationError("invalid", "pty: terminals are not supported; run a command")
    process = message.get("process") or {}
    config = {
        "cmd": str(process.get("cmd") or ""),
        "args": [str(a) for a in process.get("args") or []],
        "env": {str(k): str(v) for k, v in (process.get("envs") or {}).items()},
        "cwd": process.get("cwd") or None,
        "stdin": bool(message.get("stdin", False)),
        "tag": message.get("tag"),
    }
    record = await live.session.start_process(config)
    return _stream(record, _keepalive(request))


async def process_connect(live: LiveSandbox, message: dict[str, Any], request: Request) -> Response:
    return _stream(_record(live.session, message), _keepalive(request))


async def process_list(live: LiveSandbox, message: dict[str, Any], request: Request) -> Response:
    listed = []
    for record in live.session.running():
        config = record.config
        info: dict[str, Any] = {
            "pid": record.pid,
            "config": {"cmd": config["cmd"], "args": config["args"], "envs": config["env"]},
        }
        if config.get("cwd"):
            info["config"]["cwd"] = config["cwd"]
        if config.get("tag") is not None:
            info["tag"] = config["tag"]
        listed.append(info)
    return JSONResponse({"processes": listed})


async def _agent(live: LiveSandbox, op: str, **fields: Any) -> dict[str, Any]:
    return await live.session.request(op, **fields)


async def process_send_input(
    live: LiveSandbox, message: dict[str, Any], request: Request
) -> Response:
    record = _record(live.session, message)
    data = (message.get("input") or {}).get("stdin")
    if data is None:
        raise InvalidRequest("input", "only stdin input is supported (no pty)")
    await _agent(live, "proc_input", pid=record.pid, data=data)
    return JSONResponse({})


async def process_close_stdin(
    live: LiveSandbox, message: dict[str, Any], request: Request
) -> Response:
    await _agent(live, "proc_close_stdin", pid=_record(live.session, message).pid)
    return JSONResponse({})


async def process_send_signal(
    live: LiveSandbox, message: dict[str, Any], request: Request
) -> Response:
    record = _record(live.session, message)
    raw = message.get("signal", "SIGNAL_SIGKILL")
    names = {"SIGNAL_SIGKILL": signal.SIGKILL, "SIGNAL_SIGTERM": signal.SIGTERM}
    signum = names.get(raw) if isinstance(raw, str) else int(raw)
    if signum not in (signal.SIGKILL, signal.SIGTERM):
        raise InvalidRequest("signal", "must be SIGNAL_SIGKILL or SIGNAL_SIGTERM")
    await _agent(live, "proc_signal", pid=record.pid, signal=int(signum))
    return JSONResponse({})


async def process_update(live: LiveSandbox, message: dict[str, Any], request: Request) -> Response:
    _record(live.session, message)
    return JSONResponse({})  # only a pty's size can change, and there are no ptys


async def stream_input(live: LiveSandbox, request: Request) -> Response:
    """``Process/StreamInput``: a client stream of input for one process."""
    header = struct.Struct(">BI")
    buffer = b""
    pid: int | None = None
    async for chunk in request.stream():
        buffer += chunk
        while len(buffer) >= header.size:
            _, length = header.unpack_from(buffer)
            if len(buffer) < header.size + length:
                break
            body, buffer = (
                buffer[header.size : header.size + length],
                buffer[header.size + length :],
            )
            event = json.loads(body or b"{}")
            if "start" in event:
                pid = _record(live.session, event["start"]).pid
            elif "data" in event and pid is not None:
                data = ((event["data"] or {}).get("input") or {}).get("stdin")
                if data:
                    await _agent(live, "proc_input", pid=pid, data=data)
    return Response(connect.envelope({}) + connect.end_of_stream(), media_type=connect.STREAM_TYPE)


# -- filesystem.Filesystem ---------------------------------------------------------
async def fs_stat(live: LiveSandbox, message: dict[str, Any], request: Request) -> Response:
    reply = await _agent(live, "stat", path=message.get("path", ""))
    return JSONResponse({"entry": entry_info(reply["entry"])})


async def fs_make_dir(live: LiveSandbox, message: dict[str, Any], request: Request) -> Response:
    reply = await _agent(live, "mkdir", path=message.get("path", ""))
    return JSONResponse({"entry": entry_info(reply["entry"])})


async def fs_move(live: LiveSandbox, message: dict[str, Any], request: Request) -> Response:
    reply = await _agent(
        live, "move", source=message.get("source", ""), destination=message.get("destination", "")
    )
    return JSONResponse({"entry": entry_info(reply["entry"])})


async def fs_list_dir(live: LiveSandbox, message: dict[str, Any], request: Request) -> Response:
    reply = await _agent(live, "list", path=message.get("path", ""), depth=message.get("depth", 1))
    return JSONResponse({"entries": [entry_info(e) for e in reply["entries"]]})


async def fs_remove(live: LiveSandbox, message: dict[str, Any], request: Request) -> Response:
    await _agent(live, "remove", path=message.get("path", ""))
    return JSONResponse({})


async def fs_watch_dir(live: LiveSandbox, message: dict[str, Any], request: Request) -> Response:
    stream = watch.watch(live, str(message.get("path", "")), bool(message.get("recursive")))
    await anext(stream)  # a bad path is the call's error
    keepalive = _keepalive(request)

    async def frames() -> AsyncIterator[bytes]:
        yield connect.envelope({"start": {}})
        pending: asyncio.Task[list[dict[str, Any]]] | None = None
        try:
            while True:
                pending = pending or asyncio.ensure_future(anext(stream))
                done, _ = await asyncio.wait({pending}, timeout=keepalive)
                if not done:
                    yield connect.envelope({"keepalive": {}})
                    continue
                try:
                    batch = pending.result()
                except StopAsyncIteration:
                    break
                pending = None
                for event in batch:
                    yield connect.envelope({"filesystem": event})
            yield connect.end_of_stream()
        finally:
            if pending is not None:
                pending.cancel()

    return StreamingResponse(frames(), media_type=connect.STREAM_TYPE)


def _watchers(request: Request) -> watch.Watchers:
    found: watch.Watchers = request.app.state.watchers
    return found


async def fs_create_watcher(
    live: LiveSandbox, message: dict[str, Any], request: Request
) -> Response:
    path, recursive = str(message.get("path", "")), bool(message.get("recursive"))
    return JSONResponse({"watcherId": await _watchers(request).create(live, path, recursive)})


async def fs_get_watcher_events(
    live: LiveSandbox, message: dict[str, Any], request: Request
) -> Response:
    events = _watchers(request).take(live, str(message.get("watcherId", "")))
    return JSONResponse({"events": events})


async def fs_remove_watcher(
    live: LiveSandbox, message: dict[str, Any], request: Request
) -> Response:
    await _watchers(request).remove(live, str(message.get("watcherId", "")))
    return JSONResponse({})


RPCS: dict[str, Handler] = {
    "process.Process/Start": process_start,
    "process.Process/Connect": process_connect,
    "process.Process/List": process_list,
    "process.Process/SendInput": process_send_input,
    "process.Process/CloseStdin": process_close_stdin,
    "process.Process/SendSignal": process_send_signal,
    "process.Process/Update": process_update,
    "filesystem.Filesystem/Stat": fs_stat,
    "filesystem.Filesystem/MakeDir": fs_make_dir,
    "filesystem.Filesystem/Move": fs_move,
    "filesystem.Filesystem/ListDir": fs_list_dir,
    "filesystem.Filesystem/Remove": fs_remove,
    "filesystem.Filesystem/WatchDir": fs_watch_dir,
    "filesystem.Filesystem/CreateWatcher": fs_create_watcher,
    "filesystem.Filesystem/GetWatcherEvents": fs_get_watcher_events,
    "filesystem.Filesystem/RemoveWatcher": fs_remove_watcher,
}


# -- /files -----------------------------------------------------------------------------
async def read_file_response(live: LiveSandbox, path: str) -> StreamingResponse:
    size, pieces = await download(live, path)
    return StreamingResponse(
        pieces, media_type="application/octet-stream", headers={"Content-Length": str(size)}
    )


def written(entry: dict[str, Any]) -> dict[str, Any]:
    return {"name": entry["name"], "type": "file", "path": entry["path"]}


def multipart_files(content_type: str, body: bytes) -> list[tuple[str, bytes]]:
    """The (filename, content) of each ``file`` part of a multipart/form-data body."""
    boundary = ""
    for param in content_type.split(";"):
        name, _, value = param.strip().partition("=")
        if name.lower() == "boundary":
            boundary = value.strip('"')
    if not boundary:
        raise InvalidRequest("Content-Type", "multipart/form-data needs a boundary")
    files = []
    for part in body.split(b"--" + boundary.encode())[1:]:
        if part.startswith(b"--"):
            break
        head, _, content = part.partition(b"\r\n\r\n")
        filename = ""
        for line in head.decode(errors="replace").split("\r\n"):
            if line.lower().startswith("content-disposition"):
                for item in line.split(";"):
                    key, _, value = item.strip().partition("=")
                    if key == "filename":
                        filename = value.strip('"')
        files.append((filename, content.removesuffix(b"\r\n")))
    return files


def router() -> APIRouter:
    """The daemon's routes (mounted where ``E2b-Sandbox-Port`` is the daemon's)."""
    routes = APIRouter()

    routes.get("/health")(health_route(lambda: Response(status_code=204)))

    @routes.get("/files")
    @e2b_errors
    async def read_file(request: Request, path: str = "") -> Response:
        return await read_file_response(sandbox_for(request), path)

    @routes.post("/files")
    async def write_file(request: Request, path: str = "") -> Response:
        try:
            live = sandbox_for(request)
            kind = request.headers.get("content-type", "")
            if kind.startswith("multipart/form-data"):
                done: list[dict[str, Any]] = []
                for filename, content in multipart_files(kind, await request.body()):
                    target = path if path and not done else filename
                    done.append(written(await upload(live, target or filename, one_chunk(content))))
                if not done:
                    raise InvalidRequest("file", "the form has no file part")
            else:
                if not path:
                    raise InvalidRequest("path", "the query parameter path is required")
                done = [written(await upload(live, path, request.stream()))]
        except TVMError as exc:
            return error_body(exc)
        return JSONResponse(done)

    @routes.post("/{service}/{method}")
    async def rpc(service: str, method: str, request: Request) -> Response:
        name = f"{service}/{method}"
        handler = RPCS.get(name)
        streaming = request.headers.get("content-type", "").startswith(connect.STREAM_TYPE)
        try:
            live = sandbox_for(request)
            if name == "process.Process/StreamInput":
                return await stream_input(live, request)
            if handler is None:
                raise LiveOperationError("invalid", f"{name}: not implemented by TVM")
            return await handler(live, await connect.read_request(request), request)
        except TVMError as exc:
            if isinstance(exc, SandboxGone):
                return error_body(exc)
            if streaming:
                return Response(connect.end_of_stream(exc), media_type=connect.STREAM_TYPE)
            return connect.unary_error(exc)

    return routes
