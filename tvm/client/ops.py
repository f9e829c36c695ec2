"""Every operation of the SDK, written once for both clients.

An operation is a generator: it yields the HTTP :class:`Call` it needs, gets
the ``httpx.Response`` back, and returns the typed result (or raises TVM's
error). :class:`tvm.client.Client` drives it with ``httpx.Client``,
:class:`tvm.client.AsyncClient` with ``httpx.AsyncClient``: one code path.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from tvm.api import CodeExecutionRequest, ExecutionResponse
from tvm.errors import (
    CapacityError,
    InvalidRequest,
    LiveOperationError,
    NotFound,
    RequestError,
    SandboxEnded,
    TVMError,
    Unauthorized,
)
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
M = TypeVar("M", bound=BaseModel)
SANDBOXES = "/api/v1/sandboxes"


@dataclass
class Call:
    method: str
    path: str
    json: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    content: bytes | None = None
    timeout: float | None = None  # None: the client's


Op = Generator[Call, httpx.Response, T]


def raise_for(response: httpx.Response) -> None:
    """TVM's error for a failed response, from the one exception tree."""
    if response.is_success:
        return
    try:
        body = response.json()
        message = str(body.get("message", response.text))
    except (ValueError, AttributeError):
        body, message = {}, response.text
    status = response.status_code
    if status in (429, 503) and "retry-after" in response.headers:
        retry = int(response.headers["retry-after"])
        raise CapacityError(message, retry_after=retry, status_code=status)
    if status == 400 and isinstance(body, dict) and body.get("field"):
        field_name = str(body["field"])
        raise InvalidRequest(field_name, message.removeprefix(f"{field_name}: "))
    if status == 401:
        raise Unauthorized(message)
    if status == 404:
        raise NotFound(message)
    if status == 409:
        code = body.get("code") if isinstance(body, dict) else None
        if code == "ended":
            raise SandboxEnded(message)
        raise LiveOperationError(str(code or "already_exists"), message)
    if 400 <= status < 500:
        raise RequestError(message)
    error = TVMError(message)
    error.status_code = status
    raise error


def _model(response: httpx.Response, model: type[M]) -> M:
    raise_for(response)
    return model.model_validate(response.json())


def _models(response: httpx.Response, model: type[M]) -> list[M]:
    raise_for(response)
    return [model.model_validate(item) for item in response.json()]


def _none(response: httpx.Response) -> None:
    raise_for(response)


def _sandbox(sandbox_id: str) -> str:
    return f"{SANDBOXES}/{quote(sandbox_id, safe='')}"


# -- executions -------------------------------------------------------------------
def execute(request: CodeExecutionRequest) -> Op[ExecutionResponse]:
    payload = request.model_dump(mode="json", exclude_none=True)
    return _model((yield Call("POST", "/api/v1/execute", json=payload)), ExecutionResponse)


def languages() -> Op[list[dict[str, Any]]]:
    response = yield Call("GET", "/api/v1/languages")
    raise_for(response)
    listed: list[dict[str, Any]] = response.json()
    return listed


# -- sandboxes ----------------------------------------------------------------------
def create_sandbox(request: SandboxCreate) -> Op[SandboxInfo]:
    payload = request.model_dump(mode="json", exclude_none=True)
    return _model((yield Call("POST", SANDBOXES, json=payload)), SandboxInfo)


def get_sandbox(sandbox_id: str) -> Op[SandboxInfo]:
    return _model((yield Call("GET", _sandbox(sandbox_id))), SandboxInfo)


def list_sandboxes() -> Op[list[SandboxInfo]]:
    return _models((yield Call("GET", SANDBOXES)), SandboxInfo)


def kill_sandbox(sandbox_id: str) -> Op[bool]:
    response = yield Call("DELETE", _sandbox(sandbox_id))
    if response.status_code in (404, 409):  # not there, or ended on its own
        return False
    raise_for(response)
    return True


def set_timeout(sandbox_id: str, seconds: int) -> Op[SandboxInfo]:
    call = Call("POST", _sandbox(sandbox_id) + "/timeout", json={"timeout": seconds})
    return _model((yield call), SandboxInfo)


# -- commands ------------------------------------------------------------------------
def run_command(
    sandbox_id: str, payload: dict[str, Any], timeout: float | None
) -> Op[CommandResult]:
    wait = None if timeout is None else timeout + 30
    call = Call("POST", _sandbox(sandbox_id) + "/commands", json=payload, timeout=wait)
    return _model((yield call), CommandResult)


def wait_command(sandbox_id: str, pid: int) -> Op[CommandResult]:
    call = Call("POST", f"{_sandbox(sandbox_id)}/commands/{pid}/wait", timeout=3600)
    return _model((yield call), CommandResult)


def list_commands(sandbox_id: str) -> Op[list[ProcessInfo]]:
    return _models((yield Call("GET", _sandbox(sandbox_id) + "/commands")), ProcessInfo)


