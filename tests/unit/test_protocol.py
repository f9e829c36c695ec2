from __future__ import annotations

import io

import pytest

from tvm.pyrovm.agent import protocol


def test_round_trip() -> None:
    frames = protocol.encode({"type": "a", "x": 1}) + protocol.encode({"type": "b"})
    stream = io.BytesIO(frames)
    assert protocol.read_frame(stream.read) == {"type": "a", "x": 1}
    assert protocol.read_frame(stream.read) == {"type": "b"}
    assert protocol.read_frame(stream.read) is None


@pytest.mark.parametrize(
    "data",
    [b"\x00\x00", b"\x00\x00\x00\x05abc", b"\x00\x00\x00\x02[]", b"\x00\x00\x00\x01x",
     b"\xff\xff\xff\xff"],
)  # fmt: skip
def test_garbage_is_a_protocol_error(data: bytes) -> None:
    with pytest.raises(protocol.ProtocolError):
        protocol.read_frame(io.BytesIO(data).read)
