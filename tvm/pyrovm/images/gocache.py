"""A Go build cache baked into an image at build time (Go 1.24's ``GOCACHEPROG``).

Without it every ``go build`` in a fresh sandbox compiles ``fmt`` and all it
imports again (seconds). The image build runs ``go build std`` once with each
catalog go command's own environment and stores what the go command caches in
a read-only directory of the image, through ``tvm-gocache``
(``gocacheprog.go``, built by the image's go): a ``GOCACHEPROG`` that answers
from that directory and keeps what a sandbox's builds add under its own
``$GOCACHE``. The go command keys each entry by an action id hashing the
compiler, flags, environment and sources, so an entry is only found by a build
that would produce the same bytes: a program builds as it would cold.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from tvm.errors import ImageBuildFailed
from tvm.pyrovm.agent.main import DEFAULT_ENV

PROG = "/usr/local/libexec/tvm-gocache"  # where the cache program goes in the image
CACHE = "/usr/local/lib/tvm-gocache"  # the baked, read-only cache
SOURCE = Path(__file__).with_name("gocacheprog.go")
SCRATCH = "/tmp/tvm-gocache-build"  # build-time only, removed after
HELLO = 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("hello") }\n'


def go_env(command: str) -> dict[str, str] | None:
    """The environment a catalog go command sets before ``go build``, or None if
    ``command`` is not ``NAME=value... go build ...``."""
    words = shlex.split(command)
    env: dict[str, str] = {}
    while words and "=" in words[0] and not words[0].startswith("-"):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    if words[:2] != ["go", "build"]:
        return None
    return env


def chroot_run(
    rootfs: Path, argv: Sequence[str], env: Mapping[str, str], cwd: str = "/"
) -> subprocess.CompletedProcess[str]:
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    script = f"cd {shlex.quote(cwd)} && exec {shlex.join(argv)}"
    full = [chroot, str(rootfs), "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items())]
    return subprocess.run(
        [*full, "/bin/sh", "-c", script], capture_output=True, text=True, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _check(proc: subprocess.CompletedProcess[str], what: str) -> None:
    if proc.returncode != 0:
        raise ImageBuildFailed(f"{what} failed ({proc.returncode}): {proc.stderr[-800:]}")


def build_prog(rootfs: Path) -> None:
    """Build ``tvm-gocache`` with the image's go into :data:`PROG`."""
    src = rootfs / SCRATCH.lstrip("/") / "src"
    src.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SOURCE, src / "main.go")
    (rootfs / PROG.lstrip("/")).parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    env = dict(DEFAULT_ENV, GOCACHE=f"{SCRATCH}/cache", GOPATH=f"{SCRATCH}/gopath",
               GO111MODULE="off", GOTOOLCHAIN="local", CGO_ENABLED="0")  # fmt: skip
    argv = ["go", "build", "-trimpath", "-o", PROG, "main.go"]
    _check(chroot_run(rootfs, argv, env, f"{SCRATCH}/src"), "building tvm-gocache")
    (rootfs / PROG.lstrip("/")).chmod(0o755)


def fill_cache(rootfs: Path, env: Mapping[str, str]) -> None:
    """``go build std`` with a catalog command's ``env``, its outputs written to :data:`CACHE`."""
    env = {**DEFAULT_ENV, **env, "GOCACHEPROG": f"{PROG} -ro= -rw {CACHE}"}
    for path in (env.get("GOCACHE"), env.get("GOTMPDIR"), env.get("GOPATH")):
        if path:
            (rootfs / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
    _check(chroot_run(rootfs, ["go", "build", "std"], env), "go build std")


# Entries hello world's own package adds (its archive, the compile's output and
# link inputs: 4 with go 1.24); ``fmt`` and what it imports would add over 100.
OWN_ENTRIES = 8


def misses(rootfs: Path, command: str) -> int:
    """Entries the catalog's ``command`` adds to a fresh sandbox cache compiling
    hello world in ``/work``: only its own package's, when the baked cache serves
    the standard library."""
    env = go_env(command)
    assert env is not None
    work = rootfs / "work"
    (work / "main.go").write_text(HELLO)
    try:
        proc = chroot_run(
            rootfs, ["/bin/sh", "-c", command, "compile", "main.go"], DEFAULT_ENV, "/work"
        )
        _check(proc, command)
        return len(list((rootfs / env["GOCACHE"].lstrip("/") / "prog/a").iterdir()))
    finally:
        for name in ("main.go", "a.out"):
            (work / name).unlink(missing_ok=True)


def build_go_cache(rootfs: Path, compiles: Sequence[str]) -> int:
    """Bake the cache for each go command of ``compiles``; the number of entries.

    A command whose hello world still misses more than its own package's entries
    after that fails the build rather than ship 160 MB that no compile uses."""
    commands = [c for c in compiles if go_env(c) is not None]
    if not commands:
        raise ImageBuildFailed("go_cache is set but no compile command is a 'go build'")
    try:
        build_prog(rootfs)
        for command in commands:
            fill_cache(rootfs, go_env(command) or {})
        for path in (rootfs / CACHE.lstrip("/")).rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        for command in commands:
            if (missed := misses(rootfs, command)) > OWN_ENTRIES:
                raise ImageBuildFailed(f"{command}: {missed} misses on hello world with the cache")
            _clean(rootfs, go_env(command) or {})
    finally:
        shutil.rmtree(rootfs / SCRATCH.lstrip("/"), ignore_errors=True)
    return len(list((rootfs / CACHE.lstrip("/") / "a").iterdir()))


def _clean(rootfs: Path, env: Mapping[str, str]) -> None:
    for name in ("GOCACHE", "GOPATH"):
        if env.get(name, "").startswith("/tmp/"):
            shutil.rmtree(rootfs / env[name].lstrip("/"), ignore_errors=True)
