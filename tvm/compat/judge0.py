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

Language 89 (Multi-file program) has no source file: its files come in
``additional_files`` (a base64 zip, whatever ``base64_encoded`` says, unpacked
by :mod:`tvm.compat.judge0_files`), and its ``compile``/``compile.sh`` and
``run``/``run.sh`` scripts are run by bash. For other languages the zip's files
land beside the source file, and the source wins.

Text attributes must be encodable: a lone UTF-16 surrogate (``"\ud800"`` in the
JSON) is a 422 naming the attribute, as any other bad value.

``stack_limit`` and the per-process flags are validated and stored but not
enforced separately (the sandbox has one memory cgroup for the whole program).
"""

from __future__ import annotations

import base64
import math
import re
import shlex
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    StrictBool,
    ValidationInfo,
    field_validator,
)

from tvm.api import CodeExecutionRequest, FileSpec, LimitsIn
from tvm.compat.judge0_blank import (
    BASE64_SPACE,
    BLANK_BASE64_PATTERN,
    BLANK_TEXT_PATTERN,
    PRESENT_TEXT_PATTERN,
    SPACE,
    SPACE_CHARS,
    blank,
)
from tvm.compat.judge0_files import unpack
from tvm.compat.judge0_languages import MULTI_FILE, language_table, takes_compiler_options
from tvm.compat.judge0_numbers import NumberRule, language_id_schema, parse_language_id
from tvm.config.catalog import Catalog, Language, load_catalog
from tvm.config.settings import Settings
from tvm.errors import InvalidRequest

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
# Their bounds, as Judge0 CE 1.13.1's model validates them (its maxima, judge0.conf's).
RULES: dict[str, NumberRule] = {
    "cpu_time_limit": NumberRule(0, True, 15.0, whole=False),
    "cpu_extra_time": NumberRule(0, True, 5.0, whole=False),
    "wall_time_limit": NumberRule(1, True, 20.0, whole=False),
    "memory_limit": NumberRule(2048, True, 512000, whole=False),
    "stack_limit": NumberRule(0, True, 128000, whole=True),
    "max_processes_and_or_threads": NumberRule(0, False, 120, whole=True),
    "max_file_size": NumberRule(0, True, 4096, whole=True),
    "number_of_runs": NumberRule(0, False, 20, whole=True),
}
MAXIMA = {name: rule.high for name, rule in RULES.items()}
NO_LIMIT_AT_ZERO = frozenset({"cpu_time_limit", "stack_limit", "max_file_size"})
# The file-size rlimit also counts in-memory files: Erlang/OTP 25's JIT sizes an
# 8 MiB memfd at start, so a smaller cap kills every BEAM program. Judge0's
# max_file_size still caps stdout and stderr exactly; files get at least this.
MIN_FILE_SIZE_KB = 16384
MAX_OPTION_CHARS = 512  # compiler_options, command_line_arguments (Judge0's maximum)
# Words as POSIX shell quoting has them: what shlex.split accepts, exactly (no
# unclosed quote, no trailing backslash), and no NUL (no argv can hold one), so that
# the schema says what a 422 refuses.
SHELL_WORDS_PATTERN = r"""^(?:[^'"\\\x00]|\\[^\x00]|'[^'\x00]*'|"(?:[^"\\\x00]|\\[^\x00])*")*$"""
MAX_EXTRACT_KB = 10240  # additional_files, extracted
ARCHIVE_NAME = "additional_files.zip"  # what Judge0 names the archive in the work dir
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

SIGNAL_NUMBERS = {
    "SIGHUP": 1, "SIGINT": 2, "SIGQUIT": 3, "SIGILL": 4, "SIGTRAP": 5, "SIGABRT": 6,
    "SIGBUS": 7, "SIGFPE": 8, "SIGKILL": 9, "SIGUSR1": 10, "SIGSEGV": 11, "SIGUSR2": 12,
    "SIGPIPE": 13, "SIGALRM": 14, "SIGTERM": 15, "SIGXCPU": 24, "SIGXFSZ": 25, "SIGSYS": 31,
}  # fmt: skip


def encodable(value: Any) -> Any:
    """A text attribute must be valid Unicode (no lone surrogate), or it is a 422."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"is not valid Unicode text (a lone surrogate at character {exc.start})"
            ) from None
    return value


# Base64 as it comes from any encoder: groups of four, padded, line breaks and spaces
# anywhere (Ruby's encode64 wraps lines). The schema states it and the model checks it.
_B64 = f"[A-Za-z0-9+/]{BASE64_SPACE}"
BASE64_PATTERN = (
    rf"^{BASE64_SPACE}(?:{_B64 * 4})*(?:{_B64 * 2}={BASE64_SPACE}=|{_B64 * 3}=)?{BASE64_SPACE}$"
)


def decode64(text: str) -> bytes:
    """Ruby's ``Base64.decode64``, which Judge0 decodes every attribute with: it never
    fails. Characters outside the alphabet are skipped, the first ``=`` ends the
    data, and a last group of two or three characters still gives its bytes."""
    chars = re.sub(r"[^A-Za-z0-9+/=]", "", text).split("=", 1)[0]
    if len(chars) % 4 == 1:
        chars = chars[:-1]  # one character holds no whole byte
    return base64.b64decode(chars + "=" * (-len(chars) % 4))


def false_only(value: Any) -> Any:
    """``false`` or null exactly, as the schema says (pydantic would take ``0`` too)."""
    if value is not None and value is not False:
        raise ValueError("enabling network is not allowed")
    return value


# A URL the outbound policy can parse: http(s), an ASCII host name or IPv4 address (no
# credentials, no IPv6 literal), a port up to 65535, then no control character or space.
_PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
CALLBACK_PATTERN = rf"^https?://[A-Za-z0-9._~-]+(:{_PORT})?([/?#][^\x00-\x20\x7f]*)?$"


# GET /submissions/batch?tokens=: Judge0 reads them with Ruby's ``strip`` and
# ``split(",")``, which drops trailing empty pieces ("a," is one token, ",a" two, the
# first an unknown one), and wants 1 to MAX_BATCH of them. The pattern says exactly
# that: the last piece Ruby keeps ends at the last character that is not a comma.
_STRIPPED = SPACE + "\x00"  # Ruby's strip also takes NUL
_W, _N = f"[{SPACE_CHARS}\\x00]", f"[^,{SPACE_CHARS}\\x00]"
_PIECES = f"(?:[^,]*,){{0,{MAX_BATCH - 1}}}"
BATCH_TOKENS_PATTERN = (
    rf"^{_W}*(?:{_PIECES}[^,]*{_N}"  # it ends with a token
    rf"|(?:(?:[^,]*,){{1,{MAX_BATCH - 1}}}[^,]*[^,]|[^,]*{_N}[^,]*),+){_W}*$"  # or commas
)


def batch_tokens(value: str) -> list[str]:
    """The tokens of ``GET /submissions/batch``, as Judge0 splits them."""
    pieces = value.strip(_STRIPPED).split(",")
    while pieces and not pieces[-1]:
        pieces.pop()
    return pieces


def base64_text(value: Any) -> Any:
    if isinstance(value, str) and not re.fullmatch(BASE64_PATTERN, value):
        raise ValueError("is not valid base64")
    return value


_UNITS = {"cpu_time_limit": "seconds", "cpu_extra_time": "seconds",
          "wall_time_limit": "seconds", "memory_limit": "KB", "stack_limit": "KB",
          "max_file_size": "KB"}  # fmt: skip


def _limit_description(name: str) -> str:
    unit = _UNITS.get(name)
    zero = "; 0: no limit (isolate's)" if name in NO_LIMIT_AT_ZERO else ""
    return f"{unit + '; ' if unit else ''}default {DEFAULTS[name]}{zero}"


def _limit(value: Any, info: ValidationInfo) -> Any:
    assert info.field_name is not None
    return RULES[info.field_name].parse(value)


def _submission_schema(schema: dict[str, Any]) -> None:
    """What the schema says beyond the types: ``language_id`` is one of the catalog's
    ids; each number attribute's range, as a number or a numeric string; and, by
    language, what Judge0 requires: ``source_code`` present except for a multi-file
    program (89), which has ``additional_files`` instead and no ``source_code``, and
    no ``compiler_options`` for a language Judge0 does not compile."""
    table = language_table(load_catalog())
    props = schema["properties"]
    props["language_id"] = language_id_schema(sorted(table))
    for name, rule in RULES.items():
        props[name] = dict(rule.schema(_limit_description(name)), title=props[name]["title"])
    schema["required"] = ["language_id"]
    # Present as Rails has it (not blank once decoded): plain text with a character
    # that is not whitespace (base64 text is checked once decoded, which no schema can
    # say), an archive that does not decode to whitespace only; blank: whitespace only
    # (blank as text and as base64).
    present = {
        "additional_files": {"type": "string", "not": {"pattern": BLANK_BASE64_PATTERN}},
        "source_code": {"type": "string", "pattern": PRESENT_TEXT_PATTERN},
    }
    blank_text = {"anyOf": [{"type": "null"}, {"type": "string", "pattern": BLANK_TEXT_PATTERN}]}
    multi_file = {
        "required": ["language_id"],
        "properties": {"language_id": {"enum": [MULTI_FILE, str(MULTI_FILE)]}},
    }
    no_options = sorted(i for i, lang in table.items() if not takes_compiler_options(i, lang))
    schema["allOf"] = [
        {
            "if": multi_file,
            "then": {"required": ["additional_files"],
                     "properties": {"additional_files": present["additional_files"],
                                    "source_code": blank_text}},
            "else": {"required": ["source_code"],
                     "properties": {"source_code": present["source_code"]}},
        },
        {
            "if": {"required": ["language_id"], "properties": {"language_id": {
                "enum": no_options + [str(i) for i in no_options]}}},
            "then": {"properties": {"compiler_options": blank_text}},
        },
    ]  # fmt: skip


class Judge0Submission(BaseModel):
    """The body of ``POST /submissions`` (unknown fields are ignored, as Judge0 does)."""

    model_config = ConfigDict(extra="ignore", json_schema_extra=_submission_schema)

    source_code: str | None = Field(None, description="required, except for language 89")
    language_id: int | None = None
    compiler_options: str | None = Field(
        None, max_length=MAX_OPTION_CHARS, json_schema_extra={"pattern": SHELL_WORDS_PATTERN}
    )
    command_line_arguments: str | None = Field(
        None, max_length=MAX_OPTION_CHARS, json_schema_extra={"pattern": SHELL_WORDS_PATTERN}
    )
    stdin: str | None = None
    expected_output: str | None = None
    cpu_time_limit: float | None = None
    cpu_extra_time: float | None = None
    wall_time_limit: float | None = None
    memory_limit: float | None = None
    stack_limit: int | None = None
    max_processes_and_or_threads: int | None = None
    enable_per_process_and_thread_time_limit: StrictBool | None = None
    enable_per_process_and_thread_memory_limit: StrictBool | None = None
    max_file_size: int | None = None
    redirect_stderr_to_stdout: StrictBool | None = None
    enable_network: Literal[False] | None = Field(None, description="cannot be enabled here")
    number_of_runs: int | None = None
    callback_url: str | None = Field(
        None,
        pattern=CALLBACK_PATTERN,
        description="gets a PUT with the result; public hosts only, by an ASCII name "
        "(an IDN as punycode) or IPv4 address",
    )
    additional_files: str | None = Field(
        None,
        description="a base64-encoded zip archive (whatever base64_encoded says), unpacked "
        "beside the source; bytes that are not a zip unpack to nothing, as Judge0's unzip "
        "leaves them; a zip that breaks the limits on its files (count, size, a path "
        "outside the work dir) is a 422",
        json_schema_extra={"pattern": BASE64_PATTERN},
    )

    _text = field_validator(
        "source_code", "compiler_options", "command_line_arguments", "stdin",
        "expected_output", "callback_url", "additional_files", mode="before",
    )(encodable)  # fmt: skip
    _archive = field_validator("additional_files")(base64_text)
    _language = field_validator("language_id", mode="before")(parse_language_id)
    _numbers = field_validator(*RULES, mode="before")(_limit)
    _network = field_validator("enable_network", mode="before")(false_only)


def _batch_schema(schema: dict[str, Any]) -> None:
    """A client sends a list (no null: that is the 400 of an empty batch) of objects,
    at least one of them a valid submission (else the batch is a 422)."""
    schema.pop("anyOf", None)
    schema.pop("default", None)
    valid = {"$ref": "#/components/schemas/Judge0Submission"}
    schema.update(
        type="array", minItems=1, maxItems=MAX_BATCH, items={"type": "object"}, contains=valid
    )


class Judge0Batch(BaseModel):
    """Absent or null ``submissions`` is Judge0's 400 of an empty batch (the schema
    still says it is required: a client must send it)."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"required": ["submissions"]})

    submissions: list[dict[str, Any]] | None = Field(
        None,
        description=f"Judge0 submissions (1 to {MAX_BATCH}; more or none is a 400), each "
        "a Judge0Submission; an invalid one is answered in its place by its 422 body, "
        "and the batch is a 422 only when none is valid",
        json_schema_extra=_batch_schema,
    )


