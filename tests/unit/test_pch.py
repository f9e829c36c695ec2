"""Which flags a precompiled header is built with, and how the recipe carries it."""

from __future__ import annotations

from pathlib import Path

from tvm.config.catalog import ImageRecipe, load_catalog
from tvm.config.settings import Settings
from tvm.pyrovm.images import build
from tvm.pyrovm.images.pch import compile_flags, gch_name


def test_flags_are_the_compile_commands_minus_output_sources_and_libraries() -> None:
    command = "g++ -std=gnu++17 -O2 -pipe -o a.out *.cpp -lm"
    assert compile_flags(command) == ["g++", "-std=gnu++17", "-O2", "-pipe"]
    assert compile_flags('g++ -O2 -o prog "$@" -L/x -lpthread') == ["g++", "-O2"]


def test_commands_that_are_not_plain_gxx_get_none() -> None:
    assert compile_flags("gcc -std=gnu17 -O2 -o a.out *.c -lm") is None
    assert compile_flags("g++ -O2 *.cpp && strip a.out") is None
    assert compile_flags("") is None


def test_one_gch_per_flag_set() -> None:
    a = gch_name(["g++", "-std=gnu++17", "-O2"])
    assert a.endswith(".gch") and a == gch_name(["g++", "-std=gnu++17", "-O2"])
    assert a != gch_name(["g++", "-std=gnu++20", "-O2"])


def test_the_catalog_gives_the_gcc_image_its_cpp_compile_commands() -> None:
    catalog = load_catalog()
    cpp = catalog.resolve("c++", "12.2.0")
    assert cpp.image.pch == ("bits/stdc++.h",)
    assert cpp.compile in cpp.image.pch_compiles
    assert compile_flags(cpp.compile or "") is not None
    assert catalog.resolve("python", "3.11").image.pch_compiles == ()


def test_digest_changes_with_the_pch_and_its_flags_only_when_there_is_one() -> None:
    plain = ImageRecipe("gcc", "bookworm", ("g++",))
    assert (
        plain.digest == ImageRecipe("gcc", "bookworm", ("g++",), pch_compiles=("g++ -O2",)).digest
    )
    one = ImageRecipe(
        "gcc", "bookworm", ("g++",), pch=("bits/stdc++.h",), pch_compiles=("g++ -O2",)
    )
    other = ImageRecipe(
        "gcc", "bookworm", ("g++",), pch=("bits/stdc++.h",), pch_compiles=("g++ -O1",)
    )
    assert len({plain.digest, one.digest, other.digest}) == 3


def test_hook_is_told_the_headers_and_commands(tmp_path: Path) -> None:
    recipe = ImageRecipe(
        "gcc", "bookworm", ("g++",), pch=("bits/stdc++.h",), pch_compiles=("g++ -O2 *.cpp",)
    )
    argv = build.mmdebstrap_argv(recipe, tmp_path / "rootfs", "http://mirror/debian", Settings())
    hook = next(a for a in argv if a.startswith("--customize-hook="))
    assert "--pch bits/stdc++.h" in hook and "--pch-compile 'g++ -O2 *.cpp'" in hook
