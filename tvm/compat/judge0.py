"""Judge0 CE compatibility: submissions, statuses, languages, configuration.

A Judge0 submission is validated with Judge0's defaults and maxima (the values
of Judge0 CE's ``judge0.conf``), then translated into a native
:class:`~tvm.api.CodeExecutionRequest` that :func:`tvm.api.build_job` checks
like any other. Its result is translated back with Judge0's rules:

* status by outcome: ``TO`` -> 5 Time Limit Exceeded (also when the CPU time
  went past ``cpu_time_limit`` inside ``cpu_extra_time``); killed by a signal ->
  7 SIGSEGV, 8 SIGXFSZ, 9 SIGFPE, 10 SIGABRT, else 12 Other; non-zero exit ->
  11 NZEC; otherwise 3 Accepted, or 4 Wrong Answer when ``expected_output``
  differs (trailing whitespace of each line and of the whole ignored);
* a program killed for writing more than ``max_file_size`` to stdout/stderr
  gets 8 (SIGXFSZ), as under Judge0 where the file-size rlimit covers stdout;
  one killed at its memory limit gets 12 with ``exit_signal`` 9 (SIGKILL);
* a compile failure is 6 with ``compile_output`` (stdout and stderr as they
  came) and no run fields; a compile timeout says "Compilation time limit
  exceeded.";
* ``time``/``wall_time`` are seconds as decimal strings, ``memory`` is KB; with
  ``number_of_runs`` > 1 they are the averages of the runs, which stop at the
  first run that is not Accepted.

Outputs travel as bytes (the worker is asked for base64) so that
``base64_encoded=true`` round-trips any byte, and a non-UTF-8 output without
it gives Judge0's error message instead of mangled text.

``stack_limit`` and the per-process flags are validated and stored but not
enforced separately (the sandbox has one memory cgroup for the whole program).
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import shlex
import zipfile
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tvm.api import CodeExecutionRequest, FileSpec, LimitsIn
from tvm.config.catalog import Catalog, Language
from tvm.errors import ConfigError, InvalidRequest

# Judge0 CE defaults and maxima (judge0.conf).
DEFAULTS: dict[str, Any] = {
    "cpu_time_limit": 5.0,
    "cpu_extra_time": 1.0,
    "wall_time_limit": 10.0,
    "memory_limit": 128000,
    "stack_limit": 64000,
    "max_processes_and_or_threads": 60,
    "enable_per_process_and_thread_time_limit": False,
    "enable_per_process_and_thread_memory_limit": False,
    "max_file_size": 1024,
    "number_of_runs": 1,
    "redirect_stderr_to_stdout": False,
    "enable_network": False,
}
MAXIMA: dict[str, float] = {
    "cpu_time_limit": 15.0,
    "cpu_extra_time": 5.0,
    "wall_time_limit": 20.0,
    "memory_limit": 512000,
    "stack_limit": 128000,
    "max_processes_and_or_threads": 120,
    "max_file_size": 4096,
    "number_of_runs": 20,
}
MAX_OPTION_CHARS = 128  # compiler_options, command_line_arguments
MAX_EXTRACT_KB = 10240  # additional_files, extracted
MAX_BATCH = 20
COMPATIBLE_VERSION = "1.13.1"  # the Judge0 CE API this module follows

NOT_UTF8 = (
    "some attributes for this submission cannot be converted to UTF-8, "
    "use base64_encoded=true query parameter"
)
NOT_UTF8_BATCH = (
    "some attributes for one or more submissions cannot be converted to UTF-8, "
    "use base64_encoded=true query parameter"
)

STATUSES: dict[int, str] = {
    1: "In Queue",
    2: "Processing",
    3: "Accepted",
    4: "Wrong Answer",
    5: "Time Limit Exceeded",
    6: "Compilation Error",
    7: "Runtime Error (SIGSEGV)",
    8: "Runtime Error (SIGXFSZ)",
    9: "Runtime Error (SIGFPE)",
    10: "Runtime Error (SIGABRT)",
    11: "Runtime Error (NZEC)",
    12: "Runtime Error (Other)",
    13: "Internal Error",
    14: "Exec Format Error",
}
IN_QUEUE, PROCESSING, ACCEPTED, WRONG_ANSWER, TIME_LIMIT, COMPILATION_ERROR = 1, 2, 3, 4, 5, 6
INTERNAL_ERROR = 13
SIGNAL_STATUS = {"SIGSEGV": 7, "SIGXFSZ": 8, "SIGFPE": 9, "SIGABRT": 10}
SIGNAL_NUMBERS = {
    "SIGHUP": 1, "SIGINT": 2, "SIGQUIT": 3, "SIGILL": 4, "SIGTRAP": 5, "SIGABRT": 6,
    "SIGBUS": 7, "SIGFPE": 8, "SIGKILL": 9, "SIGUSR1": 10, "SIGSEGV": 11, "SIGUSR2": 12,
    "SIGPIPE": 13, "SIGALRM": 14, "SIGTERM": 15, "SIGXCPU": 24, "SIGXFSZ": 25, "SIGSYS": 31,
}  # fmt: skip


class Judge0Submission(BaseModel):
    """The body of ``POST /submissions`` (unknown fields are ignored, as Judge0 does)."""

    model_config = ConfigDict(extra="ignore")

    source_code: str | None = None
    language_id: int | None = None
    compiler_options: str | None = None
    command_line_arguments: str | None = None
    stdin: str | None = None
    expected_output: str | None = None
    cpu_time_limit: float | None = None
    cpu_extra_time: float | None = None
    wall_time_limit: float | None = None
    memory_limit: float | None = None
    stack_limit: int | None = None
    max_processes_and_or_threads: int | None = None
    enable_per_process_and_thread_time_limit: bool | None = None
    enable_per_process_and_thread_memory_limit: bool | None = None
    max_file_size: int | None = None
    redirect_stderr_to_stdout: bool | None = None
    enable_network: bool | None = None
    number_of_runs: int | None = None
    callback_url: str | None = None
    additional_files: str | None = Field(None, description="a base64-encoded zip archive")


class Judge0Batch(BaseModel):
    model_config = ConfigDict(extra="ignore")

    submissions: list[dict[str, Any]] = Field(..., description="Judge0 submissions")


# -- languages ------------------------------------------------------------------------
def judge0_name(language: Language) -> str:
    """Judge0's naming, "Python (3.11.2)", "C (GCC 12.2.0)", from the catalog's display name."""
    label, _, rest = language.display_name.partition(" (")
    if rest:
        tool = rest.rstrip(")").rsplit(" ", 1)[0]
        return f"{label} ({tool} {language.version})"
    words = label.split(" ")
    if len(words) > 1 and words[-1][:1].isdigit():
        label = " ".join(words[:-1])
    return f"{label} ({language.version})"


def language_table(catalog: Catalog) -> dict[int, Language]:
    """Judge0 id -> catalog entry; the one mapping, from the catalog's ``judge0_id`` keys."""
    table: dict[int, Language] = {}
    for language in catalog:
        for judge0_id in language.judge0_ids:
            if judge0_id in table:
                raise ConfigError(
                    f"judge0_id {judge0_id} is given to both {table[judge0_id].key} "
                    f"and {language.key} in the language catalog"
                )
            table[judge0_id] = language
    return table


