"""The agent protocol: versioned, length-prefixed JSON frames over a byte stream.

A frame is a 4-byte big-endian unsigned length followed by that many bytes of
UTF-8 JSON encoding one object with a ``type`` key. Binary payloads (file
contents, stdin, output, archives) are base64 strings. The agent speaks first
(``hello``); then the host sends one request at a time and reads its reply.
Any request may instead be answered with ``error``. The messages, with their
fields (the typed host side is ``tvm/pyrovm/drivers/messages.py``; a unit test
keeps this list equal to it)::

    agent -> host:
        hello        {protocol, python, pyrun, pid, initialized}
        ok           {}
        pong         {}
        error        {message}
        stage_result {status, exit_code, signal, stdout, stderr, output, stdout_truncated,
                      stderr_truncated, cpu_ms, wall_ms, memory_kb, warm}
        archive      {data}
        event        {event, ...}
    host -> agent:
        init         {uid, gid, stages, warm_compiler, warm_limits, warm_run} -> ok
        cool         {} -> ok
        files        {files} -> ok
        stage        {name, argv, stdin, limits, pyrun, last, files, stream,
                      terminal} -> stage_result
        archive      {} -> archive
        unpack       {data} -> ok
        ping         {} -> pong
        shutdown     {}
        stdin        {data, eof}
        signal       {signal}
        resize       {rows, cols}
        ack          {size}

Streaming. A request may be answered by any number of ``event`` frames
before its reply: ``{"type": "event", "event": NAME, ...}`` (e.g. output as a
stage writes it). While such a request is open the host may send ``stdin``,
``signal``, ``resize`` and ``ack`` frames for it; they get no reply of their
own (a stage with ``stream``: ``tvm/pyrovm/agent/stream.py``). Anything that
is not an ``event`` ends the request. The host's side of this is
``AgentSession.stream`` (``tvm/pyrovm/drivers/session.py``)::

    async with session.stream(request, StageReply) as exchange:
        async for event in exchange:        # until the reply arrives
            await exchange.send(Stdin(b"more input"))
    reply = exchange.reply

An agent that streams nothing answers every request with its reply alone,
which is all a host that never asks for events reads.

This module is stdlib-only: the agent imports it inside the sandbox.
"""

from __future__ import annotations

import json
import struct

PROTOCOL_VERSION = 1
MAX_FRAME = 256 << 20
_HEADER = struct.Struct(">I")


class ProtocolError(Exception):
    """The peer sent something that is not a frame of this protocol."""


def encode(message: dict) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(body)} bytes exceeds {MAX_FRAME}")
    return _HEADER.pack(len(body)) + body


def decode_header(header: bytes) -> int:
    if len(header) != _HEADER.size:
        raise ProtocolError("truncated frame header")
    (length,) = _HEADER.unpack(header)
    if length > MAX_FRAME:
        raise ProtocolError(f"frame of {length} bytes exceeds {MAX_FRAME}")
    return length


def decode_body(body: bytes) -> dict:
    try:
        message = json.loads(body)
    except ValueError as exc:
        raise ProtocolError(f"frame is not JSON: {exc}") from exc
    if not isinstance(message, dict) or "type" not in message:
        raise ProtocolError("frame is not an object with a 'type'")
    return message


def read_frame(read) -> dict | None:
    """Read one frame with a blocking ``read(n)``; None at a clean end of stream."""
    header = _read_exact(read, _HEADER.size)
    if not header:
        return None
    return decode_body(_read_exact(read, decode_header(header), eof_ok=False))


def _read_exact(read, n: int, eof_ok: bool = True) -> bytes:
    chunks = []
    got = 0
    while got < n:
        chunk = read(n - got)
        if not chunk:
            if got == 0 and eof_ok:
                return b""
            raise ProtocolError(f"stream ended after {got} of {n} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)
