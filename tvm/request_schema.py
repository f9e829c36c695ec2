"""JSON Schemas of the execute request bodies, exactly as the server checks them.

The pydantic models say the shape; what the server also refuses (a language and
version that resolve to no catalog entry, a limit above that entry's maximum,
more files or bytes than the settings allow, bad base64, unsafe file names...)
is added here, from the same catalog, settings and patterns
(:mod:`tvm.api`) the validation uses, so that a client generated from the
OpenAPI schema never sends a request the server refuses, and the server
refuses every request the schema does not allow.

Each catalog entry becomes one alternative (``anyOf``): its names and aliases,
the version selectors that resolve to it (``3``, ``3.11``, ``3.11.x``, ``*``,
... computed with the catalog's own resolver) and its own maxima.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from tvm.api import (
    BASE64_PATTERN,
    FILE_NAME_PATTERN,
    HEX_PATTERN,
    MAX_FILE_NAME,
    NO_NUL_PATTERN,
    SHELL_WORDS_PATTERN,
)
from tvm.compat.piston import CONSTRAINTS, STAGES, configured_limit
from tvm.config.catalog import Catalog, Language, StageLimits
from tvm.config.settings import Settings
from tvm.errors import UnknownLanguage

Schema = dict[str, Any]
_ANY_VERSION = ("*", "x", "latest")
# JavaScript's falsy values other than 0: Piston takes the default for them.
_PISTON_UNSET = [None, False, ""]


def _candidates(catalog: Catalog, name: str) -> set[str]:
    found = set(_ANY_VERSION)
    for lang in catalog:
        if not lang.matches(name):
            continue
        found.add(lang.version)
        parts = lang.version.partition("-")[0].split(".")
        for n in range(1, len(parts) + 1):
            prefix = ".".join(parts[:n])
            found.update({prefix, f"{prefix}.x", f"{prefix}.*"})
    return found


def _names(lang: Language) -> list[str]:
    return list(dict.fromkeys((lang.name, *lang.aliases)))


def selectors(catalog: Catalog) -> dict[tuple[str, frozenset[str]], list[str]]:
    """(entry key, version selectors resolving to it) -> the names that share them."""
    by_entry: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    names = {name for lang in catalog for name in _names(lang)}
    for name in sorted(names):
        for selector in _candidates(catalog, name):
            try:
                lang = catalog.resolve(name, selector)
            except UnknownLanguage:
                continue
            by_entry[lang.key][name].add(selector)
    groups: dict[tuple[str, frozenset[str]], list[str]] = defaultdict(list)
    for key, per_name in by_entry.items():
        for name, chosen in per_name.items():
            groups[(key, frozenset(chosen))].append(name)
    return dict(sorted(groups.items(), key=lambda item: (item[0][0], sorted(item[0][1]))))


def _content(settings: Settings) -> Schema:
    """One file's content: by its encoding, the pattern and decoded size allowed."""
    most = settings.max_file_bytes
    return {
        "anyOf": [
            {"properties": {"encoding": {"const": "base64"},
                            "content": {"pattern": BASE64_PATTERN,
                                        "maxLength": 4 * math.ceil(most / 3)}},
             "required": ["encoding"]},
            {"properties": {"encoding": {"const": "hex"},
                            "content": {"pattern": HEX_PATTERN, "maxLength": 2 * most}},
             "required": ["encoding"]},
            {"properties": {"encoding": {"not": {"enum": ["base64", "hex"]}},
                            "content": {"maxLength": most}}},
        ]
    }  # fmt: skip


_NAME = {"type": "string", "maxLength": MAX_FILE_NAME, "pattern": f"^$|{FILE_NAME_PATTERN}"}


def _args(settings: Settings) -> Schema:
    return {
        "type": "array",
        "maxItems": settings.max_args,
        "items": {"type": "string", "pattern": NO_NUL_PATTERN},
    }


def _native_limits(maximum: StageLimits) -> Schema:
    return {
        "type": "object",
        "properties": {
            name: {"type": ["integer", "null"], "minimum": 1, "maximum": getattr(maximum, name)}
            for name in StageLimits.names()
        },
    }


