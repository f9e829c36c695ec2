"""E2B's wire formats as TVM writes and reads them: Connect envelopes and
errors, the daemon's entries, multipart uploads."""

from __future__ import annotations

import asyncio
import json
import struct

from starlette.requests import Request

from tvm.errors import LiveOperationError, NotFound
from tvm.pyroshell.e2b import connect
from tvm.pyroshell.e2b.envd import entry_info, multipart_files
from tvm.pyroshell.e2b.sandboxes import error_body


def test_envelopes_and_end_of_stream() -> None:
    frame = connect.envelope({"event": {"start": {"pid": 3}}})
    flags, length = struct.unpack(">BI", frame[:5])
    assert (flags, json.loads(frame[5:])) == (0, {"event": {"start": {"pid": 3}}})
    assert length == len(frame) - 5
    end = connect.end_of_stream(LiveOperationError("not_found", "process 9 not found"))
    assert end[0] == connect.END_STREAM
    assert json.loads(end[5:]) == {"error": {"code": "not_found", "message": "process 9 not found"}}
    assert json.loads(connect.end_of_stream()[5:]) == {}


def test_unary_errors_carry_connect_codes_and_statuses() -> None:
    exists = connect.unary_error(LiveOperationError("already_exists", "directory d exists"))
    assert exists.status_code == 409
    assert json.loads(exists.body) == {"code": "already_exists", "message": "directory d exists"}
    assert connect.unary_error(NotFound("gone")).status_code == 404


def test_what_a_sandboxs_state_refuses_keeps_e2bs_status_not_the_native_409() -> None:
    conflict = LiveOperationError("conflict", "path: /home/user is a directory")
    assert conflict.status_code == 409  # the native API's
    unary = connect.unary_error(conflict)
    assert unary.status_code == 400 and json.loads(unary.body)["code"] == "invalid_argument"
    body = error_body(conflict)  # the daemon's /files
    assert body.status_code == 400 and json.loads(body.body)["code"] == 400


def _request(body: bytes, content_type: str) -> Request:
    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/", "headers":
             [(b"content-type", content_type.encode())]}  # fmt: skip
    return Request(scope, receive)


def test_read_request_unwraps_a_stream_envelope() -> None:
    message = {"process": {"cmd": "/bin/bash", "args": ["-c", "true"]}}
    enveloped = connect.envelope(message)
    assert asyncio.run(connect.read_request(_request(enveloped, connect.STREAM_TYPE))) == message
    plain = json.dumps(message).encode()
    assert asyncio.run(connect.read_request(_request(plain, "application/json"))) == message


def test_entry_info_is_proto_json() -> None:
    raw = {"name": "a", "type": "dir", "path": "/home/user/a", "size": 60, "mode": 0o755,
           "permissions": "drwxr-xr-x", "owner": "user", "group": "user", "mtime": 0.0,
           "symlink_target": None}  # fmt: skip
    info = entry_info(raw)
    assert info["type"] == "FILE_TYPE_DIRECTORY"
    assert info["size"] == "60"  # int64 as a string
    assert info["modifiedTime"] == "1970-01-01T00:00:00Z"
    assert "symlinkTarget" not in info


def test_multipart_files() -> None:
    body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"/home/user/a.bin\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n\x00\r\n\xff\r\n--XyZ--\r\n")  # fmt: skip
    assert multipart_files('multipart/form-data; boundary="XyZ"', body) == [
        ("/home/user/a.bin", b"\x00\r\n\xff")
    ]
