"""Judge0 language ids: which catalog entry serves each id, and Judge0's names for them.

The mapping is data in the catalog (``judge0_id`` of each entry, the first one
canonical); this module only reads it. An id of Judge0 CE's list that has no
runtime here (Basic, Python 2, Swift, F#, ...) is simply absent, so a submission
naming it gets Judge0's own "language with id N doesn't exist".
"""

from __future__ import annotations

from typing import Any

from tvm.config.catalog import Catalog, Language
from tvm.errors import ConfigError

MULTI_FILE = 89  # Judge0's "Multi-file program": the files come in additional_files
# Judge0's pseudo-languages are named without a version.
UNVERSIONED = frozenset({43, 44, MULTI_FILE})
# Judge0 compiles Lua (luac), Prolog (gplc) and Groovy (groovyc); here they run
# from source, and their compiler options are accepted and ignored.
COMPILED_IN_JUDGE0 = frozenset({64, 69, 88})


def takes_compiler_options(judge0_id: int, language: Language) -> bool:
    """Whether Judge0 allows ``compiler_options`` for this id: only for a language
    it compiles (a multi-file program's compile script gets none)."""
    if judge0_id == MULTI_FILE:
        return False
    return language.compiled or judge0_id in COMPILED_IN_JUDGE0


def judge0_name(language: Language, judge0_id: int | None = None) -> str:
    """Judge0's naming, "Python (3.11.2)", "C (GCC 12.2.0)", from the catalog's display name."""
    if judge0_id in UNVERSIONED:
        return language.display_name
    label, _, rest = language.display_name.partition(" (")
    if rest:
        tool = rest.rstrip(")").rsplit(" ", 1)[0]
        return f"{label} ({tool} {language.version})"
    words = label.split(" ")
    if len(words) > 1 and words[-1][:1].isdigit():
        label = " ".join(words[:-1])
    return f"{label} ({language.version})"


def language_table(catalog: Catalog) -> dict[int, Language]:
    """Judge0 id -> catalog entry; the one mapping, from the catalog's ``judge0_id`` keys."""
    table: dict[int, Language] = {}
    for language in catalog:
        for judge0_id in language.judge0_ids:
            if judge0_id in table:
                raise ConfigError(
                    f"judge0_id {judge0_id} is given to both {table[judge0_id].key} "
                    f"and {language.key} in the language catalog"
                )
            table[judge0_id] = language
    return table


def language_ref(catalog: Catalog, judge0_id: int) -> dict[str, Any] | None:
    """A submission's ``language`` attribute: ``{"id", "name"}``."""
    language = language_table(catalog).get(judge0_id)
    return None if language is None else {"id": judge0_id, "name": judge0_name(language, judge0_id)}


def languages(catalog: Catalog) -> list[dict[str, Any]]:
    """``GET /languages``: the active languages, by name."""
    rows = [{"id": i, "name": judge0_name(lang, i)} for i, lang in language_table(catalog).items()]
    return sorted(rows, key=lambda row: (row["name"], row["id"]))


def all_languages(catalog: Catalog) -> list[dict[str, Any]]:
    """``GET /languages/all``: every language with ``is_archived`` (none is archived here)."""
    return [dict(row, is_archived=False) for row in languages(catalog)]


def language_detail(catalog: Catalog, judge0_id: int) -> dict[str, Any] | None:
    """``GET /languages/{id}``: Judge0's language record."""
    language = language_table(catalog).get(judge0_id)
    if language is None:
        return None
    source = None if judge0_id == MULTI_FILE else language.source_file
    return {
        "id": judge0_id,
        "name": judge0_name(language, judge0_id),
        "is_archived": False,
        "source_file": source,
        "compile_cmd": language.compile,
        "run_cmd": " ".join(language.run_command),
    }
