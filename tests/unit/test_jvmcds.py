"""Which catalog commands name a JVM class-data-sharing archive, how the recipe
carries them to the image build, and the commands the build derives from them."""

from __future__ import annotations

import copy
import json
import shlex
import tomllib
from pathlib import Path

import pytest

from tvm.config.catalog import (
    CATALOG_PATH,
    CDS_DIR,
    CDS_FLAGS,
    ImageRecipe,
    load_catalog,
    parse_catalog,
)
from tvm.config.settings import Settings
from tvm.errors import ConfigError, ImageBuildFailed
from tvm.pyrovm.images import build, customise
from tvm.pyrovm.images.jvmcds import (
    CLASSLIST,
    SAMPLES,
    archives,
    check_command,
    classlist_command,
    dump_command,
    static_dump_command,
    without_cds,
)

KOTLINC = (
    'JAVA_OPTS="-Xss32m -Xshare:auto -XX:SharedArchiveFile=/usr/local/lib/tvm-cds/kotlinc.jsa'
    ' -Xlog:cds=off,cds+dynamic=off" kotlinc -nowarn "$@" -d main.jar'
)


def test_the_jvm_compilers_name_an_archive_of_their_image_and_keep_the_warm_prefix() -> None:
    catalog = load_catalog()
    expected = {
        "java@17.0.19": "javac.jsa",
        "java@21.0.13": "javac.jsa",
        "kotlin@1.3.31": "kotlinc.jsa",
        "scala@2.11.12": "scalac.jsa",
    }
    for key, name in expected.items():
        lang = catalog.resolve(*key.split("@"))
        assert lang.compile is not None and lang.warm_compiler is not None
        assert archives(lang.compile) == [CDS_DIR + name], key
        assert (lang.source_file, lang.compile) in lang.image.cds_compiles
        # The pre-started compiler is the same JVM: the same archive and flags,
        # or the compile's argv would not start with its prefix.
        assert archives(lang.warm_compiler) == archives(lang.compile)
        warm_words = shlex.split(lang.warm_compiler)
        assert all(w in shlex.split(lang.compile) for w in warm_words), key
        # Without the archive flags the command is as it was before it had them.
        for command in (lang.compile, lang.warm_compiler):
            assert without_cds(command) != command
            assert not archives(without_cds(command))
            assert all(f not in without_cds(command) for f in CDS_FLAGS)
    assert catalog.resolve("python", "3.11").image.cds_compiles == ()
    assert catalog.resolve("typescript", "4.8").image.cds_compiles == ()


def test_scala_runs_with_an_archive_of_scala_library_and_java_and_kotlin_without() -> None:
    catalog = load_catalog()
    scala = catalog.resolve("scala", "2.11")
    run = shlex.join(scala.run)
    assert archives(run) == [CDS_DIR + "scala-run.jsa"]
    assert scala.image.cds_runs == ((scala.source_file, scala.compile, run),)
    assert not archives(without_cds(run))
    for key in ("java@17.0.19", "java@21.0.13", "kotlin@1.3.31"):
        lang = catalog.resolve(*key.split("@"))
        assert not archives(shlex.join(lang.run)), key
        assert not lang.image.cds_runs or all(
            r[2] != shlex.join(lang.run) for r in lang.image.cds_runs
        )


def test_without_cds_drops_exactly_the_three_flags() -> None:
    plain = 'JAVA_OPTS="-Xss32m" kotlinc -nowarn "$@" -d main.jar'
    assert without_cds(KOTLINC) == plain
    javac = (
        "javac -J-XX:+UseSerialGC -J-Xshare:auto -J-XX:SharedArchiveFile="
        f"{CDS_DIR}javac.jsa -J-Xlog:cds=off,cds+dynamic=off -d . /tmp/src/*.java"
    )
    assert without_cds(javac) == "javac -J-XX:+UseSerialGC -d . /tmp/src/*.java"
    # an archive elsewhere is not ours to remove
    other = "java -XX:SharedArchiveFile=/opt/app.jsa -cp . Main"
    assert without_cds(other) == other and archives(other) == []


def test_dump_and_check_commands_differ_from_the_catalog_command_only_there() -> None:
    archive = CDS_DIR + "kotlinc.jsa"
    dump = dump_command(KOTLINC, archive)
    assert f"-XX:ArchiveClassesAtExit={archive}" in dump and "SharedArchiveFile" not in dump
    assert dump.replace("ArchiveClassesAtExit", "SharedArchiveFile") == KOTLINC
    check = check_command(KOTLINC)
    assert "-Xshare:on" in check and "-Xshare:auto" not in check
    assert check.replace("-Xshare:on", "-Xshare:auto") == KOTLINC


