"""The native request/response models and their validation.

Shared by the worker (``tvm/pyrovm``) and the gateway (``tvm/pyroshell``). The
compatible APIs (Piston, Judge0) translate their requests into a :class:`Job`
through :func:`build_job`, so every limit is checked in one place.
"""

from __future__ import annotations

import base64
import binascii
import re
import shlex
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from tvm.config.catalog import Catalog, Language, StageLimits, load_catalog
from tvm.config.settings import Settings
from tvm.errors import InvalidRequest

# What the validation below accepts, as regular expressions (also in the OpenAPI
# schema, tvm/request_schema.py): a file name is 1-255 characters of relative
# path without '.', '..' or empty components; content by its encoding; no NUL in
# arguments; compiler options are shell words with balanced quotes.
_PART = r"(?:[^./\x00][^/\x00]*|\.[^./\x00][^/\x00]*|\.\.[^/\x00]+)"
FILE_NAME_PATTERN = rf"^{_PART}(?:/{_PART})*$"
BASE64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
HEX_PATTERN = r"^(?:[0-9a-fA-F]{2})*$"
NO_NUL_PATTERN = r"^[^\x00]*$"
SHELL_WORDS_PATTERN = r"""^(?:[^\\'"\x00]|\\[^\x00]|'[^'\x00]*'|"(?:[^"\\\x00]|\\[^\x00])*")*$"""
MAX_FILE_NAME = 255
MAX_COMPILER_OPTIONS = 512
_CONTENT_PATTERNS = {"base64": re.compile(BASE64_PATTERN), "hex": re.compile(HEX_PATTERN)}

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


def _whole(value: object) -> object:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Whole = Annotated[int, BeforeValidator(_whole)]


class LimitsIn(BaseModel):
    """Requested limits of one stage; unset fields take the language's defaults.
    Whole numbers only, as JSON Schema counts them: ``5`` and ``5.0``, not ``"5"``,
    ``5.5`` or ``true``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    timeout_ms: Whole | None = Field(None, description="wall-clock time")
    cpu_time_ms: Whole | None = None
    memory_mb: Whole | None = None
    processes: Whole | None = None
    output_bytes: Whole | None = Field(None, description="per stream (stdout, stderr)")
    file_size_kb: Whole | None = None
    open_files: Whole | None = None
    cpus: Whole | None = Field(None, description="CPU cores the program may use at once")


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
    files: list[FileSpec] | None = Field(
        None, min_length=1, description="the program; the first file is run"
    )
    code: str | None = Field(
        None,
        description="the main file's content (the language's source file name); given "
        "with `files`, it comes first and they are the other files; neither: an empty program",
    )
    stdin: str = ""
    args: list[str] = Field(default_factory=list)
    limits: LimitsIn = Field(default_factory=LimitsIn, description="run stage limits")
    compile_limits: LimitsIn = Field(default_factory=LimitsIn, description="compile stage limits")
    tests: list[TestCase] | None = Field(
        None, description="compile once, then run each case in its own fresh sandbox"
    )
    compiler_options: str | None = Field(
        None,
        max_length=MAX_COMPILER_OPTIONS,
        description="extra compiler flags (compiled languages only)",
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


class ErrorBody(BaseModel):
    """Every 4xx/5xx of the native API: what is wrong and, for a bad field, which."""

    message: str
    field: str | None = Field(None, description="the request field at fault, when one is")
    code: str | None = Field(
        None,
        description="a live sandbox's reason: not_found, already_exists, conflict (its "
        "state refuses the request), ended (409: the sandbox ended on its own, its lifetime "
        "ran out or its agent ended), forbidden (its user may not), invalid, internal",
    )


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
    pattern = _CONTENT_PATTERNS.get(encoding)
    if pattern is not None and not pattern.match(content):
        raise InvalidRequest(field_name, f"is not valid {encoding}")
    try:
        if encoding == "base64":  # one trailing newline, as `base64` prints it, is allowed
            return base64.b64decode(content.removesuffix("\n"), validate=True)
        if encoding == "hex":
            return bytes.fromhex(content)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(field_name, f"is not valid {encoding}: {exc}") from exc
    return content.encode()


def check_file_name(name: str, field_name: str) -> str:
    if not name or len(name) > MAX_FILE_NAME:
        raise InvalidRequest(field_name, f"must be 1 to {MAX_FILE_NAME} characters")
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
    given = list(request.files or [])
    if len(given) > settings.max_files:
        raise InvalidRequest("files", f"at most {settings.max_files} files are allowed")
    # (spec, its field in the request): `code` is the main file; neither: an empty one
    specs = [(spec, f"files[{i}]") for i, spec in enumerate(given)]
    if request.code is not None or not specs:
        specs.insert(0, (FileSpec(name=None, content=request.code or ""), "code"))
    files: list[tuple[str, bytes, int]] = []
    seen: set[str] = set()
    for i, (spec, where) in enumerate(specs):
        name = spec.name if spec.name else (language.source_file if i == 0 else f"file{i}")
        name = check_file_name(name, f"{where}.name")
        if name in seen:
            raise InvalidRequest(f"{where}.name", f"duplicate file name {name!r}")
        seen.add(name)
        content = where if where == "code" else f"{where}.content"
        data = _decode(spec.content, spec.encoding, content)
        if len(data) > settings.max_file_bytes:
            raise InvalidRequest(content, f"must be at most {settings.max_file_bytes} bytes")
        files.append((name, data, 0o644))
    run_limits = _validate_resource_limits(request.limits, language, "run", "limits")
    compile_limits = _validate_resource_limits(
        request.compile_limits, language, "compile", "compile_limits"
    )
    _check_args(request.args, "args", settings)
    _check_stdin(request.stdin.encode(), "stdin", settings)
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
        cases.append(Case(request.stdin.encode(), list(request.args)))
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
