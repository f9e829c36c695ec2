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


def test_the_protocol_docs_list_exactly_the_typed_messages() -> None:
    """protocol.py's docstring is the agent's documentation; messages.py is what the
    host sends and reads. They must say the same (paste ``describe()`` if not)."""
    from tvm.pyrovm.drivers.messages import describe

    documented = "\n".join(
        line.removeprefix("    ") for line in (protocol.__doc__ or "").split("\n")
    )
    assert describe() in documented


def test_typed_messages_round_trip_through_the_wire_form() -> None:
    from tvm.pyrovm.drivers import messages as m

    stage = m.Stage(name="run", argv=["python3", "x.py"], stdin=b"\x00\xff", limits={"a": 1},
                    files=[m.File("x.py", b"print(1)", 0o600)])  # fmt: skip
    frame = protocol.decode_body(protocol.encode(m.to_wire(stage))[4:])
    assert frame["stdin"] == "AP8=" and frame["files"][0] == {
        "path": "x.py", "data": "cHJpbnQoMSk=", "mode": 0o600,
    }  # fmt: skip
    reply = {"type": "stage_result", "status": "ok", "exit_code": 0, "signal": None,
             "stdout": "aGk=", "stderr": "", "output": "aGk=", "stdout_truncated": False,
             "stderr_truncated": False, "cpu_ms": 1, "wall_ms": 2, "memory_kb": 3,
             "from_a_newer_agent": True}  # fmt: skip
    parsed = m.from_wire(reply)
    assert isinstance(parsed, m.StageReply) and parsed.stdout == b"hi" and parsed.stderr == b""
    event = m.from_wire({"type": "event", "event": "stdout", "data": "aGk="})
    assert event == m.Event("stdout", {"data": "aGk="})
    with pytest.raises(ValueError, match="memory_kb"):
        m.from_wire({k: v for k, v in reply.items() if k != "memory_kb"})
    with pytest.raises(ValueError, match="unknown frame type"):
        m.from_wire({"type": "nonsense"})