def send_stdin(sandbox_id: str, pid: int, data: str) -> Op[None]:
    path = f"{_sandbox(sandbox_id)}/commands/{pid}/stdin"
    return _none((yield Call("POST", path, json={"data": data})))


def close_stdin(sandbox_id: str, pid: int) -> Op[None]:
    return _none((yield Call("POST", f"{_sandbox(sandbox_id)}/commands/{pid}/close-stdin")))


def kill_command(sandbox_id: str, pid: int, signal: str = "SIGKILL") -> Op[bool]:
    path = f"{_sandbox(sandbox_id)}/commands/{pid}/signal"
    response = yield Call("POST", path, json={"signal": signal})
    if response.status_code == 404:
        return False
    raise_for(response)
    return True


# -- files ------------------------------------------------------------------------------
def read_file(sandbox_id: str, path: str) -> Op[bytes]:
    response = yield Call("GET", _sandbox(sandbox_id) + "/files", params={"path": path})
    raise_for(response)
    return response.content


def write_file(sandbox_id: str, path: str, data: bytes) -> Op[EntryInfo]:
    call = Call("PUT", _sandbox(sandbox_id) + "/files", params={"path": path}, content=data)
    return _model((yield call), EntryInfo)


def list_dir(sandbox_id: str, path: str, depth: int) -> Op[list[EntryInfo]]:
    call = Call("GET", _sandbox(sandbox_id) + "/files/list", params={"path": path, "depth": depth})
    return _models((yield call), EntryInfo)


def stat(sandbox_id: str, path: str) -> Op[EntryInfo | None]:
    response = yield Call("GET", _sandbox(sandbox_id) + "/files/stat", params={"path": path})
    if response.status_code == 404:
        return None
    return _model(response, EntryInfo)


def make_dir(sandbox_id: str, path: str) -> Op[bool]:
    response = yield Call("POST", _sandbox(sandbox_id) + "/files/mkdir", json={"path": path})
    try:
        raise_for(response)
    except LiveOperationError as exc:
        if exc.code == "already_exists":
            return False
        raise
    return True


def move(sandbox_id: str, source: str, destination: str) -> Op[EntryInfo]:
    body = {"source": source, "destination": destination}
    return _model((yield Call("POST", _sandbox(sandbox_id) + "/files/move", json=body)), EntryInfo)


def remove(sandbox_id: str, path: str) -> Op[None]:
    return _none((yield Call("DELETE", _sandbox(sandbox_id) + "/files", params={"path": path})))


# -- code ----------------------------------------------------------------------------------
def run_code(
    sandbox_id: str, code: str, context: str | None, timeout: float | None
) -> Op[CodeResult]:
    body: dict[str, Any] = {"code": code}
    if context:
        body["context"] = context
    call = Call("POST", _sandbox(sandbox_id) + "/code", json=body, timeout=timeout)
    return _model((yield call), CodeResult)


def create_context(sandbox_id: str, cwd: str | None, language: str = "python") -> Op[ContextInfo]:
    body = {"language": language, **({"cwd": cwd} if cwd else {})}
    return _model((yield Call("POST", _sandbox(sandbox_id) + "/contexts", json=body)), ContextInfo)


def restart_context(sandbox_id: str, context_id: str) -> Op[None]:
    path = f"{_sandbox(sandbox_id)}/contexts/{quote(context_id, safe='')}/restart"
    return _none((yield Call("POST", path)))


def encode(call: Call) -> dict[str, Any]:
    """The keyword arguments of ``httpx`` ``request()`` for a call."""
    kwargs: dict[str, Any] = {"params": call.params or None}
    if call.json is not None:
        kwargs["content"] = json.dumps(call.json).encode()
        kwargs["headers"] = {"Content-Type": "application/json"}
    elif call.content is not None:
        kwargs["content"] = call.content
        kwargs["headers"] = {"Content-Type": "application/octet-stream"}
    if call.timeout is not None:
        kwargs["timeout"] = call.timeout
    return kwargs


def execution_request(
    language: str, code: str | None, files: list[dict[str, str]] | None, **fields: Any
) -> CodeExecutionRequest:
    """``execute``'s arguments as the native request (validated here, before any call)."""
    return CodeExecutionRequest.model_validate(
        {"language": language, "code": code, "files": files, **fields}
    )


def command_payload(
    cmd: str,
    cwd: str | None,
    env: dict[str, str] | None,
    stdin: str | None,
    background: bool,
    timeout: float | None,
) -> dict[str, Any]:
    payload: dict[str, Any] = {"cmd": cmd, "env": env or {}, "background": background}
    if cwd is not None:
        payload["cwd"] = cwd
    if stdin is not None:
        payload["stdin"] = stdin
    if timeout is not None:
        payload["timeout"] = timeout
    return payload
