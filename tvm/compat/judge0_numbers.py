"""Judge0 CE's number attributes (limits, ``number_of_runs``, ``language_id``) as
its Rails model takes them, in values and in the schema.

Judge0 validates each limit with Rails' ``numericality`` on the value the client
sent: a JSON number, or a string that parses as one (``"3.0"``, ``" 2 "``,
``"+5"``; front ends send their form fields so), with ``true``, ``"abc"`` or
``"0x1A"`` "is not a number". Its bounds (Judge0 CE 1.13.1's model) are
inclusive except where it says ``greater_than``, and the messages are Rails':
"must be greater than or equal to 2048", "must be less than or equal to 15.0"
(a maximum read with ``to_f`` is written as a float, one read with ``to_i`` as
an integer). A blank string (empty or whitespace) is no value at all (Rails casts
it to nil, and the default applies). A zero is Judge0's (isolate's) "no limit of this kind" where
zero is allowed (``cpu_time_limit``, ``max_file_size``, ``stack_limit``).

The schema says the same: each attribute is a JSON number in its range, or a
string matching a pattern that spells out exactly the decimal numbers in that
range (:func:`number_pattern`), and the server accepts exactly what the pattern
matches (it is checked with the same pattern). Whole-number attributes take
whole numbers only (``5``, ``5.0``, ``"5"``), as the schema types them.
``language_id`` is one of the catalog's ids, as a number or as its digits.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from typing import Any

from tvm.compat.judge0_blank import SPACE, SPACE_CHARS

# Ruby's Kernel#Float allows ASCII whitespace around the number.
_SPACE = f"[{SPACE_CHARS}]*"
# A decimal number in any range: what gets Rails' range message rather than "is not a number".
_ANY_NUMBER = re.compile(rf"^{_SPACE}[+-]?[0-9]+(\.[0-9]+)?{_SPACE}$")


def _same_length(low: str, high: str) -> list[str]:
    """Patterns for the integers from ``low`` to ``high``, written with the same
    number of digits (leading zeros kept as digits)."""
    if low == high:
        return [low]
    rest = len(low) - 1
    if low[1:] == "0" * rest and high[1:] == "9" * rest:
        return [f"[{low[0]}-{high[0]}]" + "[0-9]" * rest]
    if low[0] == high[0]:
        return [low[0] + tail for tail in _same_length(low[1:], high[1:])]
    out = [low[0] + tail for tail in _same_length(low[1:], "9" * rest)]
    if int(low[0]) + 1 <= int(high[0]) - 1:
        out.append(f"[{int(low[0]) + 1}-{int(high[0]) - 1}]" + "[0-9]" * rest)
    return out + [high[0] + tail for tail in _same_length("0" * rest, high[1:])]


def integer_pattern(low: int, high: int) -> str:
    """An alternation matching the integers ``low`` to ``high`` (``0 <= low <= high``),
    written without leading zeros."""
    parts: list[str] = []
    while low <= high:
        top = min(high, 10 ** len(str(low)) - 1)
        parts += _same_length(str(low), str(top))
        low = top + 1
    return "(?:" + "|".join(parts) + ")"


def number_pattern(low: int, inclusive: bool, high: int, whole: bool) -> str:
    """A pattern for the decimal strings whose value is in the range: at least
    ``low`` (more than it unless ``inclusive``) and at most ``high``; with no
    fraction when ``whole``. Leading zeros, a ``+`` and surrounding whitespace are
    allowed, as Ruby's ``Float()`` has them."""
    fraction, zeros = ("", "") if whole else (r"(?:\.[0-9]+)?", r"(?:\.0+)?")
    first = low if inclusive else low + 1
    branches = [f"{high}{zeros}"]
    if first <= high - 1:
        branches.insert(0, integer_pattern(first, high - 1) + fraction)
    if not inclusive and not whole:
        branches.append(rf"{low}\.[0-9]*[1-9][0-9]*")
    signed = rf"\+?0*(?:{'|'.join(branches)})"
    if low == 0 and inclusive:  # Ruby's -0.0 is in range too
        signed += "|-0+" + zeros
    return rf"^{_SPACE}(?:{signed})?{_SPACE}$"  # blank: no value


@dataclass(frozen=True)
class NumberRule:
    """One number attribute: Rails' ``numericality`` bounds, as Judge0 CE sets them."""

    low: int
    inclusive: bool  # greater_than_or_equal_to (else greater_than)
    high: int | float  # Judge0's maximum; a float when its config reads it with to_f
    whole: bool  # an integer attribute here

    @cached_property
    def pattern(self) -> str:
        return number_pattern(self.low, self.inclusive, int(self.high), self.whole)

    def schema(self, description: str) -> dict[str, Any]:
        bound = "minimum" if self.inclusive else "exclusiveMinimum"
        number = {"type": "integer" if self.whole else "number", bound: self.low,
                  "maximum": self.high}  # fmt: skip
        text = {"type": "string", "pattern": self.pattern}
        return {"anyOf": [number, text, {"type": "null"}], "description": description}

    def _in_range(self, value: float | Decimal) -> None:
        if self.inclusive and value < self.low:
            raise ValueError(f"must be greater than or equal to {self.low}")
        if not self.inclusive and value <= self.low:
            raise ValueError(f"must be greater than {self.low}")
        if value > self.high:
            raise ValueError(f"must be less than or equal to {self.high}")

    def parse(self, value: Any) -> int | float | None:
        """The attribute's value, or a ValueError with Rails' message."""
        if value is None or (isinstance(value, str) and not value.strip(SPACE)):
            return None  # Rails casts a blank string to nil: the default applies
        if isinstance(value, str):
            if re.search(self.pattern, value):
                text = value.strip(SPACE)
                return int(text) if self.whole else float(text) or 0.0  # not -0.0
            if not _ANY_NUMBER.search(value):
                raise ValueError("is not a number")
            if self.whole and "." in value:
                raise ValueError("must be an integer")
            self._in_range(Decimal(value.strip(SPACE)))  # exact: "15.000001" is over 15
            raise ValueError("is not a number")  # (every other number matches the pattern)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("is not a number")
        if not math.isfinite(value):
            raise ValueError("is not a number")
        if self.whole and value != int(value):
            raise ValueError("must be an integer")
        self._in_range(value)
        return int(value) if self.whole else float(value)


def parse_language_id(value: Any) -> Any:
    """``language_id`` as a JSON integer or its digits (``"71"``, no other spelling of
    it); anything else that is not a number is "is not a number". Whether the id
    exists is the caller's check."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        if str(int(value)) == value:
            return int(value)
        raise ValueError(f"language with id {value} doesn't exist")
    if isinstance(value, bool | str):
        raise ValueError("is not a number")
    return value


def language_id_schema(ids: list[int]) -> dict[str, Any]:
    return {
        "anyOf": [
            {"type": "integer", "enum": ids},
            {"type": "string", "enum": [str(i) for i in ids]},
        ],
        "title": "Language Id",
        "description": "an id of GET /languages, as a number or its digits",
    }
