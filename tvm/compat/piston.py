"""Piston v2 compatibility: ``POST /api/v2/execute`` and ``GET /api/v2/runtimes``.

The request is checked as Piston's own ``api/src/api/v2.js`` checks it, in the
same order and with the same ``message`` texts (``language is required as a
string``, ``python-0.0.1 runtime is unknown``, ``run_timeout cannot exceed the
configured limit of 30000``...), then translated to the native request, whose
validation (:func:`tvm.api.build_job`) does the rest. Errors are
``400 {"message": ...}`` with no other key, as in Piston.

Limits (``compile_timeout``, ``run_timeout``, ``compile_cpu_time``,
``run_cpu_time`` in milliseconds, ``compile_memory_limit``,
``run_memory_limit`` in bytes): any JSON number; ``0``, ``null`` or absent
take the language's default; a fraction is truncated to whole milliseconds
(memory: to whole kilobytes of 1000 bytes), as Piston does when it hands the
limits to isolate; negative or above the catalog's maximum is a 400. A memory
limit of ``-1`` (what Piston clients send by default, Piston's "no limit") also
takes the default: TVM always has a memory limit. Unlike Piston, ``false`` and
``""`` are not numbers (a 400), so that the OpenAPI schema can say it simply.

The result is Piston's: per stage ``stdout``, ``stderr``, ``output``,
``code``, ``signal``, ``message``, ``status`` (RE runtime error, SG signal,
TO timeout, OL/EL stdout/stderr over limit, XX internal error, null when all
went well), ``cpu_time``, ``wall_time`` (ms) and ``memory`` (bytes). When the
compile stage fails, ``run`` repeats it, as Piston's v2 API does.
"""

from __future__ import annotations

import math
import signal as signals
from typing import Any

from pydantic import BaseModel, Field

from tvm.api import CodeExecutionRequest, ExecutionResponse, FileSpec, LimitsIn, StageResult
from tvm.config.catalog import Catalog, Language, verified_keys
from tvm.errors import InvalidRequest, RequestError, UnknownLanguage
from tvm.utils.web import PISTON_TAG

__all__ = ["PISTON_TAG", "PistonError", "from_native", "parse", "rename_field", "runtimes"]

ENCODINGS = ("base64", "hex", "utf8")
STAGES = ("compile", "run")
MIB = 1 << 20

# Piston's constraint names, in the order Piston checks them -> the native limit.
CONSTRAINTS = {"memory_limit": "memory_mb", "timeout": "timeout_ms", "cpu_time": "cpu_time_ms"}


class PistonMessage(BaseModel):
    """Piston's error body."""

    message: str


class PistonStage(BaseModel):
    stdout: str
    stderr: str
    output: str = Field(description="stdout and stderr interleaved in arrival order")
    code: int | None
    signal: str | None
    message: str | None
    status: str | None = Field(description="RE, SG, TO, OL, EL, XX or null")
    cpu_time: int = Field(description="milliseconds")
    wall_time: int = Field(description="milliseconds")
    memory: int = Field(description="bytes")


class PistonResult(BaseModel):
    language: str
    version: str
    compile: PistonStage | None = Field(None, description="compiled languages only")
    run: PistonStage = Field(description="a failed compile is repeated here")


class PistonRuntime(BaseModel):
    language: str
    version: str
    aliases: list[str]
    runtime: str | None = None


class PistonError(RequestError):
    """A Piston request error: 400 ``{"message": ...}``, exactly Piston's shape."""

    def to_dict(self) -> dict[str, object]:
        return {"message": self.message}


def configured_limit(language: Language, constraint: str, stage: str) -> int:
    """The most a request may ask for, in Piston's units (ms, bytes)."""
    spec = language.run_limits if stage == "run" else language.compile_limits
    value = int(getattr(spec.maximum, CONSTRAINTS[constraint]))
    return value * MIB if constraint == "memory_limit" else value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _unset(value: Any) -> bool:
    """JavaScript's ``!value``: Piston takes the default for these."""
    return value is None or value is False or value == "" or (_is_number(value) and value == 0)


def _default_limit(value: Any, constraint: str) -> bool:
    """``null``, ``0`` or absent; for memory also -1 (Piston's "no limit") up to 0."""
    if value is None:
        return True
    if not _is_number(value):
        return False
    return value == 0 or (constraint == "memory_limit" and -1 <= value < 0)


def _native_limit(constraint: str, value: float) -> int:
    if constraint == "memory_limit":
        kilobytes = math.floor(value / 1000)
        return max(1, math.ceil(kilobytes * 1000 / MIB))
    return max(1, math.floor(value))


