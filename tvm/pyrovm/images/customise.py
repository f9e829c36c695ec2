"""The mmdebstrap customize hook: runs on the host, in its own process, on a
freshly bootstrapped image (``python -m tvm.pyrovm.images customize ROOTFS ...``).

It adds the mount points bwrap needs, passwd/group entries for the sandbox
uids, the recipe's ``pip`` packages (host pip, ``--target`` the image's site
dir), ``.pyc`` files compiled by the image's own Python and the recipe's
precompiled headers (:mod:`.pch`), a Go build cache (:mod:`.gocache`), the
JVM compilers' class-data-sharing archives (:mod:`.jvmcds`), and removes docs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from tvm.errors import ImageBuildFailed
from tvm.pyrovm.images.contents import installed_packages, python_version
from tvm.pyrovm.images.gocache import build_go_cache
from tvm.pyrovm.images.jvmcds import build_cds
from tvm.pyrovm.images.pch import build_pch


def _info(message: str) -> None:
    print(f"I: tvm: {message}", file=sys.stderr, flush=True)


def make_mount_points(rootfs: Path) -> None:
    """Empty dirs bwrap mounts over: the workdir and the agent's code."""
    (rootfs / "work").mkdir(mode=0o755, exist_ok=True)
    (rootfs / ".tvm/tvm_agent").mkdir(mode=0o755, parents=True, exist_ok=True)


def add_sandbox_users(rootfs: Path, uid_base: int, uid_count: int) -> int:
    """passwd/group entries ``runner<uid>`` for the sandbox uids, so getpwuid works.

    Skips uids and names already present; returns how many users were added."""
    passwd, group = rootfs / "etc/passwd", rootfs / "etc/group"
    users = [line.split(":") for line in passwd.read_text().splitlines() if line]
    groups = [line.split(":") for line in group.read_text().splitlines() if line]
    taken_uids = {u[2] for u in users if len(u) > 2}
    taken_gids = {g[2] for g in groups if len(g) > 2}
    taken_names = {u[0] for u in users} | {g[0] for g in groups}
    new_users, new_groups = [], []
    for uid in range(uid_base, uid_base + uid_count):
        name = f"runner{uid}"
        if str(uid) in taken_uids or str(uid) in taken_gids or name in taken_names:
            continue
        new_users.append(f"{name}:x:{uid}:{uid}:tvm sandbox:/tmp:/usr/sbin/nologin\n")
        new_groups.append(f"{name}:x:{uid}:\n")
    with passwd.open("a") as fh:
        fh.writelines(new_users)
    with group.open("a") as fh:
        fh.writelines(new_groups)
    return len(new_users)


def strip_docs(rootfs: Path) -> None:
    """Remove docs that dpkg's path-exclude could not (Essential packages are unpacked
    before it applies); copyright files and locale.alias stay."""
    share = rootfs / "usr/share"
    for name in ("man", "info", "lintian", "linda"):
        _prune(share / name, lambda rel: False)
    _prune(share / "doc", lambda rel: len(rel.parts) == 2 and rel.name == "copyright")
    _prune(share / "locale", lambda rel: str(rel) == "locale.alias")


def _prune(top: Path, keep: Callable[[Path], bool]) -> None:
    if top.is_symlink() or not top.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(top, topdown=False):
        here = Path(dirpath)
        for name in filenames + [d for d in dirnames if (here / d).is_symlink()]:
            if not keep((here / name).relative_to(top)):
                (here / name).unlink()
        for name in dirnames:
            if not (here / name).is_symlink():
                with contextlib.suppress(OSError):
                    (here / name).rmdir()  # only once empty


def pip_platforms(glibc: tuple[int, int], machine: str) -> list[str]:
    """Wheel platform tags an image with that glibc can load, newest first."""
    major, minor = glibc
    tags = [f"manylinux_{major}_{m}_{machine}" for m in range(minor, 4, -1)]
    return [*tags, f"manylinux2014_{machine}", f"manylinux2010_{machine}", f"manylinux1_{machine}"]


def image_glibc(rootfs: Path) -> tuple[int, int]:
    version = installed_packages(rootfs).get("libc6", "")
    match = re.match(r"(\d+)\.(\d+)", version)
    if not match:
        raise ImageBuildFailed(f"cannot tell the glibc version of {rootfs} (libc6 not installed)")
    return int(match[1]), int(match[2])