def _variants(catalog: Catalog, native: bool, limits: Callable[[Language], Schema]) -> list[Schema]:
    """One alternative per catalog entry (and set of version selectors): its names,
    the versions that resolve to it and its maxima. (The native API's version may
    be left out, or empty, for the newest entry of a name.)"""
    variants = []
    for (key, chosen), names in selectors(catalog).items():
        lang = catalog.get(key)
        newest = "*" in chosen
        versions: list[Any] = sorted(chosen) + (["", None] if native and newest else [])
        variants.append(
            {
                "properties": {
                    "language": {"enum": names},
                    "version": {"enum": versions},
                    **limits(lang),
                },
                "required": ["language"] if native and newest else ["language", "version"],
            }
        )
    return variants


def native_request(catalog: Catalog, settings: Settings, model_ref: str) -> Schema:
    """``POST /api/v1/execute``: the model (``model_ref``) and what validation adds."""

    def limits(lang: Language) -> Schema:
        return {
            "limits": _native_limits(lang.run_limits.maximum),
            "compile_limits": _native_limits(lang.compile_limits.maximum),
        }

    variants = _variants(catalog, True, limits)
    file = {"properties": {"name": _NAME}, **_content(settings)}
    return {
        "allOf": [
            {"$ref": model_ref},
            {
                "properties": {
                    "files": {"maxItems": settings.max_files, "items": file},
                    "code": {"maxLength": settings.max_file_bytes},
                    "stdin": {"maxLength": settings.max_stdin_bytes},
                    "args": _args(settings),
                    "compiler_options": {"pattern": SHELL_WORDS_PATTERN},
                    "tests": {
                        "minItems": 1,
                        "maxItems": settings.max_tests,
                        "items": {
                            "properties": {
                                "stdin": {"maxLength": settings.max_stdin_bytes},
                                "args": _args(settings),
                            }
                        },
                    },
                },
            },
            {"anyOf": variants},
        ]
    }


def _piston_limit(maximum: int, memory: bool) -> Schema:
    return {"type": ["number", "null"], "minimum": -1 if memory else 0, "maximum": maximum}


def piston_request(catalog: Catalog, settings: Settings) -> Schema:
    """``POST /api/v2/execute``, as :func:`tvm.compat.piston.parse` and the native
    validation check it (unknown fields are ignored, as in Piston)."""

    def limits(lang: Language) -> Schema:
        return {
            f"{stage}_{constraint}": _piston_limit(
                configured_limit(lang, constraint, stage), constraint == "memory_limit"
            )
            for constraint in CONSTRAINTS
            for stage in STAGES
        }

    variants = _variants(catalog, False, limits)
    file = {
        "type": "object",
        "required": ["content"],
        "properties": {
            "content": {"type": "string"},
            "name": {"anyOf": [_NAME, {"enum": [None, False, 0]}]},
            "encoding": {"description": "utf8 (default), base64 or hex; others mean utf8"},
        },
        **_content(settings),
    }
    utf8_file = {"properties": {"encoding": {"enum": [None, False, "", 0, "utf8"]}}}  # or none
    return {
        "type": "object",
        "required": ["language", "version", "files"],
        "properties": {
            "language": {"type": "string", "minLength": 1, "description": "name or alias"},
            "version": {"type": "string", "minLength": 1, "description": "semver selector"},
            "files": {
                "type": "array",
                "maxItems": settings.max_files,
                "items": file,
                "contains": utf8_file,
                "description": "the program; the first utf8 file is run",
            },
            "stdin": {"type": ["string", "null"], "maxLength": settings.max_stdin_bytes},
            "args": {"anyOf": [_args(settings), {"type": "null"}]},
            **{
                f"{stage}_{constraint}": {
                    "description": "bytes" if constraint == "memory_limit" else "milliseconds"
                }
                for constraint in CONSTRAINTS
                for stage in STAGES
            },
        },
        "anyOf": variants,
    }
