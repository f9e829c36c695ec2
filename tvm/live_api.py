"""The native API's models for live sandboxes (``/api/v1/sandboxes/...``).

Shared by the gateway's routes (:mod:`tvm.pyroshell.live_routes`, which
document them in the OpenAPI schema) and the Python SDK (:mod:`tvm.client`,
which returns them as its typed results).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

# A path in the sandbox (relative: below /home/user); no file's name holds a NUL.
PATH_PATTERN = r"^[^\x00]+$"
SandboxPath = Annotated[str, Field(min_length=1, pattern=PATH_PATTERN)]


def _whole(value: object) -> object:
    """JSON's 9.0 is the integer 9 (as JSON Schema has it); 9.5, true and "9" stay refused."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Whole = Annotated[int, BeforeValidator(_whole)]  # in the strict models below


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # true is not 1


class SandboxCreate(_Request):
    template: str = Field(
        "base", description="'base' (Python and common tools) or a language of /api/v1/languages"
    )
    timeout: Whole | None = Field(
        None,
        description="seconds it lives (to live_max_timeout_seconds); default live_timeout_seconds",
    )
    memory_mb: Whole | None = Field(
        None, description="its memory (16 to live_max_memory_mb); default live_memory_mb"
    )
    env: dict[str, str] = Field(default_factory=dict, description="environment of its processes")
    metadata: dict[str, str] = Field(default_factory=dict, description="your labels, for listing")


class SandboxInfo(BaseModel):
    id: str
    template: str
    language: str = Field(description="the catalog language whose image it runs")
    version: str
    started_at: datetime
    end_at: datetime
    memory_mb: int
    disk_mb: int
    metadata: dict[str, str]


class TimeoutUpdate(_Request):
    timeout: Whole = Field(
        description="seconds from now until it ends (1 to live_max_timeout_seconds)"
    )


class CommandRequest(_Request):
    cmd: str = Field(description="a shell command line (run by /bin/bash -c)")
    cwd: SandboxPath | None = Field(None, description="working directory; default /home/user")
    env: dict[str, str] = Field(default_factory=dict)
    stdin: str | None = Field(None, description="input; for a background command: keep it open")
    background: bool = Field(False, description="answer with the pid at once")
    timeout: float | None = Field(
        60, gt=0, description="seconds before it is killed (not in the background)"
    )


class CommandResult(BaseModel):
    pid: int
    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = Field(None, description="None: still running (background)")
    signal: str | None = None
    timed_out: bool = False


class CommandInput(_Request):
    data: str


class CommandSignal(_Request):
    signal: Literal["SIGTERM", "SIGKILL", "SIGINT"] = "SIGKILL"


class ProcessInfo(BaseModel):
    pid: int
    cmd: str
    args: list[str]
    cwd: str | None = None


class CommandEvent(BaseModel):
    """One line of a command's NDJSON event stream."""

    type: Literal["stdout", "stderr", "exit"]
    data: str | None = None
    exit_code: int | None = None
    signal: str | None = None


class EntryInfo(BaseModel):
    name: str
    type: Literal["file", "dir", "symlink"]
    path: str
    size: int
    mode: int
    permissions: str
    owner: str
    group: str
    modified: datetime


class PathRequest(_Request):
    path: SandboxPath


class MoveRequest(_Request):
    source: SandboxPath
    destination: SandboxPath


class CodeRequest(_Request):
    code: str
    context: str | None = Field(None, description="a context id; default: the sandbox's own")
    env: dict[str, str] = Field(default_factory=dict)


class CodeError(BaseModel):
    name: str
    value: str
    traceback: str


class CodeResult(BaseModel):
    text: str | None = Field(None, description="repr of the cell's last expression")
    stdout: str = ""
    stderr: str = ""
    error: CodeError | None = None
    execution_count: int = 0


class ContextCreate(_Request):
    language: Literal["python", "javascript"] = Field(
        "python", description="javascript: Node.js, where the image has it (code-interpreter-v1)"
    )
    cwd: SandboxPath | None = None


class ContextInfo(BaseModel):
    id: str
    language: str
    cwd: str
