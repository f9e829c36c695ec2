"""The agent protocol's messages, typed: one dataclass per frame type.

This is the host's side of :mod:`tvm.pyrovm.agent.protocol` (the agent, which
is stdlib-only and runs inside the sandbox, reads the same frames as plain
dicts). ``bytes`` fields travel as base64 strings; :func:`to_wire` and
:func:`from_wire` convert. The protocol's docstring lists every message with
exactly these fields (:func:`describe` writes that list; a unit test checks it).
"""

from __future__ import annotations

import base64
import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar


@dataclass(frozen=True)
class Message:
    """A frame of the protocol; ``TYPE`` is its ``type`` key."""

    TYPE: ClassVar[str]


# -- agent -> host ----------------------------------------------------------------
@dataclass(frozen=True)
class Hello(Message):
    """The agent's first frame, unasked."""

    TYPE = "hello"
    protocol: int
    python: str = ""
    pyrun: bool = False  # can run a Python program in a forked child of itself
    pid: int = 0
    initialized: bool = False  # the driver handed the init request over at start


@dataclass(frozen=True)
class Ok(Message):
    TYPE = "ok"


@dataclass(frozen=True)
class Pong(Message):
    TYPE = "pong"


@dataclass(frozen=True)
class Error(Message):
    """The answer to a request the agent could not carry out."""

    TYPE = "error"
    message: str


@dataclass(frozen=True)
class StageReply(Message):
    """What one stage did, as the agent measured it."""

    TYPE = "stage_result"
    status: str  # ok | runtime_error | signal | timeout | memory_limit | output_limit
    exit_code: int | None
    signal: str | None
    stdout: bytes
    stderr: bytes
    output: bytes  # stdout and stderr interleaved as written
    stdout_truncated: bool
    stderr_truncated: bool
    cpu_ms: int
    wall_ms: int
    memory_kb: int
    warm: bool = False  # a compiler pre-started in the sandbox did the compile


@dataclass(frozen=True)
class Archive(Message):
    TYPE = "archive"
    data: bytes  # a gzipped tar of the work dir


@dataclass(frozen=True)
class Event(Message):
    """A frame sent while a request is open, before its reply (streaming:
    output as a stage writes it, a process that started or ended...).
    ``event`` names it; the rest of the frame is its ``data``."""

    TYPE = "event"
    event: str
    data: dict[str, Any] = field(default_factory=dict)


# -- host -> agent ----------------------------------------------------------------
@dataclass(frozen=True)
class File:
    path: str  # relative to the work dir
    data: bytes
    mode: int = 0o644


@dataclass(frozen=True)
class Init(Message):
    """Who the program runs as; how many stages will run (runners are forked ahead)."""

    TYPE = "init"
    uid: int
    gid: int
    stages: int = 1
    # A compiler to start ahead of the compile stage (agent/warm.py): the
    # catalog's command prefix, and the compile stage's maximum limits.
    warm_compiler: str | None = None
    warm_limits: dict[str, int] | None = None
    # Or the run stage's interpreter (agent/warm_run.py): the run command, and
    # then ``warm_limits`` are the run stage's maximum.
    warm_run: list[str] | None = None


@dataclass(frozen=True)
class Cool(Message):
    """End what was pre-started for a stage (the compiler, the interpreter):
    the stage will run cold."""

    TYPE = "cool"


@dataclass(frozen=True)
class Files(Message):
    TYPE = "files"
    files: list[File]


@dataclass(frozen=True)
class Stage(Message):
    """Run one stage. ``pyrun``: argv is ``[python3, script, *args]`` and may run
    in a forked child of the agent; ``last``: no stage follows; ``files``:
    written first, in the same round trip."""

    TYPE = "stage"
    name: str
    argv: list[str]
    stdin: bytes
    limits: dict[str, int]
    pyrun: bool = False
    last: bool = True
    files: list[File] = field(default_factory=list)
    # Streamed (tvm/pyrovm/agent/stream.py): output comes as ``output`` events
    # while it runs, and Stdin, Signal, Resize and Ack reach it; ``terminal``
    # ({"rows", "cols"}) runs it on a pty instead of pipes.
    stream: bool = False
    terminal: dict[str, int] | None = None


@dataclass(frozen=True)
class ArchiveRequest(Message):
    TYPE = "archive"


@dataclass(frozen=True)
class Unpack(Message):
    TYPE = "unpack"
    data: bytes  # a tar made by an ``archive`` request


@dataclass(frozen=True)
class Ping(Message):
    TYPE = "ping"


