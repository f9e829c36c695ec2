"""The guest kernel: an uncompressed ``vmlinux`` built from Debian's ``linux-source-6.1``.

The project's own fragment (``microvm.config`` beside this module) is merged
onto ``make tinyconfig`` with the kernel's ``scripts/kconfig/merge_config.sh``,
then ``make olddefconfig`` and ``make vmlinux``. The result is cached by the
hash of (source version + fragment)::

    $TVM_HOME/kernels/<source version>-<digest>/vmlinux
    $TVM_HOME/kernels/<source version>-<digest>/config          the final .config
    $TVM_HOME/kernels/<source version>-<digest>/manifest.json

Build deps (Debian): linux-source-6.1 build-essential bc bison flex libelf-dev libssl-dev.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tvm.errors import ImageBuildFailed, ImageNotBuilt

SOURCE_PACKAGE = "linux-source-6.1"
SOURCE_TARBALL = Path("/usr/src/linux-source-6.1.tar.xz")
FRAGMENT = Path(__file__).with_name("microvm.config")
RECIPE_VERSION = "1"  # bump when the build steps change
BUILD_DEPS = "linux-source-6.1 build-essential bc bison flex libelf-dev libssl-dev"
# Roughly how many objects a tinyconfig + fragment vmlinux compiles (for progress).
EXPECTED_OBJECTS = 1400

Progress = Callable[[str, int, int], None]  # (message, done, total)


@dataclass(frozen=True)
class KernelBuild:
    source_version: str
    digest: str
    directory: Path

    @property
    def vmlinux(self) -> Path:
        return self.directory / "vmlinux"


def fragment_text() -> str:
    return FRAGMENT.read_text()


def fragment_options(text: str | None = None) -> dict[str, str]:
    """``CONFIG_X`` -> value (``n`` for "is not set") from a config fragment."""
    options: dict[str, str] = {}
    for line in (text if text is not None else fragment_text()).splitlines():
        line = line.strip()
        unset = re.fullmatch(r"# (CONFIG_\w+) is not set", line)
        if unset:
            options[unset.group(1)] = "n"
        elif line.startswith("CONFIG_") and "=" in line:
            key, _, value = line.partition("=")
            options[key] = value
    return options


def source_version() -> str:
    """The installed ``linux-source-6.1`` version, e.g. ``6.1.192-2``."""
    if not SOURCE_TARBALL.is_file():
        raise ImageNotBuilt(
            f"{SOURCE_TARBALL} is missing; install the kernel source: apt-get install {BUILD_DEPS}"
        )
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", SOURCE_PACKAGE],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        out = ""
    if out:
        return out
    digest = hashlib.sha256()
    with SOURCE_TARBALL.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return f"src-{digest.hexdigest()[:12]}"


def kernel_digest(version: str, fragment: str) -> str:
    text = f"{RECIPE_VERSION}\n{version}\n{fragment}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def kernels_dir(home: Path) -> Path:
    return home / "kernels"


def wanted_build(home: Path) -> KernelBuild:
    version = source_version()
    digest = kernel_digest(version, fragment_text())
    return KernelBuild(version, digest, kernels_dir(home) / f"{version}-{digest}")


def find_built(home: Path) -> KernelBuild | None:
    """The newest built kernel made from the current fragment (source may be absent)."""
    fragment_sha = hashlib.sha256(fragment_text().encode()).hexdigest()
    best: tuple[float, KernelBuild] | None = None
    root = kernels_dir(home)
    if not root.is_dir():
        return None
    for manifest in root.glob("*/manifest.json"):
        try:
            data = json.loads(manifest.read_text())
        except (OSError, ValueError):
            continue
        build = KernelBuild(
            data.get("source_version", "?"), data.get("digest", "?"), manifest.parent
        )
        if data.get("fragment_sha256") != fragment_sha or not build.vmlinux.is_file():
            continue
        built_at = float(data.get("built_at", 0))
        if best is None or built_at > best[0]:
            best = (built_at, build)
    return best[1] if best else None


def _run(argv: list[str], cwd: Path, log: Path, env: dict[str, str]) -> None:
    with log.open("a") as fh:
        fh.write(f"$ {' '.join(argv)}\n")
        fh.flush()
        result = subprocess.run(argv, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0:
        raise ImageBuildFailed(f"kernel build step failed: {' '.join(argv)}; see {log}")


def _missing_options(config: Path, wanted: dict[str, str]) -> list[str]:
    final = fragment_options(config.read_text())
    return [
        f"{key}={value} (got {final.get(key, 'n')})"
        for key, value in wanted.items()
        if final.get(key, "n") != value
    ]


def build_kernel(
    home: Path,
    *,
    jobs: int | None = None,
    nice: int = 19,
    force: bool = False,
    progress: Progress | None = None,
) -> KernelBuild:
    """Build (or reuse) the guest kernel; returns where ``vmlinux`` is."""
    report = progress or (lambda message, done, total: None)
    build = wanted_build(home)
    if build.vmlinux.is_file() and not force:
        report(f"cached: {build.vmlinux}", 1, 1)
        return build
    missing_tools = [t for t in ("make", "gcc", "bison", "flex", "bc") if not shutil.which(t)]
    if missing_tools:
        raise ImageBuildFailed(f"missing build tools {missing_tools}; apt-get install {BUILD_DEPS}")
    work = kernels_dir(home) / f".build-{build.digest}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    log = work / "build.log"
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "ARCH": "x86_64",
        "LANG": "C",
        "HOME": str(work),
    }
    started = time.monotonic()
    try:
        report(f"unpacking {SOURCE_TARBALL.name} ({build.source_version})", 0, EXPECTED_OBJECTS)
        _run(["tar", "-xf", str(SOURCE_TARBALL), "-C", str(work)], work, log, env)
        src = next(p for p in work.iterdir() if p.is_dir())
        shutil.copy(FRAGMENT, work / "tvm.config")
        report("configuring: tinyconfig + tvm fragment", 0, EXPECTED_OBJECTS)
        _run(["make", "tinyconfig"], src, log, env)
        _run(
            ["scripts/kconfig/merge_config.sh", "-m", ".config", str(work / "tvm.config")],
            src, log, env,
        )  # fmt: skip
        _run(["make", "olddefconfig"], src, log, env)
        missing = _missing_options(src / ".config", fragment_options())
        if missing:
            report(f"note: options not in the final config: {', '.join(missing)}", 0, 1)
        _compile(src, log, env, jobs or os.cpu_count() or 1, nice, report)
        out = build.directory
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        shutil.copy(src / "vmlinux", tmp / "vmlinux")
        shutil.copy(src / ".config", tmp / "config")
        manifest = {
            "source_version": build.source_version,
            "digest": build.digest,
            "fragment_sha256": hashlib.sha256(fragment_text().encode()).hexdigest(),
            "built_at": time.time(),
            "build_seconds": round(time.monotonic() - started),
            "size_bytes": (tmp / "vmlinux").stat().st_size,
            "missing_options": missing,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    except ImageBuildFailed:
        kept = kernels_dir(home) / f"failed-{build.digest}.log"
        shutil.copy(log, kept)
        shutil.rmtree(work, ignore_errors=True)
        raise ImageBuildFailed(f"kernel build failed; log kept at {kept}") from None
    shutil.rmtree(work, ignore_errors=True)
    report(f"built {build.vmlinux}", EXPECTED_OBJECTS, EXPECTED_OBJECTS)
    return build


def _compile(
    src: Path, log: Path, env: dict[str, str], jobs: int, nice: int, report: Progress
) -> None:
    argv = ["nice", "-n", str(nice), "make", f"-j{jobs}", "vmlinux"]
    done = 0
    with log.open("a") as fh:
        fh.write(f"$ {' '.join(argv)}\n")
        proc = subprocess.Popen(
            argv, cwd=src, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            fh.write(line)
            if line.lstrip().startswith(("CC ", "AS ")):
                done += 1
                report(line.strip(), min(done, EXPECTED_OBJECTS - 1), EXPECTED_OBJECTS)
        code = proc.wait()
    if code != 0 or not (src / "vmlinux").is_file():
        raise ImageBuildFailed(f"make vmlinux exited {code}; see {log}")
