"""How the recipe carries the Go build cache, and what the image build takes
from a catalog go command."""

from __future__ import annotations

from pathlib import Path

from tvm.config.catalog import ImageRecipe, load_catalog
from tvm.config.settings import Settings
from tvm.pyrovm.images import build
from tvm.pyrovm.images.gocache import PROG, go_env


def test_go_env_is_the_assignments_before_go_build() -> None:
    command = 'GOCACHE=/tmp/c GOPATH=/tmp/go GO111MODULE=off go build -o a.out "$@"'
    assert go_env(command) == {"GOCACHE": "/tmp/c", "GOPATH": "/tmp/go", "GO111MODULE": "off"}
    assert go_env('go build -o a.out "$@"') == {}


def test_commands_that_are_not_go_build_get_none() -> None:
    assert go_env("GOCACHE=/tmp/c go run main.go") is None
    assert go_env("gcc -O2 -o a.out *.c") is None
    assert go_env("") is None


def test_the_catalog_bakes_a_cache_for_go_1_24_and_its_command_reads_it() -> None:
    catalog = load_catalog()
    go = catalog.resolve("go", "1.24")
    assert go.image.go_cache and go.image.go_compiles == (go.compile,)
    env = go_env(go.compile or "")
    assert env is not None and env["GOCACHEPROG"] == PROG and env["GOCACHE"].startswith("/tmp/")
    # go 1.19 has no GOCACHEPROG; its image ships the standard library prebuilt instead.
    old = catalog.resolve("go", "1.19")
    assert not old.image.go_cache and "GOCACHEPROG" not in (old.compile or "")
    assert catalog.resolve("python", "3.11").image.go_compiles == ()


def test_digest_changes_with_the_go_cache_and_its_commands_only_when_there_is_one() -> None:
    plain = ImageRecipe("go", "trixie", ("golang-go",))
    assert plain.digest == ImageRecipe("go", "trixie", ("golang-go",), go_compiles=("x",)).digest
    one = ImageRecipe("go", "trixie", ("golang-go",), go_cache=True, go_compiles=("go build",))
    other = ImageRecipe(
        "go", "trixie", ("golang-go",), go_cache=True, go_compiles=("GOFLAGS=-x go build",)
    )
    assert len({plain.digest, one.digest, other.digest}) == 3


def test_hook_is_told_the_go_commands(tmp_path: Path) -> None:
    recipe = ImageRecipe("go", "trixie", ("golang-go",), go_cache=True, go_compiles=("go build",))
    argv = build.mmdebstrap_argv(recipe, tmp_path / "rootfs", "http://mirror/debian", Settings())
    hook = next(a for a in argv if a.startswith("--customize-hook="))
    assert "--go-cache-compile 'go build'" in hook
    plain = ImageRecipe("go", "trixie", ("golang-go",), go_compiles=("go build",))
    argv = build.mmdebstrap_argv(plain, tmp_path / "rootfs", "http://mirror/debian", Settings())
    assert "--go-cache-compile" not in next(a for a in argv if a.startswith("--customize-hook="))