def _limits(body: dict[str, Any], language: Language) -> dict[str, LimitsIn]:
    chosen: dict[str, dict[str, int]] = {stage: {} for stage in STAGES}
    for constraint, native in CONSTRAINTS.items():
        for stage in STAGES:
            name = f"{stage}_{constraint}"
            value: Any = body.get(name)
            if _default_limit(value, constraint):
                continue
            if not _is_number(value):
                raise PistonError(f"If specified, {name} must be a number")
            limit = configured_limit(language, constraint, stage)
            if value > limit:
                raise PistonError(f"{name} cannot exceed the configured limit of {limit}")
            if value < 0:
                raise PistonError(f"{name} must be non-negative")
            chosen[stage][native] = _native_limit(constraint, value)
    return {stage: LimitsIn(**values) for stage, values in chosen.items()}


def _files(files: list[Any]) -> list[FileSpec]:
    specs = []
    for i, file in enumerate(files):
        name = file.get("name")
        if not _unset(name) and not isinstance(name, str):
            raise PistonError(f"files[{i}].name must be a string")
        encoding = file.get("encoding")
        specs.append(
            FileSpec(
                name=name or None,
                content=file["content"],
                encoding=encoding if encoding in ENCODINGS else "utf8",
            )
        )
    return specs


def job_stdin(stdin: str) -> str:
    """Piston's job writes stdin with a newline at its end, added when there is none
    (so an absent or empty stdin reads as one empty line)."""
    return stdin if stdin.endswith("\n") else stdin + "\n"


def parse(body: Any, catalog: Catalog, *, interactive: bool = False) -> CodeExecutionRequest:
    """Check a Piston request as Piston does; the native request it stands for.
    ``interactive`` (``/api/v2/connect``): stdin is what the client writes, as is."""
    body = body if isinstance(body, dict) else {}
    language, version, files = body.get("language"), body.get("version"), body.get("files")
    if not language or not isinstance(language, str):
        raise PistonError("language is required as a string")
    if not version or not isinstance(version, str):
        raise PistonError("version is required as a string")
    if not isinstance(files, list):
        raise PistonError("files is required as an array")
    for i, file in enumerate(files):
        if not isinstance(file, dict) or not isinstance(file.get("content"), str):
            raise PistonError(f"files[{i}].content is required as a string")
    try:
        runtime = catalog.resolve(language, version)
    except UnknownLanguage as exc:
        raise PistonError(f"{language}-{version} runtime is unknown") from exc
    if not any(_unset(file.get("encoding")) or file.get("encoding") == "utf8" for file in files):
        raise PistonError("files must include at least one utf8 encoded file")
    limits = _limits(body, runtime)
    stdin = body.get("stdin")
    if stdin is not None and not isinstance(stdin, str):
        raise PistonError("stdin must be a string")
    args = body.get("args")
    if args is not None and not (
        isinstance(args, list) and all(isinstance(arg, str) for arg in args)
    ):
        raise PistonError("args must be an array of strings")
    return CodeExecutionRequest(
        language=runtime.name,
        version=runtime.version,
        files=_files(files),
        stdin=(stdin or "") if interactive else job_stdin(stdin or ""),
        args=args or [],
        limits=limits["run"],
        compile_limits=limits["compile"],
    )


# Native field names -> the Piston field that set them, for error messages.
_FIELD_NAMES = {
    f"{prefix}.{native}": f"{stage}_{constraint}"
    for constraint, native in CONSTRAINTS.items()
    for stage, prefix in (("run", "limits"), ("compile", "compile_limits"))
}


def rename_field(exc: InvalidRequest) -> PistonError:
    """A native validation error as Piston states errors: ``{field} {problem}``."""
    return PistonError(f"{_FIELD_NAMES.get(exc.field, exc.field)} {exc.problem}")


def _signal_number(name: str | None) -> str:
    try:
        return str(signals.Signals[name].value) if name else "?"
    except KeyError:
        return name or "?"


def stage_dict(stage: StageResult) -> dict[str, Any]:
    status, message, signal = None, None, stage.signal
    code = stage.exit_code
    if stage.status == "runtime_error":
        status, message = "RE", f"Exited with error status {code}"
    elif stage.status in ("signal", "memory_limit"):
        status, message = "SG", f"Caught fatal signal {_signal_number(stage.signal or 'SIGKILL')}"
        signal = stage.signal or "SIGKILL"
    elif stage.status == "timeout":
        status, message, signal = "TO", "Time limit exceeded", "SIGKILL"
    elif stage.status == "output_limit":
        over_stdout = len(stage.stdout.encode()) >= len(stage.stderr.encode())
        status = "OL" if over_stdout else "EL"
        message = f"{'stdout' if over_stdout else 'stderr'} length exceeded"
        signal = "SIGKILL"
    elif stage.status == "internal_error":
        status, message = "XX", stage.stderr or "internal error"
    return {
        "stdout": stage.stdout,
        "stderr": stage.stderr,
        "output": stage.output,
        "code": code,
        "signal": signal,
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
    elif response.compile is not None and response.status == "compile_error":
        body["run"] = body["compile"]  # Piston: a failed compile is repeated as `run`
    else:
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