def languages(catalog: Catalog) -> list[dict[str, Any]]:
    rows = [{"id": i, "name": judge0_name(lang)} for i, lang in language_table(catalog).items()]
    return sorted(rows, key=lambda row: (row["name"], row["id"]))


def language_detail(catalog: Catalog, judge0_id: int) -> dict[str, Any] | None:
    language = language_table(catalog).get(judge0_id)
    if language is None:
        return None
    return {
        "id": judge0_id,
        "name": judge0_name(language),
        "is_archived": False,
        "source_file": language.source_file,
        "compile_cmd": language.compile,
        "run_cmd": " ".join(language.run).replace("{source}", language.source_file),
    }


def statuses() -> list[dict[str, Any]]:
    return [{"id": i, "description": d} for i, d in STATUSES.items()]


def config_info(max_queue_size: int, enable_delete: bool) -> dict[str, Any]:
    info: dict[str, Any] = {
        "maintenance_mode": False,
        "enable_wait_result": True,
        "enable_compiler_options": True,
        "allowed_languages_for_compile_options": [],
        "enable_command_line_arguments": True,
        "enable_submission_delete": enable_delete,
        "enable_callbacks": True,
        "callbacks_max_tries": 3,
        "callbacks_timeout": 5.0,
        "enable_additional_files": True,
        "max_queue_size": max_queue_size,
    }
    for name, default in DEFAULTS.items():
        info[name] = default
        if name in MAXIMA:
            info[f"max_{name}"] = MAXIMA[name]
    info["allow_enable_per_process_and_thread_time_limit"] = True
    info["allow_enable_per_process_and_thread_memory_limit"] = True
    info["allow_enable_network"] = False
    info["max_extract_size"] = MAX_EXTRACT_KB
    info["enable_batched_submissions"] = True
    info["max_submission_batch_size"] = MAX_BATCH
    return info


