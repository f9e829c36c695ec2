"""The shape of a Lima template, read from Lima's own reference template
(``templates/default.yaml``: every field, with its default or an example).

The reference writes most fields as ``key: null`` under a comment that gives the
built-in default (``# 🟢 Builtin default: "vz"``), and many only as commented-out
examples (``# provision:`` followed by ``# - mode: system``). :func:`reference_shape`
turns both into one example document: nulls become their documented default (so
they have a type) and commented examples are un-commented and parsed.
:func:`shape_problems` then compares a rendered template against it: every key must
be one the reference has, every value the reference's type.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

import yaml

_DEFAULT = re.compile(r"Builtin default:\s*(.*)")
_LITERAL = re.compile(r'"[^"]*"|\btrue\b|\bfalse\b|\b\d+\b|\[\]')
_NULL_KEY = re.compile(r"^(\s*)(-\s+)?([A-Za-z][\w]*):\s+null\s*$")
_TOP_EXAMPLE = re.compile(r"^# ?([a-z][A-Za-z]*):\s*(\S.*)?$")
_INDENTED_ITEM = re.compile(r"^#\s+- [a-z][A-Za-z]*:")
_EMPTY_LIST = re.compile(r"^([a-zA-Z]\w*):\s*\[\]")


def _typed_nulls(lines: list[str]) -> list[str]:
    """Replace ``key: null`` by the literal of the nearest 'Builtin default' above it."""
    out, default = [], None
    for line in lines:
        stripped = line.strip()
        found = _DEFAULT.search(stripped) if stripped.startswith("#") else None
        if found:
            literal = _LITERAL.search(found.group(1))
            default = literal.group(0) if literal else None
        match = _NULL_KEY.match(line)
        if match and default is not None:
            line = f"{match.group(1)}{match.group(2) or ''}{match.group(3)}: {default}"
        if stripped and not stripped.startswith("#"):
            default = None
        out.append(line)
    return out


def _uncomment(line: str) -> str:
    return line[2:] if line.startswith("# ") else line[1:]


def _parse_example(block: list[str]) -> Any:
    """An un-commented example; a list item whose fields are indented one space too
    few (as some of the reference's are) is re-indented before giving up."""
    body = textwrap.dedent("\n".join(block)).splitlines()
    attempts = [body, [line if line.startswith("-") else f" {line}" for line in body]]
    for attempt in attempts:
        try:
            return yaml.safe_load("\n".join(_typed_nulls(attempt)))
        except yaml.YAMLError:
            continue
    return None


def _example_blocks(lines: list[str]) -> dict[str, Any]:
    """Top-level keys given only as commented examples (``# provision:`` ...), and
    list items given as indented commented examples under a live ``key: []``."""
    examples: dict[str, Any] = {}
    i = 0
    while i < len(lines):
        line = lines[i]
        top = _TOP_EXAMPLE.match(line)
        item = _INDENTED_ITEM.match(line)
        if top or item:
            block = [_uncomment(line)]
            j = i + 1
            while j < len(lines) and lines[j].startswith("#"):
                body = _uncomment(lines[j])
                if body and not body[0].isspace() and not body.startswith(("-", "#")):
                    break  # prose again
                block.append(body)
                j += 1
            parsed = _parse_example(block)
            if top and isinstance(parsed, dict):
                examples.update(parsed)
            elif item and isinstance(parsed, list):
                key = _owner_of(lines, i, j)
                if key:
                    examples.setdefault(key, []).extend(parsed)
            i = j
        else:
            i += 1
    return examples


def _owner_of(lines: list[str], start: int, end: int) -> str | None:
    """The live ``key: []`` a commented list example documents: the line right
    above the comments (``mounts: []`` then ``# - location: ...``) or the first live
    line below them (prose and example, then ``images: []``)."""
    above = start
    while above > 0 and lines[above - 1].startswith("#"):
        above -= 1
    candidates = [lines[above - 1]] if above > 0 else []
    candidates += [line for line in lines[end:] if line.strip() and not line.startswith("#")][:1]
    for line in candidates:
        match = _EMPTY_LIST.match(line)
        if match:
            return match.group(1)
    return None


def _documented_fields(lines: list[str]) -> dict[str, dict[str, None]]:
    """For each live ``key: []``, the item fields its comment names in backticks
    (``an `arch` setting, an optional `digest` ...``): known names, no type."""
    fields: dict[str, dict[str, None]] = {}
    for n, line in enumerate(lines):
        match = _EMPTY_LIST.match(line)
        if not match:
            continue
        above = n
        while above > 0 and lines[above - 1].startswith("#"):
            above -= 1
        prose = " ".join(lines[above:n]).split("Builtin default")[0]  # not the notes after
        names = re.findall(r"`([a-z][A-Za-z]*)`", prose)
        fields[match.group(1)] = dict.fromkeys(names)
    return fields


def reference_shape(text: str) -> dict[str, Any]:
    """One example document holding every field of the reference template."""
    lines = text.splitlines()
    live = yaml.safe_load("\n".join(_typed_nulls(lines))) or {}
    for key, value in _example_blocks(lines).items():
        if live.get(key) in (None, [], {}):
            live[key] = value
        elif isinstance(live[key], list) and isinstance(value, list):
            live[key] = live[key] + value
    for key, names in _documented_fields(lines).items():
        if names and isinstance(live.get(key), list):
            live[key] = [*live[key], names]
    return live


def _union(items: list[Any]) -> Any:
    """The fields of a list's example items, merged (list items differ by mode)."""
    dicts = [item for item in items if isinstance(item, dict)]
    if not dicts:
        return items[0] if items else None
    merged: dict[str, Any] = {}
    for item in dicts:
        for key, value in item.items():
            if merged.get(key) is None:
                merged[key] = value
    return merged


def shape_problems(ours: Any, ref: Any, path: str = "") -> list[str]:
    """Where ``ours`` has a key the reference does not, or another type."""
    if ref is None:
        return []  # the reference gives no type here
    if isinstance(ref, dict):
        if not isinstance(ours, dict):
            return [f"{path or '.'}: a mapping in Lima's template, here {type(ours).__name__}"]
        if len(ref) == 1 and next(iter(ref)).lower() == "key":  # a free map (env, param)
            (value_type,) = ref.values()
            return [
                p for k, v in ours.items() for p in shape_problems(v, value_type, f"{path}.{k}")
            ]
        problems = []
        for key, value in ours.items():
            where = f"{path}.{key}" if path else key
            if key not in ref:
                problems.append(f"{where}: not a field of Lima's template")
            else:
                problems += shape_problems(value, ref[key], where)
        return problems
    if isinstance(ref, list):
        if not isinstance(ours, list):
            return [f"{path}: a list in Lima's template, here {type(ours).__name__}"]
        template = _union(ref)
        return [
            p for i, item in enumerate(ours) for p in shape_problems(item, template, f"{path}[{i}]")
        ]
    if isinstance(ref, bool) or isinstance(ours, bool):
        ok = isinstance(ours, bool) and isinstance(ref, bool)
    else:
        ok = isinstance(ours, type(ref))
    return [] if ok else [f"{path}: {type(ref).__name__} in Lima's template, here {ours!r}"]
