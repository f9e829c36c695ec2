"""The native request/response models and their validation.

Shared by the worker (``tvm/pyrovm``) and the gateway (``tvm/pyroshell``). The
compatible APIs (Piston, Judge0) translate their requests into a :class:`Job`
through :func:`build_job`, so every limit is checked in one place.
"""

from __future__ import annotations

import base64
import binascii
import shlex
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tvm.config.catalog import Catalog, Language, StageLimits, load_catalog
from tvm.config.settings import Settings
from tvm.errors import InvalidRequest

Status = Literal[
    "ok",
    "compile_error",
    "runtime_error",
    "signal",
    "timeout",
    "memory_limit",
    "output_limit",
    "internal_error",
]


class FileSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        None, description="path relative to the work dir; default: the language's source file"
    )
    content: str = Field(..., description="file content, encoded as `encoding` says")
    encoding: Literal["utf8", "base64", "hex"] = "utf8"


class LimitsIn(BaseModel):
    """Requested limits of one stage; unset fields take the language's defaults."""

    model_config = ConfigDict(extra="forbid")

    timeout_ms: int | None = Field(None, description="wall-clock time")
    cpu_time_ms: int | None = None
    memory_mb: int | None = None
    processes: int | None = None
    output_bytes: int | None = Field(None, description="per stream (stdout, stderr)")
    file_size_kb: int | None = None
    open_files: int | None = None
    cpus: int | None = Field(None, description="CPU cores the program may use at once")


class TestCase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stdin: str = ""
    args: list[str] | None = None
    expected_output: str | None = None


class CodeExecutionRequest(BaseModel):
    """``POST /api/v1/execute``."""

    model_config = ConfigDict(extra="forbid")

    language: str = Field(..., description="name or alias, e.g. python, py, c++, js")
    version: str | None = Field(None, description="semver selector; default: newest")
    files: list[FileSpec] | None = Field(None, description="the program; the first file is run")
    code: str | None = Field(None, description="shorthand for one file with this content")
    stdin: str = ""
    args: list[str] = Field(default_factory=list)
    limits: LimitsIn = Field(default_factory=LimitsIn, description="run stage limits")
    compile_limits: LimitsIn = Field(default_factory=LimitsIn, description="compile stage limits")
    tests: list[TestCase] | None = Field(
        None, description="compile once, then run each case in its own fresh sandbox"
    )
    compiler_options: str | None = Field(
        None, max_length=512, description="extra compiler flags (compiled languages only)"
    )
    output_encoding: Literal["utf8", "base64"] = Field(
        "utf8", description="how stdout/stderr/output are returned: utf8 text or base64 bytes"
    )


class StageResult(BaseModel):
    status: Status
    stdout: str
    stderr: str
    output: str = Field("", description="stdout and stderr interleaved in arrival order")
    exit_code: int | None
    signal: str | None
    cpu_ms: int
    wall_ms: int
    memory_kb: int
    truncated: bool


def internal_stage(message: str) -> StageResult:
    """The result of a stage that could not run: ``internal_error`` with the reason."""
    return StageResult(
        status="internal_error", stdout="", stderr=message, exit_code=None, signal=None,
        cpu_ms=0, wall_ms=0, memory_kb=0, truncated=False,
    )  # fmt: skip


class TestResult(StageResult):
    verdict: Literal["accepted", "wrong_answer"] | None = None


class ExecutionResponse(BaseModel):
    language: str
    version: str
    status: Status
    compile: StageResult | None = None
    run: StageResult | None = None
    tests: list[TestResult] | None = None
    message: str | None = Field(None, description="why, when status is internal_error")


@dataclass
class Case:
    stdin: bytes
    args: list[str]
    expected_output: str | None = None


@dataclass
class Job:
    """A validated execution, ready for the engine."""

    language: Language
    files: list[tuple[str, bytes, int]]  # (relative path, content, mode)
    run_limits: StageLimits
    compile_limits: StageLimits
    cases: list[Case] = field(default_factory=list)
    batch: bool = False  # True when the request gave `tests`
    request_id: str = ""
    compiler_options: list[str] = field(default_factory=list)  # shell words, already split
    output_encoding: str = "utf8"


def _decode(content: str, encoding: str, field_name: str) -> bytes:
    try:
        if encoding == "base64":
            return base64.b64decode(content, validate=True)
        if encoding == "hex":
            return bytes.fromhex(content)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(field_name, f"is not valid {encoding}: {exc}") from exc
    return content.encode()


