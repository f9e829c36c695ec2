"""The agent protocol: versioned, length-prefixed JSON frames over a byte stream.

A frame is a 4-byte big-endian unsigned length followed by that many bytes of
UTF-8 JSON encoding one object with a ``type`` key. Binary payloads (file
contents, stdin, output, archives) are base64 strings. The conversation::

    agent -> host   {"type": "hello", "protocol": 1, "python": "3.11.2"}
    host  -> agent  {"type": "init", "uid": 60001, "gid": 60001, "workdir": "/work",
                     "env": {...}}                                  -> {"type": "ok"}
    host  -> agent  {"type": "files", "files": [{"path", "data", "mode"}]}
                                                                    -> {"type": "ok"}
    host  -> agent  {"type": "stage", "name": "run", "argv": [...], "shell": null,
                     "stdin": "<b64>", "limits": {...}}            -> {"type": "stage_result", ...}
    host  -> agent  {"type": "archive"}                             -> {"type": "archive", "data"}
    host  -> agent  {"type": "unpack", "data": "<b64 tar>"}          -> {"type": "ok"}
    host  -> agent  {"type": "shutdown"}                            -> (agent exits)

Any request may instead be answered with ``{"type": "error", "message": ...}``.
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