@dataclass(frozen=True)
class Shutdown(Message):
    """The agent exits (no reply)."""

    TYPE = "shutdown"


@dataclass(frozen=True)
class Stdin(Message):
    """Streaming: input for the open request's program; ``eof`` closes its stdin."""

    TYPE = "stdin"
    data: bytes
    eof: bool = False


@dataclass(frozen=True)
class Signal(Message):
    """Streaming: send a signal (``SIGINT``, ``SIGKILL``...) to the open request's program."""

    TYPE = "signal"
    signal: str


@dataclass(frozen=True)
class Resize(Message):
    """Streaming, terminal mode: the program's pty is now ``rows`` x ``cols``."""

    TYPE = "resize"
    rows: int
    cols: int


@dataclass(frozen=True)
class Ack(Message):
    """Streaming flow control: ``size`` more output bytes were forwarded."""

    TYPE = "ack"
    size: int


# Requests with the reply each gets (Shutdown gets none); Stdin, Signal, Resize
# and Ack are sent only while a request is open and get no reply of their own.
REPLIES: dict[type[Message], type[Message]] = {
    Init: Ok,
    Files: Ok,
    Stage: StageReply,
    ArchiveRequest: Archive,
    Unpack: Ok,
    Cool: Ok,
    Ping: Pong,
}
FROM_AGENT: tuple[type[Message], ...] = (Hello, Ok, Pong, Error, StageReply, Archive, Event)
TO_AGENT: tuple[type[Message], ...] = (
    Init, Cool, Files, Stage, ArchiveRequest, Unpack, Ping, Shutdown, Stdin, Signal, Resize, Ack,
)  # fmt: skip
_BY_TYPE: dict[str, type[Message]] = {cls.TYPE: cls for cls in FROM_AGENT}

M = TypeVar("M", bound=Message)


# (name, is bytes, is required) of each field, per message class: looked up once
# (``dataclasses.fields`` is not cheap, and every frame needs it).
_FIELDS: dict[type[Message], tuple[tuple[str, bool, bool], ...]] = {}


def _fields(cls: type[Message]) -> tuple[tuple[str, bool, bool], ...]:
    found = _FIELDS.get(cls)
    if found is None:
        found = _FIELDS[cls] = tuple(
            (f.name, f.type == "bytes",
             f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
            for f in dataclasses.fields(cls)
        )  # fmt: skip
    return found


def to_wire(message: Message) -> dict[str, Any]:
    """The frame of ``message``: its fields, bytes as base64, plus ``type``."""
    frame: dict[str, Any] = {"type": message.TYPE}
    for name, _, _ in _fields(type(message)):
        frame[name] = _encode(getattr(message, name))
    return frame


def _encode(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, File):
        return {"path": value.path, "data": _encode(value.data), "mode": value.mode}
    if isinstance(value, list):
        return [_encode(item) for item in value]
    return value


def from_wire(frame: dict[str, Any], expected: type[M] | None = None) -> Message:
    """The typed message of a frame from the agent. Unknown keys are ignored
    (a newer agent may say more); a missing one is a :class:`ValueError`."""
    cls = _BY_TYPE.get(frame.get("type", ""))
    if cls is None:
        raise ValueError(f"unknown frame type {frame.get('type')!r}")
    if cls is Event:
        rest = {k: v for k, v in frame.items() if k not in ("type", "event")}
        return Event(event=str(frame["event"]), data=rest)
    values: dict[str, Any] = {}
    for name, is_bytes, required in _fields(cls):
        if name in frame:
            value = frame[name]
            values[name] = base64.b64decode(value) if is_bytes else value
        elif required:
            raise ValueError(f"{cls.TYPE} frame lacks {name!r}")
    return cls(**values)


def describe(width: int = 88) -> str:
    """Every message and its fields, as the protocol's docstring lists them."""
    lines = []
    for title, group in (("agent -> host", FROM_AGENT), ("host -> agent", TO_AGENT)):
        lines.append(f"{title}:")
        for cls in group:
            names = [f.name for f in dataclasses.fields(cls)]
            if cls is Event:
                names = ["event", "..."]  # the rest of an event frame is its data
            reply = REPLIES.get(cls)
            text = f"    {cls.TYPE:<13}{{{', '.join(names)}}}"
            text += f" -> {reply.TYPE}" if reply else ""
            while len(text) > width:  # wrap after the last comma that fits
                cut = text.rindex(", ", 0, width) + 1
                lines.append(text[:cut])
                text = " " * 18 + text[cut + 1 :]
            lines.append(text)
    return "\n".join(lines)