# -- request -> native ----------------------------------------------------------------
@dataclass
class Accepted:
    """A validated submission: what is stored, and the native request that runs it."""

    params: dict[str, Any]  # Judge0 attributes with defaults; text attributes base64
    native: CodeExecutionRequest
    language: Language


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


def _decode_text(value: str | None, base64_encoded: bool, field: str) -> bytes | None:
    if value is None:
        return None
    if not base64_encoded:
        return value.encode()
    try:
        return base64.b64decode(value)  # lenient like Ruby's decode64: newlines are fine
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(field, f"is not valid base64: {exc}") from exc


def _number(sub: Judge0Submission, name: str) -> Any:
    value = getattr(sub, name)
    if value is None:
        return DEFAULTS[name]
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidRequest(name, "is not a number")
    high = MAXIMA[name]
    if not 0 < value <= high:
        raise InvalidRequest(name, f"must be greater than 0 and less than or equal to {high}")
    return value


def _extract(archive: bytes, source_file: str) -> list[FileSpec]:
    """The files of a zip archive (Judge0 unzips without overwriting the source file)."""
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as zf:
            infos = [info for info in zf.infolist() if not info.is_dir()]
            if sum(info.file_size for info in infos) > MAX_EXTRACT_KB * 1024:
                raise InvalidRequest(
                    "additional_files", f"extracts to more than {MAX_EXTRACT_KB} KB"
                )
            files = []
            for info in infos:
                if info.filename == source_file:
                    continue
                data = zf.read(info)
                files.append(FileSpec(name=info.filename, content=_b64(data), encoding="base64"))
            return files
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as exc:
        raise InvalidRequest("additional_files", f"is not a valid zip archive: {exc}") from exc