class Judge0Error(BaseModel):
    """Judge0's error body (400, 401, 403, 404, 503)."""

    error: str


class FieldErrors(RootModel[dict[str, list[str]]]):
    """Judge0's 422: each bad attribute with its problems, ``{"language_id": ["..."]}``."""


class BatchErrors(RootModel[list[dict[str, list[str]]] | dict[str, list[str]]]):
    """Judge0's 422 of a batch where no submission was valid: one error object each;
    or, when ``submissions`` is not a list of objects, the error of that attribute."""


_WHY = {
    400: "bad query parameters (fields, tokens, page...), or an answer not UTF-8 without base64",
    401: "an API key is required and missing or unknown",
    403: "the key is not an admin key",
    404: "no such submission (or it is another key's) or language",
    422: "an attribute is invalid; each one named with its problems",
    429: "over the key's rate limit or concurrency quota (Retry-After says when to retry)",
    500: "a worker the gateway should have is down",
    503: "the queue is full",
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error answers a Judge0 route may give, for the OpenAPI schema."""
    return {
        code: {"model": FieldErrors if code == 422 else Judge0Error, "description": _WHY[code]}
        for code in codes
    }


def config_info(settings: Settings) -> dict[str, Any]:
    """``GET /config_info``: every key of Judge0 CE 1.13.1, in its order, with this
    service's values (Judge0's defaults where the behaviour is the same)."""
    return {
        "maintenance_mode": False,
        "enable_wait_result": True,
        "enable_compiler_options": True,
        "allowed_languages_for_compile_options": [],
        "enable_command_line_arguments": True,
        "enable_submission_delete": settings.judge0_enable_delete,
        "enable_callbacks": True,
        "callbacks_max_tries": settings.callback_max_tries,
        "callbacks_timeout": float(settings.callback_timeout_seconds),
        "enable_additional_files": True,
        "max_queue_size": settings.max_queue_size,
        "cpu_time_limit": DEFAULTS["cpu_time_limit"],
        "max_cpu_time_limit": MAXIMA["cpu_time_limit"],
        "cpu_extra_time": DEFAULTS["cpu_extra_time"],
        "max_cpu_extra_time": MAXIMA["cpu_extra_time"],
        "wall_time_limit": DEFAULTS["wall_time_limit"],
        "max_wall_time_limit": MAXIMA["wall_time_limit"],
        "memory_limit": DEFAULTS["memory_limit"],
        "max_memory_limit": int(MAXIMA["memory_limit"]),
        "stack_limit": DEFAULTS["stack_limit"],
        "max_stack_limit": int(MAXIMA["stack_limit"]),
        "max_processes_and_or_threads": DEFAULTS["max_processes_and_or_threads"],
        "max_max_processes_and_or_threads": int(MAXIMA["max_processes_and_or_threads"]),
        "enable_per_process_and_thread_time_limit": False,
        "allow_enable_per_process_and_thread_time_limit": True,
        "enable_per_process_and_thread_memory_limit": False,
        "allow_enable_per_process_and_thread_memory_limit": True,
        "max_file_size": DEFAULTS["max_file_size"],
        "max_max_file_size": int(MAXIMA["max_file_size"]),
        "number_of_runs": DEFAULTS["number_of_runs"],
        "max_number_of_runs": int(MAXIMA["number_of_runs"]),
        "redirect_stderr_to_stdout": False,
        "max_extract_size": MAX_EXTRACT_KB,
        "enable_batched_submissions": True,
        "max_submission_batch_size": MAX_BATCH,
        "submission_cache_duration": 1.0,
        "use_docs_as_homepage": False,
        "allow_enable_network": False,
        "enable_network": False,
        # base64 only when asked for (base64_encoded=true), as Judge0 with this set.
        "disable_implicit_base64_encoding": True,
    }


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


def _decode_text(value: str | None, base64_encoded: bool) -> bytes | None:
    if value is None:
        return None
    return decode64(value) if base64_encoded else value.encode()


def _shell_words(value: str | None, field: str) -> list[str]:
    """``value`` split as shell words, refused as the schema's pattern refuses it."""
    if value and not re.match(SHELL_WORDS_PATTERN, value):
        raise InvalidRequest(
            field, "cannot be split as shell words (an unclosed quote, a trailing backslash, NUL)"
        )
    return shlex.split(value or "")