SCALA_RUN = (
    "sh -c 'exec java -XX:+UseSerialGC -Xshare:auto -XX:SharedArchiveFile="
    f"{CDS_DIR}scala-run.jsa -Xlog:cds=off,cds+dynamic=off -cp /lib/scala-library.jar:."
    ' "$(cat .main-class)"\' scala'
)


def test_a_run_archive_is_dumped_from_a_class_list_without_the_work_dir() -> None:
    archive = CDS_DIR + "scala-run.jsa"
    listing = classlist_command(SCALA_RUN, archive)
    assert f"-XX:DumpLoadedClassList={CLASSLIST}" in listing and archive not in listing
    assert "-cp /lib/scala-library.jar:. " in listing  # the program's classes are listed too
    dump = static_dump_command(SCALA_RUN, archive)
    assert "-Xshare:dump" in dump and "-Xshare:auto" not in dump
    assert f"-XX:SharedClassListFile={CLASSLIST} -XX:SharedArchiveFile={archive}" in dump
    # dumped for the jars alone: the run's class path extends it, so it maps
    assert "-cp /lib/scala-library.jar " in dump and ":." not in dump
    with pytest.raises(ImageBuildFailed, match="-cp JARS:"):
        static_dump_command(SCALA_RUN.replace(":.", ""), archive)


def test_every_compiler_with_an_archive_has_a_sample_program() -> None:
    for recipe in {lang.image for lang in load_catalog()}:
        for source_file, *_ in (*recipe.cds_compiles, *recipe.cds_runs):
            assert Path(source_file).suffix in SAMPLES, source_file


def _catalog_data() -> dict:
    with CATALOG_PATH.open("rb") as fh:
        return tomllib.load(fh)


@pytest.mark.parametrize("flag", CDS_FLAGS)
def test_a_command_naming_an_archive_without_the_fallback_flags_is_refused(flag: str) -> None:
    """Without ``-Xshare:auto`` a JVM that cannot map the archive would fail the
    compile; without the log flags it would print a warning into its output."""
    data = copy.deepcopy(_catalog_data())
    kotlin = next(e for e in data["language"] if e["name"] == "kotlin")
    kotlin["compile"] = kotlin["compile"].replace(f" {flag}", "")
    with pytest.raises(ConfigError, match=flag.replace("+", r"\+")):
        parse_catalog(data)


def test_digest_changes_with_the_cds_commands_only_when_there_are_some() -> None:
    plain = ImageRecipe("jvm", "bookworm", ("default-jdk-headless",))
    assert plain.digest == ImageRecipe("jvm", "bookworm", ("default-jdk-headless",)).digest
    one = ImageRecipe("jvm", "bookworm", ("kotlin",), cds_compiles=(("main.kt", KOTLINC),))
    other = ImageRecipe(
        "jvm", "bookworm", ("kotlin",), cds_compiles=(("main.kt", KOTLINC.replace("32", "64")),)
    )
    runs = ImageRecipe(
        "jvm", "bookworm", ("kotlin",), cds_compiles=(("main.kt", KOTLINC),),
        cds_runs=(("main.scala", "scalac", SCALA_RUN),),
    )  # fmt: skip
    assert len({plain.digest, one.digest, other.digest, runs.digest}) == 4


def test_hook_is_told_the_cds_commands_and_parses_them_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = ImageRecipe(
        "jvm", "bookworm", ("scala",), cds_compiles=(("main.kt", KOTLINC),),
        cds_runs=(("main.scala", "scalac", SCALA_RUN),),
    )  # fmt: skip
    argv = build.mmdebstrap_argv(recipe, tmp_path / "rootfs", "http://mirror/debian", Settings())
    hook = next(a for a in argv if a.startswith("--customize-hook=")).removeprefix(
        "--customize-hook="
    )
    words = shlex.split(hook)
    assert json.loads(words[words.index("--cds-compile") + 1]) == ["main.kt", KOTLINC]
    assert json.loads(words[words.index("--cds-run") + 1]) == ["main.scala", "scalac", SCALA_RUN]
    seen = {}
    monkeypatch.setattr(customise, "customize_rootfs", lambda *a: seen.update(args=a))
    assert customise.main([*words[3:-1], str(tmp_path)]) == 0
    assert seen["args"][-2:] == ([("main.kt", KOTLINC)], [("main.scala", "scalac", SCALA_RUN)])
    plain = ImageRecipe("jvm", "bookworm", ("kotlin",))
    argv = build.mmdebstrap_argv(plain, tmp_path / "rootfs", "http://mirror/debian", Settings())
    assert "--cds-" not in next(a for a in argv if a.startswith("--customize-hook="))
