"""Judge0 results: a native execution result -> Judge0's attributes, and how a stored
submission is rendered (``fields``, ``base64_encoded``). The rules are in
:mod:`tvm.compat.judge0`'s docstring.

A result is a dict of Judge0 attributes where the text attributes (``stdout``,
``stderr``, ``compile_output``, ``message``) are base64 of the raw bytes, so it
can be stored as JSON and rendered either way later.

Rendered base64 is Judge0's (Ruby's ``encode64``): lines of 60 characters, each
ending in a newline; ``additional_files`` is always rendered so, as Judge0 does.
``fields=*`` is exactly Judge0 CE 1.13.1's columns plus ``status`` and ``language``.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from tvm.api import ExecutionResponse, StageResult
from tvm.compat.judge0 import SIGNAL_NUMBERS, unb64
from tvm.compat.judge0_languages import language_ref
from tvm.compat.judge0_status import SIGNAL_STATUS, Status, describe
from tvm.config.catalog import Catalog
from tvm.errors import InvalidRequest, NotUtf8

# Attributes whose values are text (base64 when base64_encoded=true).
TEXT_FIELDS = ("source_code", "stdin", "expected_output", "stdout", "stderr", "compile_output",
               "message")  # fmt: skip
DEFAULT_FIELDS = ("token", "time", "memory", "stdout", "stderr", "compile_output", "message",
                  "status")  # fmt: skip
ALL_FIELDS = (
    "source_code", "language_id", "stdin", "expected_output", "stdout", "status_id",
    "created_at", "finished_at", "time", "memory", "stderr", "token", "number_of_runs",
    "cpu_time_limit", "cpu_extra_time", "wall_time_limit", "memory_limit", "stack_limit",
    "max_processes_and_or_threads", "enable_per_process_and_thread_time_limit",
    "enable_per_process_and_thread_memory_limit", "max_file_size", "compile_output",
    "exit_code", "exit_signal", "message", "wall_time", "compiler_options",
    "command_line_arguments", "redirect_stderr_to_stdout", "callback_url", "additional_files",
    "enable_network", "status", "language",
)  # fmt: skip


def _b64(data: bytes | None) -> str | None:
    return None if not data else base64.b64encode(data).decode()


def encode64(data: bytes) -> str:
    """Base64 as Judge0 (Ruby's ``Base64.encode64``) writes it: 60-character lines."""
    flat = base64.b64encode(data).decode()
    return "".join(flat[i : i + 60] + "\n" for i in range(0, len(flat), 60))


def _bytes(stage: StageResult, name: str) -> bytes:
    return base64.b64decode(getattr(stage, name) or "")


def _strip(data: bytes) -> bytes:
    return b"\n".join(line.rstrip() for line in data.split(b"\n")).rstrip()


def internal_error(message: str) -> dict[str, Any]:
    return {"status_id": Status.INTERNAL_ERROR, "message": _b64(message.encode()), "stdout": None,
            "stderr": None, "compile_output": None, "exit_code": None, "exit_signal": None,
            "time": None, "wall_time": None, "memory": None}  # fmt: skip


def one_run(response: ExecutionResponse, params: Mapping[str, Any]) -> dict[str, Any]:
    """One native result -> Judge0 attributes (see the rules in tvm.compat.judge0)."""
    compile_stage = response.compile
    compile_output = _bytes(compile_stage, "output") if compile_stage else b""
    if response.status == "compile_error" and compile_stage is not None:
        if compile_stage.status == "timeout":
            compile_output = b"Compilation time limit exceeded."
        result = internal_error("")
        result.update(status_id=Status.COMPILATION_ERROR, message=None,
                      compile_output=_b64(compile_output))  # fmt: skip
        return result
    stage = response.run
    if stage is None or stage.status == "internal_error":
        # An internal stage's stderr is the reason, as text (never base64).
        return internal_error(response.message or (stage.stderr if stage else "") or "internal")
    stdout, stderr = _bytes(stage, "stdout"), _bytes(stage, "stderr")
    if params.get("redirect_stderr_to_stdout"):
        stdout, stderr = _bytes(stage, "output"), b""
    signal_number = SIGNAL_NUMBERS.get(stage.signal or "")
    message: str | None = None
    cpu_limit = params["cpu_time_limit"]  # 0: none
    if stage.status == "timeout" or (cpu_limit and stage.cpu_ms > cpu_limit * 1000):
        status, message = Status.TIME_LIMIT_EXCEEDED, "Time limit exceeded"
    elif stage.status == "output_limit":
        status, signal_number, message = Status.SIGXFSZ, 25, "Output limit exceeded"
    elif stage.status == "memory_limit":
        status, signal_number, message = Status.OTHER, 9, "Memory limit exceeded"
    elif stage.status == "signal":
        status = SIGNAL_STATUS.get(stage.signal or "", Status.OTHER)
        message = f"Caught fatal signal {signal_number or stage.signal}"
    elif stage.status == "runtime_error":
        status, message = Status.NZEC, f"Exited with error status {stage.exit_code}"
    else:
        expected = unb64(params.get("expected_output"))
        same = expected is None or _strip(expected) == _strip(stdout)
        status = Status.ACCEPTED if same else Status.WRONG_ANSWER
    return {
        "status_id": status,
        "stdout": _b64(stdout),
        "stderr": _b64(stderr),
        "compile_output": _b64(compile_output),
        "message": _b64(message.encode()) if message else None,
        "exit_code": stage.exit_code if stage.exit_code is not None else 0,
        "exit_signal": signal_number,
        "time": stage.cpu_ms / 1000,
        "wall_time": stage.wall_ms / 1000,
        "memory": stage.memory_kb,
    }


def average(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Judge0's number_of_runs: the last run's attributes, time and memory averaged."""
    result = dict(runs[-1])
    timed = [run for run in runs if run.get("time") is not None]
    if len(timed) > 1:
        result["time"] = sum(run["time"] for run in timed) / len(timed)
        result["wall_time"] = sum(run["wall_time"] for run in timed) / len(timed)
        result["memory"] = round(sum(run["memory"] for run in timed) / len(timed))
    return result


# -- rendering --------------------------------------------------------------------------
# What a name of ``?fields=`` may have around it (ASCII whitespace: fields_pattern says the same).
FIELD_SPACE = " \t\n\r\f\v"


def fields_pattern() -> str:
    """``?fields=`` as parse_fields reads it: comma-separated pieces, each empty,
    ``*`` or an attribute name, with whitespace around."""
    space = "[" + "".join(f"\\x{ord(c):02x}" for c in FIELD_SPACE) + "]*"
    piece = rf"{space}(\*|{'|'.join(ALL_FIELDS)})?{space}"
    return rf"^{piece}(,{piece})*$"


def parse_fields(fields: str | None) -> tuple[str, ...]:
    """``?fields=`` -> attribute names; ``*`` is all; unknown names are a 400."""
    if fields is None or not fields.strip(FIELD_SPACE):
        return DEFAULT_FIELDS
    pieces = (name.strip(FIELD_SPACE) for name in fields.split(","))
    names = tuple(name for name in pieces if name)
    if "*" in names:
        return ALL_FIELDS
    invalid = [name for name in names if name not in ALL_FIELDS]
    if invalid:
        raise InvalidRequest("fields", f"invalid fields: [{', '.join(invalid)}]")
    return names


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _decimal(value: float | None, digits: int = 3) -> str | None:
    return None if value is None else f"{value:.{digits}f}"


def attributes(row: Mapping[str, Any], catalog: Catalog) -> dict[str, Any]:
    """Every attribute of a stored submission; text attributes as raw bytes."""
    params, result = row["params"], row["result"] or {}
    status_id = row["status_id"]
    out: dict[str, Any] = {name: params.get(name) for name in ALL_FIELDS if name in params}
    out.update(
        token=row["token"],
        status_id=status_id,
        status=describe(status_id),
        language=language_ref(catalog, params["language_id"]),
        created_at=_iso(row["created_at"]),
        finished_at=_iso(row["finished_at"]),
        cpu_time_limit=_decimal(params["cpu_time_limit"], 1),
        cpu_extra_time=_decimal(params["cpu_extra_time"], 1),
        wall_time_limit=_decimal(params["wall_time_limit"], 1),
        memory_limit=int(params["memory_limit"]),
        exit_code=result.get("exit_code"),
        exit_signal=result.get("exit_signal"),
        time=_decimal(result.get("time")),
        wall_time=_decimal(result.get("wall_time")),
        memory=result.get("memory"),
    )
    for name in ("source_code", "stdin", "expected_output"):
        out[name] = unb64(params.get(name))
    archive = params.get("additional_files")
    out["additional_files"] = base64.b64decode(archive) if archive else None
    for name in ("stdout", "stderr", "compile_output", "message"):
        out[name] = unb64(result.get(name))
    return out


def render(
    attrs: Mapping[str, Any], fields: tuple[str, ...], base64_encoded: bool
) -> dict[str, Any]:
    """The JSON of a submission; raises NotUtf8 when a text attribute needs base64."""
    out: dict[str, Any] = {}
    for name in fields:
        value = attrs.get(name)
        if name == "additional_files" and value is not None:
            value = encode64(value)
        elif name in TEXT_FIELDS and value is not None:
            if base64_encoded:
                value = encode64(value)
            else:
                try:
                    value = value.decode()
                except UnicodeDecodeError as exc:
                    raise NotUtf8(name) from exc
        out[name] = value
    return out
