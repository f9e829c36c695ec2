"""The grown catalog: a test program per entry, variants, and the 'only tested
languages are offered' rule (no sandboxes needed)."""

from __future__ import annotations

from tests.integration.test_languages import compile_error_program, main_program
from tvm.compat import piston
from tvm.config.catalog import load_catalog, load_verified, verified_keys


def test_at_least_fifty_languages_in_several_versions() -> None:
    catalog = load_catalog()
    assert len(catalog.names()) >= 50
    for name, versions in {"python": 2, "c": 2, "c++": 2, "go": 2, "rust": 2, "java": 2,
                           "javascript": 2, "lua": 4}.items():  # fmt: skip
        assert len({lang.version for lang in catalog if lang.name == name}) >= versions, name


def test_every_entry_has_a_test_program() -> None:
    for lang in load_catalog():
        assert main_program(lang) is not None, f"{lang.key}: no tests/programs/{lang.name}/main.*"
        if lang.compiled:
            assert compile_error_program(lang) is not None, f"{lang.key}: no compile_error.*"


def test_aliases_are_unambiguous_per_version() -> None:
    catalog = load_catalog()
    names = set(catalog.names())
    for lang in catalog:
        for alias in lang.aliases:
            assert alias not in names or alias == lang.name, f"{lang.key}: alias {alias} is a name"
            owners = {other.name for other in catalog if alias in other.aliases}
            assert owners == {lang.name}, f"alias {alias} is used by {sorted(owners)}"


def test_the_scientific_variant_is_chosen_only_on_purpose() -> None:
    catalog = load_catalog()
    assert catalog.resolve("python").version != "3.11.2-scientific"
    assert catalog.resolve("python", "3.11").version == "3.11.2"
    assert catalog.resolve("python", "3.x").version != "3.11.2-scientific"
    assert catalog.resolve("python", "3.11.2-scientific").image.name == "bookworm-science"
    for alias in ("numpy", "scipy", "pandas", "python-scientific"):
        assert catalog.resolve(alias).version == "3.11.2-scientific"


def test_only_verified_entries_are_offered() -> None:
    catalog = load_catalog()
    python = catalog.resolve("python", "3.11")
    assert verified_keys(catalog, {python.key: python.digest}) == {python.key}
    assert verified_keys(catalog, {python.key: "0" * 16}) == set()
    offered = {f"{r['language']}@{r['version']}" for r in piston.runtimes(catalog)}
    assert offered == verified_keys(catalog)
    built = {python.key}
    assert {f"{r['language']}@{r['version']}" for r in piston.runtimes(catalog, built)} <= built


def test_verified_record_names_only_catalog_entries() -> None:
    keys = {lang.key for lang in load_catalog()}
    assert set(load_verified()) <= keys
