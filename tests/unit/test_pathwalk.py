"""Paths looked up ahead in warm sandboxes: what the image build keeps of a
trace, the catalog field, which sandboxes are asked to walk, and the walk."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest

from tests.unit.fakes import FakeDriver
from tests.unit.test_catalog import _minimal
from tests.unit.test_engine import make_engine, run, settle
from tvm.config.catalog import WALK_DIR, ImageRecipe, load_catalog, parse_catalog
from tvm.config.settings import Settings
from tvm.pyrovm.agent import main as agent_main
from tvm.pyrovm.agent import pathwalk as agent_walk
from tvm.pyrovm.images import build, customise, pathwalk

TRACE = """\
700 execve("/usr/sbin/chroot", ["chroot", "/var/lib/tvm/images/x/rootfs"], 0x7ffd /* 3 vars */) = 0
700 openat(AT_FDCWD, "/etc/ld.so.cache", O_RDONLY|O_CLOEXEC) = 3
700 chroot("/var/lib/tvm/images/.x.partial-9/rootfs") = 0
700 execve("/usr/bin/env", ["/usr/bin/env", "-i"], 0x7ffc /* 40 vars */) = 0
700 openat(AT_FDCWD, "/usr/lib/x86_64-linux-gnu/libc.so.6", O_RDONLY|O_CLOEXEC) = 3
701 newfstatat(AT_FDCWD, "/usr/lib/php/20220829/", {st_mode=S_IFDIR|0755}, 0) = 0
701 access("/etc/php/8.2/cli/conf.d/99-missing.ini", R_OK) = -1 ENOENT (No such file)
701 openat(AT_FDCWD, "/work/main.php", O_RDONLY) = 4
701 openat(AT_FDCWD, "/tmp/sess", O_RDWR|O_CREAT, 0600) = 5
701 openat(AT_FDCWD, "/proc/self/maps", O_RDONLY) = 6
701 openat(AT_FDCWD, "main.php", O_RDONLY) = 7
701 openat(3, "relative/to/a/dir", O_RDONLY) = 8
701 newfstatat(3, "", {st_mode=S_IFREG|0644}, AT_EMPTY_PATH) = 0
701 openat(AT_FDCWD, "/usr/share/a b", O_RDONLY) = -1 ENOENT (No such file)
701 openat(AT_FDCWD, "/usr/lib/../../etc/shadow", O_RDONLY) = -1 EACCES (Permission denied)
701 openat(AT_FDCWD, "/usr/lib/x86_64-linux-gnu/libc.so.6", O_RDONLY <unfinished ...>
702 <... openat resumed>) = 3
702 readlink("/usr/bin/php", "/etc/alternatives/php", 4095) = 21
"""


def test_a_trace_keeps_the_image_paths_looked_up_after_the_chroot() -> None:
    assert pathwalk.paths_in(TRACE.splitlines()) == [
        "/usr/bin/env",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/lib/php/20220829",
        "/etc/php/8.2/cli/conf.d/99-missing.ini",  # a miss is looked up too
        "/usr/bin/php",
    ]


def test_nothing_of_the_host_is_kept_without_a_chroot_line_either() -> None:
    lines = [line for line in TRACE.splitlines() if "chroot" not in line]
    kept = pathwalk.paths_in(lines)
    assert "/etc/ld.so.cache" in kept  # no chroot seen: the whole trace is the image's
    assert not any(path.startswith(("/var/lib/tvm", "/work", "/tmp", "/proc")) for path in kept)


def test_the_catalog_gives_warm_paths_languages_a_list_in_their_image() -> None:
    plain = parse_catalog(_minimal(name="php", version="8.2.1", run=["php", "{source}"]))
    warm = parse_catalog(
        _minimal(name="php", version="8.2.1", run=["php", "{source}"], source_file="main.php",
                 warm_paths=True)
    )  # fmt: skip
    lang = next(iter(warm))
    assert next(iter(plain)).walk_list is None and plain.images["img"].walk_runs == ()
    assert lang.walk_list == f"{WALK_DIR}php_8.2.1.paths"
    assert warm.images["img"].walk_runs == (("php_8.2.1", "main.php", "", "php main.php"),)
    assert warm.images["img"].digest != plain.images["img"].digest  # it is part of the build


def test_the_real_catalog_walks_for_php_and_go() -> None:
    catalog = load_catalog()
    walking = {lang.name for lang in catalog if lang.warm_paths}
    assert {"php", "go"} <= walking
    for lang in catalog:
        names = {run[0] for run in lang.image.walk_runs}
        assert (lang.walk_list is not None) == (Path(lang.walk_list or "x").stem in names)
        if lang.warm_paths:
            assert Path(lang.source_file).suffix in pathwalk.SAMPLES


async def test_only_sandboxes_made_ahead_walk_and_never_run_only_ones() -> None:
    driver = FakeDriver()
    engine, settings = make_engine(
        driver, pool_size=1, pool_max=2, pool_languages=[], pool_idle_seconds=60
    )
    catalog = load_catalog()
    php, go = catalog.resolve("php"), catalog.resolve("go")
    await run(engine, settings, language="php", code="<?php echo 1;")
    await run(engine, settings, language="go", code="package main")
    # The jobs' own sandboxes, made while they waited: nothing walked.
    assert [sb.spec.walk_paths for sb in driver.started] == [None, None]
    engine.sandboxes.retune(interval=1.0)
    await settle(engine)
    warm = {key: [sb.spec for sb in sbs] for key, sbs in engine.sandboxes.warm.items()}
    assert warm[php.key] and {spec.walk_paths for spec in warm[php.key]} == {php.walk_list}
    assert warm[go.key] and {spec.walk_paths for spec in warm[go.key]} == {go.walk_list}
    assert engine.sandboxes.warm[php.key][0].init_message().walk_paths == php.walk_list
    run_only = await engine.sandboxes._create(go, go.key + ":run", warm=True)
    assert run_only.spec.walk_paths is None
    settings.warm_paths = False
    off = await engine.sandboxes._create(php, php.key, warm=True)
    assert off.spec.walk_paths is None
    await engine.close()


def test_the_agent_looks_up_each_listed_path_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "there").write_text("")
    listed = [str(tmp_path / "there"), str(tmp_path / "missing"), "relative", "/a\x00b"]
    (tmp_path / "list").write_text("\n".join(listed) + "\n")
    looked: list[str] = []
    real_stat = os.stat

    def stat(path: str) -> os.stat_result:
        looked.append(path)
        return real_stat(path)

    monkeypatch.setattr(agent_walk.os, "stat", stat)
    assert agent_walk.walk(str(tmp_path / "list")) == 4
    assert looked == [str(tmp_path / "there"), str(tmp_path / "missing"), "/a\x00b"]
    assert agent_walk.walk(str(tmp_path / "no-such-list")) == 0


def test_the_hook_is_told_the_sample_runs_and_parses_them_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = (("go_1.19.8", "main.go", 'go build -o a.out "$@"', "./a.out"),)
    recipe = ImageRecipe("systems", "bookworm", ("golang-go",), walk_runs=runs)
    argv = build.mmdebstrap_argv(recipe, tmp_path / "rootfs", "http://mirror/debian", Settings())
    hook = next(a for a in argv if a.startswith("--customize-hook=")).removeprefix(
        "--customize-hook="
    )
    words = shlex.split(hook)
    assert json.loads(words[words.index("--walk-run") + 1]) == list(runs[0])
    seen = {}
    monkeypatch.setattr(customise, "customize_rootfs", lambda *a: seen.update(args=a))
    assert customise.main([*words[3:-1], str(tmp_path)]) == 0
    assert seen["args"][-1] == list(runs)


def test_the_agent_walks_on_init_when_told_to(monkeypatch: pytest.MonkeyPatch) -> None:
    walked: list[str] = []
    monkeypatch.setattr(agent_walk, "walk", lambda path: walked.append(path) or 1)
    agent = agent_main.Agent.__new__(agent_main.Agent)
    agent.runners = [object()]  # type: ignore[list-item]  # one stage: no runner forked here
    agent.workdir = "/work"
    assert agent.on_init({"uid": 5, "gid": 5}) == {"type": "ok"}
    assert walked == []
    assert agent.on_init({"uid": 5, "gid": 5, "walk_paths": "/l.paths"}) == {"type": "ok"}
    assert walked == ["/l.paths"]
