"""The JVM compilers' class-data-sharing archives are really mapped in a
sandbox, by the cold compile and by the pre-started compiler, and change
nothing in what a program gives.

Each archive the catalog's compile commands name is in the built image, read
only. A compile in a real sandbox (namespace driver) and the start of the
pre-started compiler log the classes they load (``JAVA_TOOL_OPTIONS``, only
here): most must come from the archive ("source: shared objects file
(top)"). Then hello world, a realistic program, a compile error and a
runtime exception are compiled cold and run with the catalog's commands and
with the same commands without the archive flags: compile and run stdout,
stderr, status, exit code and every file the compile left (class files, the
jar's entries) must be equal, byte for byte.
"""

from __future__ import annotations

import dataclasses
import shlex
from typing import Any

import pytest

from tests.conftest import require_languages
from tests.integration.test_warm_compilers import PROGRAMS, compile_and_run
from tvm.config.catalog import Language
from tvm.config.settings import Settings
from tvm.pyrovm.images import ImageStore
from tvm.pyrovm.images.jvmcds import archives, without_cds

pytestmark = pytest.mark.usefixtures("no_leaks")

LANGUAGES = ["java@17.0.19", "java@21.0.13", "kotlin@1.3.31", "scala@2.11.12"]
LOG = "-Xlog:class+load=info:file={name}"
SHARED_TOP = b"source: shared objects file (top)"
# Classes a compiler of hello world loads from its archive, at least (javac 17
# loads about 1500, kotlinc and scalac several thousand).
MIN_SHARED = 800


def with_class_log(command: str, name: str) -> str:
    """``command`` with its JVMs logging the classes they load into ``name``
    (relative: the work dir)."""
    return f"JAVA_TOOL_OPTIONS={LOG.format(name=name)}\nexport JAVA_TOOL_OPTIONS\n{command}"


def language(settings: Settings, key: str) -> Language:
    (lang,) = require_languages(settings, key)
    assert lang.compile is not None
    if not lang.image.cds_compiles:
        pytest.skip(f"{key}: its image dumps no CDS archive")
    return lang


@pytest.mark.parametrize("key", LANGUAGES)
async def test_the_archive_is_in_the_image_and_mapped_cold_and_warm(
    settings: Settings, key: str
) -> None:
    lang = language(settings, key)
    assert lang.compile is not None and lang.warm_compiler is not None
    rootfs = ImageStore(settings).rootfs(lang.image)
    (archive,) = archives(lang.compile)
    path = rootfs / archive.lstrip("/")
    assert path.is_file() and path.stat().st_size > 1 << 20
    assert not path.stat().st_mode & 0o222, "the archive must be read-only"

    code = PROGRAMS[lang.name]["hello"]
    cold_lang = dataclasses.replace(lang, compile=with_class_log(lang.compile, "cold.log"))
    cold = await compile_and_run(
        settings.model_copy(update={"prestart_compilers": False}), cold_lang, code
    )
    assert cold["compile"]["status"] == "ok", cold["compile"]
    assert cold["run"]["stdout"] == b"hello\n"
    loaded = cold["files"]["cold.log"]
    assert loaded.count(SHARED_TOP) >= MIN_SHARED, loaded[-2000:]

    warm_command = f"JAVA_TOOL_OPTIONS={LOG.format(name='warm.log')} {lang.warm_compiler}"
    warm_lang = dataclasses.replace(lang, warm_compiler=warm_command)
    warm = await compile_and_run(
        settings.model_copy(update={"prestart_compilers": True}), warm_lang, code
    )
    assert warm["warm"], "the pre-started compiler did not serve the compile"
    assert warm["run"]["stdout"] == b"hello\n"
    loaded = warm["files"]["warm.log"]
    assert loaded.count(SHARED_TOP) >= MIN_SHARED, loaded[-2000:]


async def test_a_scala_program_maps_the_scala_library_from_the_run_archive(
    settings: Settings,
) -> None:
    lang = language(settings, "scala@2.11.12")
    assert archives(shlex.join(lang.run)), "scala's run names no archive"
    sh, flag, script, *rest = lang.run
    assert script.startswith("exec java ")
    # the classes it loaded, counted after it ends: (from the archive, all) of the Scala library's
    logged = (
        "JAVA_TOOL_OPTIONS=-Xlog:class+load=info:file=/tmp/classes.log; export JAVA_TOOL_OPTIONS; "
        f"{script.removeprefix('exec ')} && "
        "grep -c ' scala[.].* source: shared objects file$' /tmp/classes.log && "
        "grep -c ' scala[.]' /tmp/classes.log"
    )
    logging = dataclasses.replace(lang, run=(sh, flag, logged, *rest))
    ran = await compile_and_run(
        settings.model_copy(update={"prestart_compilers": False}),
        logging,
        PROGRAMS["scala"]["realistic"],
    )
    assert ran["run"]["status"] == "ok", ran["run"]
    output, shared, loaded = ran["run"]["stdout"].decode().rsplit("\n", 3)[:3]
    assert output == "60 HELLO WORLD!"
    assert int(shared) >= 300 and int(shared) >= 0.9 * int(loaded), (shared, loaded)


def _comparable(result: dict[str, Any]) -> dict[str, Any]:
    result.pop("cpu"), result.pop("warm")
    return result


@pytest.mark.parametrize("key", LANGUAGES)
async def test_with_and_without_the_archive_a_program_gives_the_same_bytes(
    settings: Settings, key: str
) -> None:
    lang = language(settings, key)
    assert lang.compile is not None
    plain = dataclasses.replace(
        lang, compile=without_cds(lang.compile), run=tuple(without_cds(w) for w in lang.run)
    )
    assert plain.compile != lang.compile
    cold_settings = settings.model_copy(update={"prestart_compilers": False})
    for name, code in PROGRAMS[lang.name].items():
        with_cds = _comparable(await compile_and_run(cold_settings, lang, code))
        without = _comparable(await compile_and_run(cold_settings, plain, code))
        assert with_cds == without, f"{key} {name}: with and without the archive differ"
        if name == "realistic":
            assert with_cds["run"]["stdout"] == b"60 HELLO WORLD!\n"
        if name == "compile-error":
            assert with_cds["compile"]["status"] != "ok"
            assert b"error" in with_cds["compile"]["stderr"] + with_cds["compile"]["stdout"]
        if name == "exception":
            assert with_cds["run"]["status"] == "runtime_error"
            assert b"boom" in with_cds["run"]["stderr"]
