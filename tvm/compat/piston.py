"""Piston v2 compatibility: ``POST /api/v2/execute`` and ``GET /api/v2/runtimes``.

Piston's request fields and response shape, translated to and from the native
models. Timeouts and CPU times are milliseconds, memory limits bytes (``-1``:
the language default), ``memory`` in the result is bytes. Stage ``status``
is Piston's: RE (runtime error), SG (signal), TO (timeout), OL (stdout over
limit), EL (stderr over limit), XX (internal error), null when all went well.
When the compile stage fails, ``run`` is absent, as in Piston.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tvm.api import CodeExecutionRequest, ExecutionResponse, FileSpec, LimitsIn, StageResult
from tvm.config.catalog import Catalog, verified_keys
from tvm.errors import InvalidRequest


class PistonFile(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str | None = None
    content: str
    encoding: Literal["utf8", "base64", "hex"] = "utf8"


class PistonRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    language: str
    version: str = Field("*", description="semver selector, e.g. 3.11.2, 3.x, *")
    files: list[PistonFile] = Field(..., min_length=1)
    stdin: str = ""
    args: list[str] = Field(default_factory=list)
    compile_timeout: int | None = None
    run_timeout: int | None = None
    compile_cpu_time: int | None = None
    run_cpu_time: int | None = None
    compile_memory_limit: int | None = None
    run_memory_limit: int | None = None


# Native limit names -> the Piston field that set them, for error messages.
_FIELD_NAMES = {
    "limits.timeout_ms": "run_timeout",
    "limits.cpu_time_ms": "run_cpu_time",
    "limits.memory_mb": "run_memory_limit",
    "compile_limits.timeout_ms": "compile_timeout",
    "compile_limits.cpu_time_ms": "compile_cpu_time",
    "compile_limits.memory_mb": "compile_memory_limit",
}


def _memory_mb(value: int | None, field: str) -> int | None:
    if value is None or value == -1:
        return None
    if value <= 0:
        raise InvalidRequest(field, "must be a positive number of bytes, or -1 for the default")
    return max(1, -(-value // (1 << 20)))


def _positive(value: int | None, field: str) -> int | None:
    if value is None or value == -1:
        return None
    if value <= 0:
        raise InvalidRequest(field, "must be a positive number of milliseconds")
    return value


def to_native(request: PistonRequest) -> CodeExecutionRequest:
    return CodeExecutionRequest(
        language=request.language,
        version=request.version,
        files=[
            FileSpec(name=f.name, content=f.content, encoding=f.encoding) for f in request.files
        ],
        stdin=request.stdin,
        args=request.args,
        limits=LimitsIn(
            timeout_ms=_positive(request.run_timeout, "run_timeout"),
            cpu_time_ms=_positive(request.run_cpu_time, "run_cpu_time"),
            memory_mb=_memory_mb(request.run_memory_limit, "run_memory_limit"),
        ),
        compile_limits=LimitsIn(
            timeout_ms=_positive(request.compile_timeout, "compile_timeout"),
            cpu_time_ms=_positive(request.compile_cpu_time, "compile_cpu_time"),
            memory_mb=_memory_mb(request.compile_memory_limit, "compile_memory_limit"),
        ),
    )


def rename_field(exc: InvalidRequest) -> InvalidRequest:
    """Name the Piston field in an error raised while validating its native form."""
    piston = _FIELD_NAMES.get(exc.field)
    return InvalidRequest(piston, exc.problem) if piston else exc


def stage_dict(stage: StageResult) -> dict[str, Any]:
    status, message = None, None
    code = stage.exit_code
    if stage.status == "runtime_error":
        status, message = "RE", f"Exited with error status {code}"
    elif stage.status == "signal":
        status, message = "SG", f"Caught fatal signal {stage.signal}"
    elif stage.status == "memory_limit":
        status, message = "SG", "Memory limit exceeded (killed by SIGKILL)"
    elif stage.status == "timeout":
        status, message = "TO", "Time limit exceeded"
    elif stage.status == "output_limit":
        over_stdout = len(stage.stdout.encode()) >= len(stage.stderr.encode())
        status = "OL" if over_stdout else "EL"
        message = f"{'stdout' if over_stdout else 'stderr'} length exceeded"
    elif stage.status == "internal_error":
        status, message = "XX", stage.stderr or "internal error"
    return {
        "stdout": stage.stdout,
        "stderr": stage.stderr,
        "output": stage.output,
        "code": code,
        "signal": stage.signal,
        "message": message,
        "status": status,
        "cpu_time": stage.cpu_ms,
        "wall_time": stage.wall_ms,
        "memory": stage.memory_kb * 1024,
    }


def from_native(response: ExecutionResponse) -> dict[str, Any]:
    body: dict[str, Any] = {"language": response.language, "version": response.version}
    if response.compile is not None:
        body["compile"] = stage_dict(response.compile)
    if response.run is not None:
        body["run"] = stage_dict(response.run)
    elif response.status != "compile_error":
        body["run"] = stage_dict(
            StageResult(
                status="internal_error",
                stdout="",
                stderr=response.message or "",
                exit_code=None,
                signal=None,
                cpu_ms=0,
                wall_ms=0,
                memory_kb=0,
                truncated=False,
            )
        )
    return body


def runtimes(catalog: Catalog, available: set[str] | None = None) -> list[dict[str, Any]]:
    """Piston's runtime list; ``available`` (language keys) hides unbuilt ones.

    Only entries whose test program passed are offered (the one place of that
    rule: :func:`tvm.config.catalog.verified_keys`)."""
    offered = verified_keys(catalog)
    out = []
    for lang in catalog:
        if lang.key not in offered or (available is not None and lang.key not in available):
            continue
        entry: dict[str, Any] = {
            "language": lang.name,
            "version": lang.version,
            "aliases": list(lang.aliases),
        }
        if lang.runtime:
            entry["runtime"] = lang.runtime
        out.append(entry)
    return out
