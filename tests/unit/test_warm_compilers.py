"""Pre-started compilers and interpreters: the catalog fields, the pool's
memory budget, what a warm sandbox is asked to start, the stand-ins' argv
handling and the agent copy."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import pytest

from tests.unit.fakes import FakeDriver
from tests.unit.test_catalog import _minimal
from tests.unit.test_engine import make_engine, run, settle
from tvm.config.catalog import load_catalog, parse_catalog
from tvm.errors import ConfigError
from tvm.pyrovm.agent import warm_run, warm_serve
from tvm.pyrovm.drivers import base
from tvm.pyrovm.pool import warm_fields


def test_the_catalog_names_a_warm_compiler_for_the_jvm_and_typescript() -> None:
    catalog = load_catalog()
    warm = {lang.key: lang.warm_compiler for lang in catalog if lang.warm_compiler}
    assert set(warm) >= {"java@17.0.19", "java@21.0.13", "kotlin@1.3.31", "scala@2.11.12"}
    for key, command in warm.items():
        lang = catalog.get(key)
        assert lang.compile is not None and command in lang.compile  # a prefix of its compile
        assert lang.warm_memory_mb > 0
    assert catalog.resolve("c").warm_compiler is None


def test_a_warm_compiler_needs_a_compile_command_and_a_known_tool() -> None:
    good = {"command": "javac -J-Xss4m", "memory_mb": 100}
    lang = next(iter(parse_catalog(_minimal(compile="javac -J-Xss4m x", warm_compiler=good))))
    assert (lang.warm_compiler, lang.warm_memory_mb) == ("javac -J-Xss4m", 100)
    with pytest.raises(ConfigError, match="warm_compiler"):
        parse_catalog(_minimal(warm_compiler=good))  # nothing to compile
    with pytest.raises(ConfigError, match="warm_compiler"):
        parse_catalog(_minimal(compile="gcc x", warm_compiler={"command": "gcc", "memory_mb": 1}))


def test_only_sandboxes_made_ahead_pre_start_with_the_compile_maximum() -> None:
    java = load_catalog().resolve("java")
    assert warm_fields(java, warm=False) == {}  # made for a waiting job: no wait for a JVM
    fields = warm_fields(java, warm=True)
    assert fields["warm_compiler"] == java.warm_compiler
    assert fields["warm_limits"] == dataclasses.asdict(java.compile_limits.maximum)
    assert warm_fields(load_catalog().resolve("c"), warm=True) == {}


async def test_warm_sandboxes_ask_for_their_compiler_and_count_it_in_the_budget() -> None:
    driver = FakeDriver()
    engine, settings = make_engine(
        driver, pool_size=1, pool_max=3, pool_languages=[], pool_memory_mb=400,
        pool_sandbox_mb=10, pool_idle_seconds=60,
    )  # fmt: skip
    kotlin = load_catalog().resolve("kotlin")
    await run(engine, settings, language="kotlin", code="fun main() {}")
    cold = driver.started[0].spec  # the job's own sandbox: nothing pre-started
    assert cold.warm_compiler is None
    engine.sandboxes.demand[kotlin.key].start_seconds = 5.0  # slow: wants more than one
    for _ in range(3):
        await run(engine, settings, language="kotlin", code="fun main() {}")
    engine.sandboxes.retune()
    await settle(engine)
    # Each costs 10 + 300 MB: a budget of 400 holds one, whatever demand says.
    assert engine.sandboxes.targets[kotlin.key] == 1
    warm = [sb.spec for sb in engine.sandboxes.warm[kotlin.key]]
    assert warm and all(spec.warm_compiler == kotlin.warm_compiler for spec in warm)
    # Without pre-started compilers a warm sandbox is an idle agent again.
    settings.prestart_compilers = False
    engine.sandboxes.retune()
    assert engine.sandboxes.targets[kotlin.key] == 3
    await engine.close()


def test_java_argv_splits_into_options_main_class_and_its_arguments() -> None:
    argv = ["-Xss32m", "-cp", "a.jar:b.jar", "-noverify", "org.Main", "-cp", "c.jar", "K"]
    assert warm_serve.split_java(argv) == (argv[:4], "org.Main", ["-cp", "c.jar", "K"])
    assert warm_serve.split_java(["-Xmx1g", "-jar", "x.jar"]) is None
    assert warm_serve.split_java(["-Xmx1g"]) is None


def test_the_server_is_started_with_the_launchers_own_options_and_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jdk = tmp_path / "jdk"
    (jdk / "bin").mkdir(parents=True)
    for name in ("java", "javac"):
        (jdk / "bin" / name).write_text("")
        (jdk / "bin" / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{warm_serve.SERVE_BIN}:{jdk / 'bin'}")
    javac = warm_serve.server_argv("javac", ["-J-XX:+UseSerialGC"])
    assert javac is not None
    assert javac[:2] == [str(jdk / "bin" / "java"), "-XX:+UseSerialGC"]
    assert f"-Dapplication.home={jdk}" in javac
    assert javac[-4:] == ["0", "--", "javac", "-J-XX:+UseSerialGC"]
    # javac's own arguments are the request's, never the server's
    assert warm_serve.server_argv("javac", ["-d", "."]) is None
    java = warm_serve.server_argv("java", ["-Xss2m", "-cp", "k.jar", "Pre", "-cp", "c.jar", "K"])
    assert java is not None and java[0] == str(jdk / "bin" / "java")
    assert java[1:4] == ["-Xss2m", "-cp", "k.jar"] and java[4].endswith("TvmWarm.java")
    assert java[5:] == ["Pre", "3", "-cp", "c.jar", "K", "--", "java", "-Xss2m", "-cp",
                        "k.jar", "Pre", "-cp", "c.jar", "K"]  # fmt: skip
    assert warm_serve.server_argv("tsc", [])[-1] == "tsc"  # type: ignore[index]
    assert warm_serve.server_argv("tsc", ["x.ts"]) is None


def test_the_agent_copy_carries_the_servers_and_the_stand_ins(tmp_path: Path) -> None:
    copy = tmp_path / "tvm_agent"
    copy.mkdir()
    for path in base.agent_files():
        dest = copy / path.relative_to(base.AGENT_DIR)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(path.read_bytes())
    base._write_warm_standins(copy)
    for name in ("TvmWarm.java", "tsc_serve.js", "shim.sh", "node_run.js"):
        assert (copy / "warm" / name).is_file()
    for folder in ("bin", "serve"):
        for tool in base.WARM_TOOLS:
            path = copy / "warm" / folder / tool
            assert path.stat().st_mode & stat.S_IXOTH
            assert f" {tool} " in path.read_text()


def test_a_compile_stage_uses_the_warm_compiler_only_with_room_to_spare() -> None:
    java = load_catalog().resolve("java")
    spec = base.SandboxSpec(image="x", rootfs=Path("/"), uid=1, **warm_fields(java, warm=True))
    limits = java.compile_limits.default
    assert spec.warm_for(limits)
    assert not spec.warm_for(dataclasses.replace(limits, memory_mb=java.warm_memory_mb))
    assert not spec.warm_for(dataclasses.replace(limits, processes=8))
    assert not base.SandboxSpec(image="x", rootfs=Path("/"), uid=1).warm_for(limits)


def test_the_catalog_pre_starts_node_for_the_run_stage_of_javascript() -> None:
    catalog = load_catalog()
    warm = [lang for lang in catalog if lang.warm_run]
    assert {lang.name for lang in warm} == {"javascript"} and len(warm) >= 2
    for lang in warm:
        assert lang.run_command == ("node", "main.js") and lang.warm_memory_mb > 0
        fields = warm_fields(lang, warm=True)
        assert fields["warm_run"] == ("node", "main.js")
        assert fields["warm_limits"] == dataclasses.asdict(lang.run_limits.maximum)
        assert "warm_compiler" not in fields
        assert warm_fields(lang, warm=False) == {}
    assert not catalog.resolve("python").warm_run


def test_a_warm_run_needs_a_known_interpreter_and_nothing_to_compile() -> None:
    node = {"run": ["node", "{source}"], "warm_run": {"memory_mb": 40}}
    lang = next(iter(parse_catalog(_minimal(**node))))
    assert (lang.warm_run, lang.warm_memory_mb, lang.warm_compiler) == (True, 40, None)
    with pytest.raises(ConfigError, match="warm_run"):
        parse_catalog(_minimal(run=["ruby", "{source}"], warm_run={"memory_mb": 40}))
    with pytest.raises(ConfigError, match="warm_run"):
        parse_catalog(_minimal(compile="tsc x", **node))


def test_a_run_stage_uses_the_waiting_interpreter_only_with_room_to_spare() -> None:
    js = load_catalog().resolve("javascript")
    spec = base.SandboxSpec(image="x", rootfs=Path("/"), uid=1, **warm_fields(js, warm=True))
    assert spec.warm_stage == "run"
    limits = js.run_limits.default
    assert spec.warm_for(limits)
    assert not spec.warm_for(dataclasses.replace(limits, memory_mb=js.warm_memory_mb))
    assert spec.warm_for(dataclasses.replace(limits, processes=60))  # Judge0's default
    assert not spec.warm_for(dataclasses.replace(limits, processes=8))
    java = base.SandboxSpec(
        image="x", rootfs=Path("/"), uid=1, **warm_fields(load_catalog().resolve("java"), True)
    )
    assert java.warm_stage == "compile"
    assert base.SandboxSpec(image="x", rootfs=Path("/"), uid=1).warm_stage is None


def test_the_agent_gives_the_waiting_interpreter_only_the_stage_it_was_started_for() -> None:
    started = {"argv": ["node", "main.js"], "env": {"PATH": "/bin"}}
    assert warm_run.serves(started, ["node", "main.js"], {"PATH": "/bin"})
    assert warm_run.serves(started, ["node", "main.js", "--flag", "x"], {"PATH": "/bin"})
    assert not warm_run.serves(started, ["node", "other.js"], {"PATH": "/bin"})
    assert not warm_run.serves(started, ["node"], {"PATH": "/bin"})
    assert not warm_run.serves(started, ["node", "main.js"], {"PATH": "/bin", "X": "1"})
