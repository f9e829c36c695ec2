from __future__ import annotations

import pytest

from tvm.config.catalog import RESOLVED_CACHE, load_catalog, load_verified, parse_catalog
from tvm.errors import ConfigError, UnknownLanguage


def test_every_entry_resolves_by_name_and_alias() -> None:
    catalog = load_catalog()
    assert len(catalog) >= 6
    for lang in catalog:
        assert catalog.resolve(lang.name, lang.version) is lang
        for alias in lang.aliases:
            assert catalog.resolve(alias, lang.version).name == lang.name


def test_semver_selectors_pick_the_newest_match() -> None:
    catalog = load_catalog()
    newest = catalog.resolve("python")
    assert newest.version == max(
        (lang.version for lang in catalog if lang.name == "python" and "-" not in lang.version),
        key=lambda v: tuple(int(p) for p in v.split(".")),
    )
    assert catalog.resolve("python", "*") is newest
    assert catalog.resolve("py", "3.11").version.startswith("3.11.")
    assert catalog.resolve("python3", "3.11.x").version.startswith("3.11.")
    assert catalog.resolve("python", ">=3.12").version.startswith("3.1")


def test_resolving_again_gives_the_same_entry_and_the_cache_stays_bounded() -> None:
    catalog = load_catalog()
    first = catalog.resolve("py", "3.11")
    assert catalog.resolve("py", "3.11") is first
    assert catalog.resolve("python", "3") is catalog.resolve("python", "3")
    for i in range(RESOLVED_CACHE + 10):  # every selector a client may vary
        assert catalog.resolve("python", f">=3.{i % 3}.0 <4.{i}") is not None
    assert len(catalog._resolved) <= RESOLVED_CACHE
    with pytest.raises(UnknownLanguage):  # failures are not kept: asked again, they fail again
        catalog.resolve("python", "2.7")
    with pytest.raises(UnknownLanguage):
        catalog.resolve("python", "2.7")


def test_unknown_language_and_version_name_the_problem() -> None:
    catalog = load_catalog()
    with pytest.raises(UnknownLanguage, match="cobolx-\\* runtime is unknown"):
        catalog.resolve("cobolx")
    with pytest.raises(UnknownLanguage, match="python-2.7 runtime is unknown"):
        catalog.resolve("python", "2.7")


def test_the_seed_languages_are_there() -> None:
    catalog = load_catalog()
    for name in ("python", "javascript", "c", "c++", "bash"):
        catalog.resolve(name)
    assert catalog.resolve("cpp").name == "c++"
    assert catalog.resolve("js").name == "javascript"
    assert catalog.resolve("sh").name == "bash"
    assert catalog.resolve("c").compiled and not catalog.resolve("python").compiled


def _minimal(**language: object) -> dict[str, object]:
    stage = {
        "timeout_ms": 1000, "cpu_time_ms": 1000, "memory_mb": 64, "processes": 8,
        "output_bytes": 100, "file_size_kb": 10, "open_files": 16,
    }  # fmt: skip
    entry = {"name": "x", "version": "1.0.0", "image": "img", "source_file": "a", "run": ["a"]}
    entry.update(language)
    return {
        "limits": {f"{s}_{k}": dict(stage) for s in ("run", "compile") for k in ("default", "max")},
        "images": {"img": {"suite": "bookworm", "packages": ["python3"]}},
        "language": [entry],
    }


def test_malformed_catalogs_are_config_errors() -> None:
    assert len(parse_catalog(_minimal())) == 1
    with pytest.raises(ConfigError, match="unknown image"):
        parse_catalog(_minimal(image="nope"))
    data = _minimal()
    data["language"] = [data["language"][0], data["language"][0]]  # type: ignore[index]
    with pytest.raises(ConfigError, match="duplicate"):
        parse_catalog(data)
    with pytest.raises(ConfigError, match="exceeds its maximum"):
        parse_catalog(_minimal(limits={"run": {"default": {"memory_mb": 9999}}}))


def test_image_digest_changes_with_the_recipe_only() -> None:
    a = parse_catalog(_minimal()).images["img"]
    b = parse_catalog(_minimal()).images["img"]
    assert a.digest == b.digest
    data = _minimal()
    data["images"]["img"]["packages"] = ["python3", "bash"]  # type: ignore[index]
    assert parse_catalog(data).images["img"].digest != a.digest


def test_a_source_file_names_its_language_through_the_catalog() -> None:
    catalog = load_catalog()
    # every extension a single entry's source file has is that language's
    assert catalog.for_file("hello.py") == "python"
    assert catalog.for_file("prog.rs") == "rust"
    assert catalog.for_file("x.zsh") == "zsh"
    # an extension several share goes to the entry that claims it, else to nobody
    assert catalog.for_file("run.sh") == "bash"
    assert catalog.for_file("a.pl") == "perl"
    assert catalog.for_file("b.cc") == "c++"
    assert catalog.for_file("c.m") is None  # objective-c and octave
    assert catalog.for_file("Makefile") is None


def test_every_catalog_entry_is_verified_as_it_is_now() -> None:
    # An entry (or its image's recipe) changed without its test program being run
    # again is hidden from every listing: the suite's language tests would fail late.
    record = load_verified()
    stale = sorted(lang.key for lang in load_catalog() if record.get(lang.key) != lang.digest)
    assert not stale, (
        "verified.toml is out of date for these entries; run "
        "TVM_UPDATE_VERIFIED=1 .venv/bin/pytest tests/integration/test_languages.py -k '...': "
        f"{stale}"
    )


def test_a_compile_may_use_every_core_a_run_gets_one() -> None:
    # A toolchain's own parallelism (go build, rustc's codegen units, a JVM's
    # compiler threads) is what a bare build gets: a 1-core quota made a rust
    # program's compile 1.5x slower than bare. A program's run stays on one
    # core unless its request asks for more.
    for lang in load_catalog():
        compile_, run = lang.compile_limits, lang.run_limits
        assert compile_.default.cpus == compile_.maximum.cpus == 2, lang.key
        assert run.default.cpus == 1 and run.maximum.cpus == 2, lang.key
