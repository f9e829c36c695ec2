"""The zygote's warm-up: the agent's protocol path runs quickened in every
sandbox from the start (so a sandbox's first run does not rewrite, and copy,
the bytecode pages it shares with the zygote), and nothing else changes."""

from __future__ import annotations

import dis
import io
import sys
import types

import pytest

from tvm.pyrovm.agent import protocol, zygote


def _quickened(code: types.CodeType) -> bool:
    plain = [i.opname for i in dis.get_instructions(code)]
    adaptive = [i.opname for i in dis.get_instructions(code, adaptive=True)]  # type: ignore[call-arg]
    return plain != adaptive


@pytest.mark.skipif(sys.version_info < (3, 11), reason="the specialising interpreter is 3.11+")
def test_the_protocol_path_is_quickened_by_the_warm_up() -> None:
    codes = [protocol.encode.__code__, protocol.read_frame.__code__, protocol.decode_body.__code__]
    zygote.warm_up()
    assert all(_quickened(code) for code in codes)


def test_frames_are_the_same_after_the_warm_up() -> None:
    message = {"type": "stage_result", "stdout": "aGk=", "exit_code": 0, "signal": None}
    before = protocol.encode(message)
    zygote.warm_up(rounds=3)
    assert protocol.encode(message) == before
    assert protocol.read_frame(io.BytesIO(before).read) == message