def accept(sub: Judge0Submission, base64_encoded: bool, catalog: Catalog) -> Accepted:
    """Validate with Judge0's rules and translate; raises InvalidRequest naming the field."""
    if sub.source_code is None or sub.source_code == "":
        raise InvalidRequest("source_code", "can't be blank")
    if sub.language_id is None:
        raise InvalidRequest("language_id", "can't be blank")
    language = language_table(catalog).get(sub.language_id)
    if language is None:
        raise InvalidRequest("language_id", f"language with id {sub.language_id} doesn't exist")
    source = _decode_text(sub.source_code, base64_encoded, "source_code") or b""
    stdin = _decode_text(sub.stdin, base64_encoded, "stdin")
    expected = _decode_text(sub.expected_output, base64_encoded, "expected_output")
    for name in ("compiler_options", "command_line_arguments"):
        value = getattr(sub, name)
        if value is not None and len(value) > MAX_OPTION_CHARS:
            raise InvalidRequest(name, f"is too long (maximum is {MAX_OPTION_CHARS} characters)")
    if sub.callback_url and not sub.callback_url.startswith(("http://", "https://")):
        raise InvalidRequest("callback_url", "must be an http:// or https:// URL")
    if sub.enable_network:
        raise InvalidRequest("enable_network", "this option cannot be enabled")
    limits = {name: _number(sub, name) for name in MAXIMA}
    archive = None
    if sub.additional_files:
        try:
            archive = base64.b64decode(sub.additional_files)
        except (binascii.Error, ValueError) as exc:
            raise InvalidRequest("additional_files", f"is not valid base64: {exc}") from exc
    try:
        args = shlex.split(sub.command_line_arguments or "")
    except ValueError as exc:
        raise InvalidRequest("command_line_arguments", f"cannot be split: {exc}") from exc
    try:
        stdin_text = (stdin or b"").decode()
    except UnicodeDecodeError as exc:
        raise InvalidRequest("stdin", "must decode to UTF-8 text") from exc
    files = [FileSpec(name=None, content=_b64(source) or "", encoding="base64")]
    if archive:
        files += _extract(archive, language.source_file)
    run_max = language.run_limits.maximum
    native = CodeExecutionRequest(
        language=language.name,
        version=language.version,
        files=files,
        stdin=stdin_text,
        args=args,
        limits=LimitsIn(
            timeout_ms=math.ceil(limits["wall_time_limit"] * 1000),
            cpu_time_ms=math.ceil((limits["cpu_time_limit"] + limits["cpu_extra_time"]) * 1000),
            memory_mb=max(1, math.ceil(limits["memory_limit"] / 1024)),
            processes=int(limits["max_processes_and_or_threads"]),
            file_size_kb=int(limits["max_file_size"]),
            output_bytes=min(int(limits["max_file_size"]) * 1024, run_max.output_bytes),
        ),
        compiler_options=sub.compiler_options if language.compiled else None,
        output_encoding="base64",
    )
    params: dict[str, Any] = {
        "source_code": _b64(source),
        "language_id": sub.language_id,
        "compiler_options": sub.compiler_options,
        "command_line_arguments": sub.command_line_arguments,
        "stdin": _b64(stdin),
        "expected_output": _b64(expected),
        "callback_url": sub.callback_url,
        "additional_files": sub.additional_files,
        "redirect_stderr_to_stdout": bool(sub.redirect_stderr_to_stdout),
        "enable_network": False,
        "enable_per_process_and_thread_time_limit": bool(
            sub.enable_per_process_and_thread_time_limit
        ),
        "enable_per_process_and_thread_memory_limit": bool(
            sub.enable_per_process_and_thread_memory_limit
        ),
        **limits,
    }
    return Accepted(params, native, language)


# Native field (as build_job names it) -> the Judge0 field that set it.
_FIELDS = {
    "limits.timeout_ms": "wall_time_limit",
    "limits.cpu_time_ms": "cpu_time_limit",
    "limits.memory_mb": "memory_limit",
    "limits.processes": "max_processes_and_or_threads",
    "limits.file_size_kb": "max_file_size",
    "limits.output_bytes": "max_file_size",
    "args": "command_line_arguments",
    "files[0].content": "source_code",
}


def rename_field(exc: InvalidRequest) -> InvalidRequest:
    """Name the Judge0 field in an error raised while validating its native form."""
    field = _FIELDS.get(exc.field)
    if field is None and exc.field.startswith(("files", "args[")):
        field = "command_line_arguments" if exc.field.startswith("args") else "additional_files"
    return InvalidRequest(field, exc.problem) if field else exc
