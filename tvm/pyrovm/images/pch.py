"""Precompiled headers baked into an image at build time (``bits/stdc++.h``).

g++ looks for ``HEADER.gch`` beside each header it includes; when that is a
directory it tries every file in it and uses the first one built with
compatible flags (the same language standard, ``-O`` level, macros...), else it
parses the header as usual. So one ``.gch`` per catalog compile command goes
into ``bits/stdc++.h.gch/``, built by the image's own g++ with that command's
exact flags: a compile that matches gets the header already parsed, one that
does not is unaffected, and either way the program compiles to the same bytes.
"""

from __future__ import annotations

import hashlib
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from tvm.errors import ImageBuildFailed

COMPILERS = ("g++",)  # the compilers whose precompiled headers we know how to build
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"}


def compile_flags(command: str) -> list[str] | None:
    """The flags of a catalog compile command that a precompiled header must share.

    ``None`` if the command is not a plain g++ invocation. Dropped: the output
    (``-o FILE``), the sources (globs, ``$@``) and the link-only ``-l``/``-L``."""
    argv = shlex.split(command)
    if not argv or argv[0] not in COMPILERS:
        return None
    flags: list[str] = []
    words = iter(argv[1:])
    for word in words:
        if word == "-o":
            next(words, None)
        elif word.startswith(("-l", "-L")):
            continue
        elif word.startswith("-"):
            flags.append(word)
        elif "*" in word or word.startswith("$"):
            continue  # the sources
        else:
            return None  # a shell construct or a named file: not ours to guess at
    return [argv[0], *flags]


def gch_name(flags: Sequence[str]) -> str:
    """The file name of the precompiled header built with ``flags``, inside ``HEADER.gch/``."""
    return hashlib.sha256(shlex.join(flags).encode()).hexdigest()[:12] + ".gch"


def _chroot(rootfs: Path, argv: Sequence[str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    return subprocess.run(
        [chroot, str(rootfs), *argv], input=stdin, env=ENV, capture_output=True, text=True,
        check=False,
    )  # fmt: skip


def _include_trace(rootfs: Path, flags: Sequence[str], header: str) -> str:
    """g++'s ``-H`` trace of compiling ``#include <header>`` with ``flags``."""
    argv = [*flags, "-H", "-fsyntax-only", "-x", "c++", "-"]
    proc = _chroot(rootfs, argv, f"#include <{header}>\n")
    if proc.returncode != 0:
        raise ImageBuildFailed(f"{shlex.join(argv)} on <{header}> failed: {proc.stderr[-500:]}")
    return proc.stderr


def header_path(rootfs: Path, flags: Sequence[str], header: str) -> str:
    """Where in the image the compiler finds ``<header>`` (the first line of its trace)."""
    for line in _include_trace(rootfs, flags, header).splitlines():
        if line.startswith((". ", "! ")):
            path = line[2:].strip()
            return path.removesuffix(".gch").rsplit(".gch/", 1)[0]
    raise ImageBuildFailed(f"{flags[0]} did not say where it found <{header}>")


def pch_used(rootfs: Path, flags: Sequence[str], header: str) -> str | None:
    """The precompiled header a compile with ``flags`` loads for ``<header>``, if any."""
    for line in _include_trace(rootfs, flags, header).splitlines():
        if line.startswith("! "):
            return line[2:].strip()
    return None


def build_pch(rootfs: Path, headers: Sequence[str], compiles: Sequence[str]) -> list[str]:
    """Precompile each header for each g++ command in ``compiles``; the files written.

    Each is checked to be picked up by a compile with those flags; one that is
    not fails the build rather than leaving 100 MB of dead weight."""
    written: list[str] = []
    flag_sets = [f for f in dict.fromkeys(map(_key, compiles)) if f]
    for key in flag_sets:
        flags = shlex.split(key)
        for header in headers:
            source = header_path(rootfs, flags, header)
            target = f"{source}.gch/{gch_name(flags)}"
            (rootfs / target.lstrip("/")).parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            argv = [*flags, "-x", "c++-header", source, "-o", target]
            proc = _chroot(rootfs, argv)
            if proc.returncode != 0:
                raise ImageBuildFailed(f"{shlex.join(argv)} failed: {proc.stderr[-500:]}")
            (rootfs / target.lstrip("/")).chmod(0o644)
            if pch_used(rootfs, flags, header) != target:
                raise ImageBuildFailed(f"{shlex.join(flags)} does not use {target}")
            written.append(target)
    return written


def _key(command: str) -> str:
    flags = compile_flags(command)
    return shlex.join(flags) if flags else ""