def _extract(archive: bytes, skip: str | None, settings: Settings) -> list[FileSpec]:
    """The zip's files beside the source (at most what a request may carry)."""
    max_bytes = min(MAX_EXTRACT_KB * 1024, settings.max_files * settings.max_file_bytes)
    files = unpack(archive, settings.max_files - (skip is not None), max_bytes, skip)
    return [
        FileSpec(name=name, content=_b64(data) or "", encoding="base64") for name, data in files
    ]


def accept(
    sub: Judge0Submission, base64_encoded: bool, catalog: Catalog, settings: Settings
) -> Accepted:
    """Validate with Judge0's rules and translate; raises InvalidRequest naming the field."""
    multi_file = sub.language_id == MULTI_FILE
    source = _decode_text(sub.source_code, base64_encoded)
    if not multi_file and blank(source):  # Rails' presence, after decoding
        raise InvalidRequest("source_code", "can't be blank")
    if sub.language_id is None:
        raise InvalidRequest("language_id", "can't be blank")
    language = language_table(catalog).get(sub.language_id)
    if language is None:
        raise InvalidRequest("language_id", f"language with id {sub.language_id} doesn't exist")
    archive = decode64(sub.additional_files) if sub.additional_files else None
    if multi_file and blank(archive):
        raise InvalidRequest("additional_files", "can't be blank")
    if multi_file and not blank(source):  # Rails' absence: a project has no source
        raise InvalidRequest("source_code", "must be blank")
    options = sub.compiler_options
    if not blank((options or "").encode()) and not takes_compiler_options(
        sub.language_id, language
    ):
        raise InvalidRequest(
            "compiler_options", "setting compiler options is only allowed for compiled languages"
        )
    source = source or b""
    stdin = _decode_text(sub.stdin, base64_encoded)
    expected = _decode_text(sub.expected_output, base64_encoded)
    given = {name: getattr(sub, name) for name in RULES}
    limits = {name: DEFAULTS[name] if value is None else value for name, value in given.items()}
    # compiler_options are checked for every language (an interpreted one ignores them)
    _shell_words(sub.compiler_options, "compiler_options")
    args = _shell_words(sub.command_line_arguments, "command_line_arguments")
    try:
        stdin_text = (stdin or b"").decode()
    except UnicodeDecodeError as exc:
        raise InvalidRequest("stdin", "must decode to UTF-8 text") from exc
    files = (
        [] if multi_file else [FileSpec(name=None, content=_b64(source) or "", encoding="base64")]
    )
    if archive:
        files += _extract(archive, None if multi_file else language.source_file, settings)
    if not files:  # a multi-file program whose bytes are no zip: no script, so Judge0's
        # Runtime Error when it runs; the request needs a file, the archive as Judge0 writes it
        files = [FileSpec(name=ARCHIVE_NAME, content=_b64(archive) or "", encoding="base64")]
    run_max = language.run_limits.maximum
    # 0 is isolate's "no limit": the CPU time is bounded by the wall-clock limit, the
    # files and outputs by the language's maxima
    cpu_ms = (
        math.ceil((limits["cpu_time_limit"] + limits["cpu_extra_time"]) * 1000)
        if limits["cpu_time_limit"]
        else run_max.cpu_time_ms
    )
    size_kb = int(limits["max_file_size"])
    file_size_kb, output_bytes = (
        (max(size_kb, min(MIN_FILE_SIZE_KB, run_max.file_size_kb)),
         min(size_kb * 1024, run_max.output_bytes))
        if size_kb
        else (run_max.file_size_kb, run_max.output_bytes)
    )  # fmt: skip
    native = CodeExecutionRequest(
        language=language.name,
        version=language.version,
        files=files,
        stdin=stdin_text,
        args=args,
        limits=LimitsIn(
            timeout_ms=math.ceil(limits["wall_time_limit"] * 1000),
            cpu_time_ms=cpu_ms,
            memory_mb=max(1, math.ceil(limits["memory_limit"] / 1024)),
            processes=int(limits["max_processes_and_or_threads"]),
            file_size_kb=file_size_kb,
            output_bytes=output_bytes,
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
