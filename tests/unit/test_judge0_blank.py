"""Rails' presence as Judge0 applies it, and the schema patterns that say it."""

from __future__ import annotations

import base64
import random
import re

import pytest

from tvm.compat.judge0 import BASE64_PATTERN, decode64
from tvm.compat.judge0_blank import (
    BLANK_BASE64_PATTERN,
    PRESENT_TEXT_PATTERN,
    WHITESPACE,
    blank,
)


@pytest.mark.parametrize(
    ("data", "is_blank"),
    [(None, True), (b"", True), (b" \t\n\v\f\r", True), (b"\x00", False), (b" x ", False),
     ("\u3000".encode(), False), (b"\x85", False)],
)  # fmt: skip
def test_blank_is_ascii_whitespace_only(data: bytes | None, is_blank: bool) -> None:
    assert blank(data) is is_blank


def test_the_text_pattern_matches_exactly_what_is_not_blank() -> None:
    rng = random.Random(7)
    alphabet = [" ", "\t", "\n", "\v", "\f", "\r", "\u3000", "\x85", "a", "\x00"]
    for _ in range(5_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))
        assert bool(re.search(PRESENT_TEXT_PATTERN, text)) is not blank(text.encode()), repr(text)


def _mostly_blank_base64(rng: random.Random) -> str:
    """Valid base64 of bytes that are mostly whitespace, with its last group's unused
    bits sometimes set and spaces sometimes between the digits."""
    data = bytes(
        rng.choice(WHITESPACE) if rng.random() < 0.95 else rng.randrange(256)
        for _ in range(rng.randint(0, 8))
    )
    digits = list(base64.b64encode(data).decode())
    pad = digits.count("=")
    if pad and rng.random() < 0.5:  # the last digit before "=" keeps bits nobody reads
        last = len(digits) - pad - 1
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        spare = (1 << (2 if pad == 1 else 4)) - 1
        digits[last] = alphabet[alphabet.index(digits[last]) | rng.randint(0, spare)]
    return "".join(d + (rng.choice(" \n\r\t") if rng.random() < 0.1 else "") for d in digits)


def test_the_base64_pattern_matches_exactly_what_decodes_to_blank() -> None:
    rng = random.Random(7)
    seen = {True: 0, False: 0}
    for _ in range(20_000):
        text = _mostly_blank_base64(rng)
        assert re.match(BASE64_PATTERN, text), repr(text)
        is_blank = blank(decode64(text))
        seen[is_blank] += 1
        assert bool(re.match(BLANK_BASE64_PATTERN, text)) is is_blank, repr(text)
    assert min(seen.values()) > 1_000, seen  # both answers were tried, many times
