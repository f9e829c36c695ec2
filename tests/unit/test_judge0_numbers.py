"""Judge0's number attributes: the range patterns match exactly the numbers in range,
and the server takes exactly what the schema says."""

from __future__ import annotations

import random
import re
from decimal import Decimal

import pytest

from tvm.compat.judge0 import BATCH_TOKENS_PATTERN, MAX_BATCH, RULES, batch_tokens
from tvm.compat.judge0_numbers import NumberRule, integer_pattern, parse_language_id


@pytest.mark.parametrize(
    ("low", "high"), [(0, 0), (0, 9), (1, 10), (7, 123), (99, 1000), (0, 4096), (1, 120)]
)
def test_integer_pattern_matches_exactly_the_range(low: int, high: int) -> None:
    pattern = re.compile(integer_pattern(low, high))
    for n in range(0, 5000):
        assert bool(pattern.fullmatch(str(n))) == (low <= n <= high), n


def test_integer_pattern_of_a_wide_range() -> None:
    pattern = re.compile(integer_pattern(2048, 512000))
    for n in range(0, 600_000, 7):
        assert bool(pattern.fullmatch(str(n))) == (2048 <= n <= 512000), n
    for n in (2047, 2048, 9999, 10000, 99999, 100000, 511999, 512000, 512001):
        assert bool(pattern.fullmatch(str(n))) == (2048 <= n <= 512000), n


def _spellings(rng: random.Random, whole: bool) -> str:
    integer = str(rng.choice([0, 1, 2, 5, 9, 10, 14, 15, 16, 19, 20, 21, 119, 120, 121,
                              2047, 2048, 4096, 4097, 128000, 512000, 512001,
                              rng.randint(0, 600000)]))  # fmt: skip
    text = "0" * rng.choice([0, 0, 0, 2]) + integer
    if rng.random() < 0.5:
        text += "." + rng.choice(["0", "00", "5", "0001", "9", "1000"] + ([""] if whole else []))
    sign = rng.choice(["", "", "", "+", "-"])
    space = rng.choice(["", "", " ", "\t", "\n"])
    return space + sign + text + rng.choice(["", "", " ", "\n"])


@pytest.mark.parametrize("name", sorted(RULES))
def test_the_pattern_and_the_server_agree_on_every_number(name: str) -> None:
    """A string the pattern matches is taken, with its exact value; one it does not
    match is refused, with Rails' message for a number out of range."""
    rule = RULES[name]
    rng = random.Random(name)
    for _ in range(20_000):
        text = _spellings(rng, rule.whole)
        matches = bool(re.search(rule.pattern, text))
        stripped = text.strip(" \t\n")
        value = Decimal(stripped) if re.fullmatch(r"[+-]?[0-9]+(\.[0-9]+)?", stripped) else None
        in_range = value is not None and (
            (value >= rule.low if rule.inclusive else value > rule.low)
            and value <= rule.high
            and (not rule.whole or "." not in stripped)
        )
        assert matches == in_range, (name, text)
        if matches:
            assert rule.parse(text) == float(value)  # type: ignore[arg-type]
        else:
            with pytest.raises(ValueError, match="must be|is not a number"):
                rule.parse(text)


def test_json_numbers_and_their_messages() -> None:
    cpu = NumberRule(0, True, 15.0, whole=False)
    assert cpu.parse(0) == 0 and cpu.parse(15) == 15.0 and cpu.parse(None) is None
    assert cpu.parse("") is None and cpu.parse(" \n") is None  # Rails: nil, the default
    for value, message in [(15.5, "must be less than or equal to 15.0"),
                           (-1, "must be greater than or equal to 0"),
                           (True, "is not a number"), (float("nan"), "is not a number"),
                           ([], "is not a number")]:  # fmt: skip
        with pytest.raises(ValueError, match=re.escape(message)):
            cpu.parse(value)
    runs = NumberRule(0, False, 20, whole=True)
    assert runs.parse(3.0) == 3 and isinstance(runs.parse(3.0), int)
    with pytest.raises(ValueError, match="must be greater than 0"):
        runs.parse(0)
    with pytest.raises(ValueError, match="must be an integer"):
        runs.parse(2.5)
    assert str(cpu.parse("-0")) == "0.0"  # Ruby's -0.0 is in range; stored as 0.0


def test_language_id_is_a_number_or_its_digits() -> None:
    assert parse_language_id("71") == 71 and parse_language_id(71) == 71
    for bad, message in [("071", "doesn't exist"), ("7 1", "is not a number"),
                         ("\u0667\u0661", "is not a number"), (True, "is not a number")]:  # fmt: skip
        with pytest.raises(ValueError, match=message):
            parse_language_id(bad)


def test_the_batch_tokens_pattern_says_exactly_what_ruby_splits_into_1_to_20() -> None:
    rng = random.Random(11)
    pattern = re.compile(BATCH_TOKENS_PATTERN)
    alphabet = ["ab", ",", ",", " ", "\n", "\x00", "\t", "é"]
    samples = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
               for _ in range(100_000)]  # fmt: skip
    for count in (19, 20, 21):  # around the maximum, with Ruby's edge cases
        for text in (",".join("t" * count), ",".join("t" * count) + ",,  ",
                     "," + ",".join("t" * (count - 1)), ",".join(["t"] * (count - 1) + [" "]) + ","):  # fmt: skip
            samples.append(text)
    for text in samples:
        wanted = 1 <= len(batch_tokens(text)) <= MAX_BATCH
        assert bool(pattern.search(text)) == wanted, repr(text)
    assert batch_tokens(" a,,b,, ") == ["a", "", "b"] and batch_tokens(", ,") == ["", " "]
