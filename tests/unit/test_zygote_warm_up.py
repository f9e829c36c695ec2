"""The zygote's warm-up: the agent's protocol path runs quickened in every
sandbox from the start (so a sandbox's first run does not rewrite, and copy,
the bytecode pages it shares with the zygote), and nothing else changes."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from tvm.pyrovm.agent import protocol, zygote

# Run in a fresh interpreter: in this one, earlier tests may have quickened the code already.
_CHECK = """
import dis
from tvm.pyrovm.agent import protocol, zygote

def quickened(code):
    plain = [i.opname for i in dis.get_instructions(code)]
    return plain != [i.opname for i in dis.get_instructions(code, adaptive=True)]

codes = [protocol.encode.__code__, protocol.read_frame.__code__, protocol.decode_body.__code__]
print([quickened(c) for c in codes])
zygote.warm_up()
print([quickened(c) for c in codes])
"""


@pytest.mark.skipif(sys.version_info < (3, 11), reason="the specialising interpreter is 3.11+")
def test_the_protocol_path_is_quickened_by_the_warm_up() -> None:
    out = subprocess.run([sys.executable, "-c", _CHECK], capture_output=True, text=True, check=True)
    before, after = out.stdout.splitlines()
    assert before == "[False, False, False]"
    assert after == "[True, True, True]"


def test_frames_are_the_same_after_the_warm_up() -> None:
    message = {"type": "stage_result", "stdout": "aGk=", "exit_code": 0, "signal": None}
    before = protocol.encode(message)
    zygote.warm_up(rounds=3)
    assert protocol.encode(message) == before
    assert protocol.read_frame(io.BytesIO(before).read) == message