def check_file_name(name: str, field_name: str) -> str:
    if not name or len(name) > 255:
        raise InvalidRequest(field_name, "must be 1 to 255 characters")
    if "\x00" in name:
        raise InvalidRequest(field_name, "must not contain NUL")
    if name.startswith("/"):
        raise InvalidRequest(field_name, "must be a relative path, not absolute")
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise InvalidRequest(field_name, "must not contain '..', '.' or empty path components")
    return name


def _validate_resource_limits(
    requested: LimitsIn, language: Language, stage: Literal["run", "compile"], prefix: str
) -> StageLimits:
    """Apply defaults and refuse anything above the language's maximum."""
    spec = language.run_limits if stage == "run" else language.compile_limits
    values = {}
    for name in StageLimits.names():
        value = getattr(requested, name)
        high = getattr(spec.maximum, name)
        if value is None:
            value = getattr(spec.default, name)
        elif not 1 <= value <= high:
            raise InvalidRequest(
                f"{prefix}.{name}",
                f"must be between 1 and {high} for {language.key} (got {value})",
            )
        values[name] = value
    return StageLimits(**values)


def build_job(
    request: CodeExecutionRequest, settings: Settings, catalog: Catalog | None = None
) -> Job:
    """Validate a native request against the catalog and settings."""
    catalog = catalog or load_catalog()
    language = catalog.resolve(request.language, request.version)
    if request.files and request.code is not None:
        raise InvalidRequest("code", "give either `files` or `code`, not both")
    specs = request.files or []
    if request.code is not None:
        specs = [FileSpec(name=None, content=request.code)]
    if not specs:
        raise InvalidRequest("files", "at least one file (or `code`) is required")
    if len(specs) > settings.max_files:
        raise InvalidRequest("files", f"at most {settings.max_files} files are allowed")
    files: list[tuple[str, bytes, int]] = []
    seen: set[str] = set()
    for i, spec in enumerate(specs):
        name = spec.name if spec.name else (language.source_file if i == 0 else f"file{i}")
        name = check_file_name(name, f"files[{i}].name")
        if name in seen:
            raise InvalidRequest(f"files[{i}].name", f"duplicate file name {name!r}")
        seen.add(name)
        data = _decode(spec.content, spec.encoding, f"files[{i}].content")
        if len(data) > settings.max_file_bytes:
            raise InvalidRequest(
                f"files[{i}].content", f"must be at most {settings.max_file_bytes} bytes"
            )
        files.append((name, data, 0o644))
    run_limits = _validate_resource_limits(request.limits, language, "run", "limits")
    compile_limits = _validate_resource_limits(
        request.compile_limits, language, "compile", "compile_limits"
    )
    _check_args(request.args, "args", settings)
    cases = []
    if request.tests is not None:
        if not 1 <= len(request.tests) <= settings.max_tests:
            raise InvalidRequest("tests", f"must have 1 to {settings.max_tests} cases")
        for i, test in enumerate(request.tests):
            args = request.args if test.args is None else test.args
            _check_args(args, f"tests[{i}].args", settings)
            stdin = test.stdin.encode()
            _check_stdin(stdin, f"tests[{i}].stdin", settings)
            cases.append(Case(stdin, list(args), test.expected_output))
    else:
        stdin = request.stdin.encode()
        _check_stdin(stdin, "stdin", settings)
        cases.append(Case(stdin, list(request.args)))
    return Job(
        language, files, run_limits, compile_limits, cases, batch=request.tests is not None,
        compiler_options=_split_options(request.compiler_options, "compiler_options"),
        output_encoding=request.output_encoding,
    )  # fmt: skip


def _split_options(options: str | None, field_name: str) -> list[str]:
    if not options or not options.strip():
        return []
    if "\x00" in options:
        raise InvalidRequest(field_name, "must not contain NUL")
    try:
        return shlex.split(options)
    except ValueError as exc:
        raise InvalidRequest(field_name, f"is not a valid list of shell words: {exc}") from exc


def _check_args(args: list[str], field_name: str, settings: Settings) -> None:
    if len(args) > settings.max_args:
        raise InvalidRequest(field_name, f"at most {settings.max_args} arguments are allowed")
    for i, arg in enumerate(args):
        if "\x00" in arg:
            raise InvalidRequest(f"{field_name}[{i}]", "must not contain NUL")


def _check_stdin(data: bytes, field_name: str, settings: Settings) -> None:
    if len(data) > settings.max_stdin_bytes:
        raise InvalidRequest(field_name, f"must be at most {settings.max_stdin_bytes} bytes")