def install_pip_packages(rootfs: Path, requirements: Sequence[str]) -> None:
    """Install wheels into the image's ``/usr/local/lib/python3.X/dist-packages`` with
    the host's pip, for the image's Python version, glibc and architecture."""
    version = python_version(rootfs)
    if version is None:
        raise ImageBuildFailed(f"no python3 in {rootfs}: cannot install pip packages")
    target = rootfs / f"usr/local/lib/python{version}/dist-packages"
    argv = [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile"]
    argv += ["--only-binary=:all:", "--target", str(target), "--implementation", "cp"]
    argv += ["--python-version", version, "--abi", "cp" + version.replace(".", "")]
    for tag in pip_platforms(image_glibc(rootfs), os.uname().machine):
        argv += ["--platform", tag]
    subprocess.run([*argv, *requirements], check=True, stdin=subprocess.DEVNULL)


def compile_python(rootfs: Path) -> None:
    """Write missing ``.pyc`` files with the image's own Python (cold imports 2x faster)."""
    version = python_version(rootfs)
    if version is None:
        return
    dirs = [f"/usr/lib/python{version}", "/usr/lib/python3/dist-packages",
            f"/usr/local/lib/python{version}/dist-packages"]  # fmt: skip
    dirs = [d for d in dirs if (rootfs / d.lstrip("/")).is_dir()]
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    argv = [chroot, str(rootfs), "/usr/bin/python3", "-m", "compileall", "-q", "-j0", *dirs]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"}
    proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        _info(f"compileall exited {proc.returncode}: some files have no .pyc (see above)")


def customize_rootfs(
    rootfs: Path,
    uid_base: int,
    uid_count: int,
    pip: Sequence[str] = (),
    pch: Sequence[str] = (),
    pch_compiles: Sequence[str] = (),
    go_cache_compiles: Sequence[str] = (),
    cds_compiles: Sequence[tuple[str, str]] = (),
    cds_runs: Sequence[tuple[str, str, str]] = (),
) -> None:
    """Everything the customize hook does to a freshly bootstrapped image."""
    _info("creating mount points")
    make_mount_points(rootfs)
    _info("adding sandbox users")
    add_sandbox_users(rootfs, uid_base, uid_count)
    _info("removing docs, man pages and locales")
    strip_docs(rootfs)
    if pip:
        _info(f"pip install {' '.join(pip)}")
        install_pip_packages(rootfs, pip)
    _info("byte-compiling Python modules")
    compile_python(rootfs)
    if pch:
        _info(f"precompiling {' '.join(pch)}")
        for path in build_pch(rootfs, pch, pch_compiles):
            _info(f"wrote {path}")
    if go_cache_compiles:
        _info("baking a Go build cache of the standard library")
        _info(f"{build_go_cache(rootfs, go_cache_compiles)} Go build cache entries")
    if cds_compiles or cds_runs:
        _info("dumping the JVMs' class-data-sharing archives")
        for path in build_cds(rootfs, cds_compiles, cds_runs):
            _info(f"wrote {path} ({(rootfs / path.lstrip('/')).stat().st_size >> 20} MB)")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the mmdebstrap customize hook (not a user command)."""
    parser = argparse.ArgumentParser(prog="python -m tvm.pyrovm.images")
    sub = parser.add_subparsers(dest="command", required=True)
    customize = sub.add_parser("customize", help="finish a bootstrapped image (hook)")
    customize.add_argument("rootfs", type=Path)
    customize.add_argument("--uid-base", type=int, required=True)
    customize.add_argument("--uid-count", type=int, required=True)
    customize.add_argument("--pip", action="append", default=[])
    customize.add_argument("--pch", action="append", default=[], help="header to precompile")
    customize.add_argument("--pch-compile", action="append", default=[], help="for this command")
    customize.add_argument(
        "--go-cache-compile", action="append", default=[], help="bake a Go cache for this command"
    )
    customize.add_argument(
        "--cds-compile", action="append", default=[], type=json.loads,
        help='JSON ["source file", "compile command"]: dump the CDS archive it names',
    )  # fmt: skip
    customize.add_argument(
        "--cds-run", action="append", default=[], type=json.loads,
        help='JSON ["source file", "compile", "run"]: dump the CDS archive the run names',
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        customize_rootfs(
            args.rootfs, args.uid_base, args.uid_count, args.pip, args.pch, args.pch_compile,
            args.go_cache_compile, [tuple(pair) for pair in args.cds_compile],
            [tuple(triple) for triple in args.cds_run],
        )  # fmt: skip
    except (OSError, subprocess.CalledProcessError, ImageBuildFailed) as exc:
        print(f"E: tvm: customize failed: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0
