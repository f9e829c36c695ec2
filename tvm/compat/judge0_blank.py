"""Rails' ``presence``, as Judge0 CE applies it to ``source_code`` and to a multi-file
program's ``additional_files``, in bytes and in the schema.

Judge0 validates the decoded bytes (its model's getters decode base64, and
``additional_files`` is always base64): a value is blank when it is empty or only
ASCII whitespace (Ruby's ``[[:space:]]`` on a binary string: space, ``\\t``,
``\\n``, ``\\v``, ``\\f``, ``\\r``), and such a value is "can't be blank".

For the schema, two patterns say the same of the text a client sends:
:data:`PRESENT_TEXT_PATTERN` for plain text (one character that is not such
whitespace), and :data:`BLANK_BASE64_PATTERN` for base64 that decodes to blank
bytes (every group of four decodes to whitespace only), which a present archive
must not match.
"""

from __future__ import annotations

import base64
import itertools

# Ruby's ASCII whitespace: what [[:space:]], strip and Kernel#Float skip.
SPACE = " \t\n\v\f\r"
SPACE_CHARS = r" \t\n\v\f\r"  # the same, as regex escapes for a character class
WHITESPACE = SPACE.encode()
PRESENT_TEXT_PATTERN = f"[^{SPACE_CHARS}]"
BLANK_TEXT_PATTERN = f"^[{SPACE_CHARS}]*$"  # blank as text and as base64 (it decodes to nothing)
# What base64 may hold between its digits (Ruby's encode64 wraps lines).
BASE64_SPACE = "[ \\t\\r\\n]*"


def blank(data: bytes | None) -> bool:
    """Rails' ``blank?`` of a decoded attribute."""
    return not (data or b"").strip(WHITESPACE)


def _digits(data: bytes, keep: int) -> str:
    """The first ``keep`` base64 digits of ``data``."""
    return base64.b64encode(data).decode()[:keep]


def _alternation(words: set[str]) -> str:
    """A pattern for exactly ``words`` (all of one length), spaces allowed after
    each digit: a trie whose branches with the same rest share a character class."""
    if words == {""}:
        return ""
    rests: dict[str, set[str]] = {}
    for word in words:
        rests.setdefault(word[0], set()).add(word[1:])
    by_rest: dict[frozenset[str], list[str]] = {}
    for first, rest in rests.items():
        by_rest.setdefault(frozenset(rest), []).append(first)
    branches = sorted(
        "[" + "".join(sorted(firsts)) + "]" + BASE64_SPACE + _alternation(set(rest))
        for rest, firsts in by_rest.items()
    )
    return "(?:" + "|".join(branches) + ")"


# Every group of four digits that decodes to three whitespace bytes; every last
# group of three (then "=") or two (then "==") that decodes to two or one. The
# unused low bits of a last group may be anything: Ruby and Python both drop them.
_FULL = {_digits(bytes(group), 4) for group in itertools.product(WHITESPACE, repeat=3)}
_THREE = {
    _digits(bytes((one, two, low << 6)), 3)
    for one, two in itertools.product(WHITESPACE, repeat=2)
    for low in range(4)
}
_TWO = {_digits(bytes((one, low << 4)), 2) for one in WHITESPACE for low in range(16)}
_LAST = (
    f"(?:{_alternation(_THREE)}={BASE64_SPACE}|{_alternation(_TWO)}={BASE64_SPACE}={BASE64_SPACE})"
)
BLANK_BASE64_PATTERN = f"^{BASE64_SPACE}{_alternation(_FULL)}*{_LAST}?$"
