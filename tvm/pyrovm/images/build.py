"""Building images: mmdebstrap from Debian packages into the :class:`ImageStore`.

How images are built (:class:`ImageBuilder`), all under the store's lock (``images/.lock``),
``image_build_jobs`` of them at once (a build is mostly one dpkg process):

1. leftover partial dirs of interrupted builds are removed;
2. ``mmdebstrap`` installs the recipe's packages (plus ``python3``, which the
   in-sandbox agent needs) into the partial dir, without docs, man pages and locales;
3. its customize hook (:mod:`.customise`, run as ``python -m tvm.pyrovm.images
   customize``) finishes the image on the host;
4. ``manifest.json`` is written last and the dir is renamed into place (swapped
   atomically with an older build under ``--force``);
5. identical files are hard-linked across all images to share disk.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from tvm.config.catalog import IMAGE_FORMAT, ImageRecipe
from tvm.config.settings import Settings
from tvm.errors import ImageBuildFailed
from tvm.pyrovm.images.contents import installed_packages, pip_packages, python_version
from tvm.pyrovm.images.mirror import debian_mirror
from tvm.pyrovm.images.store import ImageStore, disk_usage_mb, remove_tree

AGENT_PACKAGES = ("python3", "python3-minimal")  # either gives /usr/bin/python3
WHEEL_RUNTIME_PACKAGES = ("libstdc++6", "libgcc-s1")  # beyond libc, what wheels link to
LOG_TAIL_LINES = 30

MAN_DIRS = tuple(f"/usr/share/man/man{section}" for section in range(1, 9))

# dpkg drops these paths on install: nobody reads docs inside a sandbox.
DPKG_EXCLUDES = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/lintian/*",
    "path-exclude=/usr/share/linda/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
)
# No fsync per unpacked file: a build that dies is a partial dir, removed and redone
# (step 1), and a finished one is synced once before it is renamed into place.
DPKG_OPTIONS = (*DPKG_EXCLUDES, "force-unsafe-io")


def image_packages(recipe: ImageRecipe) -> list[str]:
    """The recipe's packages, plus python3 for the agent if the recipe lacks it, plus
    the C++ runtime that manylinux wheels (numpy, scipy...) expect if it has ``pip``."""
    packages = list(dict.fromkeys(recipe.packages))
    if not any(p in AGENT_PACKAGES for p in packages):
        packages.append("python3")
    if recipe.pip:
        packages += [p for p in WHEEL_RUNTIME_PACKAGES if p not in packages]
    return packages


def mmdebstrap_argv(
    recipe: ImageRecipe, target: Path, mirror: str, settings: Settings
) -> list[str]:
    """The full mmdebstrap command that builds ``recipe`` into ``target``."""
    hook = [sys.executable, "-m", "tvm.pyrovm.images", "customize"]
    hook += ["--uid-base", str(settings.uid_base), "--uid-count", str(settings.uid_count)]
    for requirement in recipe.pip:
        hook += ["--pip", requirement]
    for header in recipe.pch:
        hook += ["--pch", header]
    for command in recipe.pch_compiles if recipe.pch else ():
        hook += ["--pch-compile", command]
    for command in recipe.go_compiles if recipe.go_cache else ():
        hook += ["--go-cache-compile", command]
    for source_file, command in recipe.cds_compiles:
        hook += ["--cds-compile", json.dumps([source_file, command])]
    for triple in recipe.cds_runs:
        hook += ["--cds-run", json.dumps(list(triple))]
    argv = [
        shutil.which("mmdebstrap") or "mmdebstrap",
        "--mode=" + ("root" if os.geteuid() == 0 else "unshare"),
        "--variant=essential",
        "--include=" + ",".join(image_packages(recipe)),
        *(f"--dpkgopt={opt}" for opt in DPKG_OPTIONS),
        # update-alternatives (e.g. openjdk's postinst) links man pages into these
        # dirs and fails when path-exclude left them out; strip_docs removes them later.
        "--essential-hook=mkdir -p " + " ".join(f'"$1"{path}' for path in MAN_DIRS),
        f'--customize-hook={shlex.join(hook)} "$1"',
        recipe.suite,
        str(target),
        f"deb {mirror} {recipe.suite} main",
    ]
    return argv


@dataclass(frozen=True)
class BuildResult:
    """What :meth:`ImageBuilder.build_many` did for one image."""

    recipe: ImageRecipe
    built: bool  # False: it was already up to date
    seconds: float
    size_mb: int
    path: Path


class BuildReporter(Protocol):
    """Receives progress: each phase of a build, then its result."""

    def phase(self, image: str, message: str) -> None: ...

    def finished(self, result: BuildResult) -> None: ...


class NullReporter:
    def phase(self, image: str, message: str) -> None:
        pass

    def finished(self, result: BuildResult) -> None:
        pass


class ImageBuilder:
    """Builds image recipes into the :class:`ImageStore` with mmdebstrap."""

    def __init__(
        self,
        settings: Settings,
        store: ImageStore | None = None,
        reporter: BuildReporter | None = None,
    ) -> None:
        self.settings = settings
        self.store = store or ImageStore(settings)
        self.reporter: BuildReporter = reporter or NullReporter()

    def build(self, recipe: ImageRecipe, force: bool = False) -> BuildResult:
        return self.build_many([recipe], force)[0]

    def build_many(self, recipes: Sequence[ImageRecipe], force: bool = False) -> list[BuildResult]:
        """Build each recipe unless it is built already (``force``: rebuild anyway).

        Keeps going after a failure; raises ImageBuildFailed naming every failed
        image once all are done."""
        results: list[BuildResult] = []
        failures: list[str] = []
        names = ", ".join(dict.fromkeys(recipe.name for recipe in recipes)) or "images"
        with self.store.lock(wait=lambda why: self.reporter.phase(names, why)):
            self.store.clean_leftovers()
            stop = threading.Event()  # interrupted: the builds not yet started never start
            pool = ThreadPoolExecutor(self.settings.image_build_jobs, "image-build")
            try:
                builds = [
                    pool.submit(self._build_unless_stopped, r, force, stop)
                    for r in dict.fromkeys(recipes)
                ]
                for recipe, future in zip(dict.fromkeys(recipes), builds, strict=True):
                    try:
                        results.append(future.result())
                    except ImageBuildFailed as exc:
                        self.reporter.phase(recipe.name, "failed")
                        failures.append(exc.message)
            except BaseException:
                stop.set()
                raise
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
            if any(r.built for r in results):
                self._share_files()
        if failures:
            raise ImageBuildFailed("\n\n".join(failures))
        return results

    def _build_unless_stopped(
        self, recipe: ImageRecipe, force: bool, stop: threading.Event
    ) -> BuildResult:
        if stop.is_set():
            raise CancelledError
        try:
            return self._build_one(recipe, force)
        except ImageBuildFailed:
            raise  # the others go on
        except BaseException:
            stop.set()
            raise

    def _build_one(self, recipe: ImageRecipe, force: bool) -> BuildResult:
        final = self.store.image_dir(recipe)
        manifest = self.store.manifest(recipe)
        if manifest is not None and not force:
            result = BuildResult(
                recipe, False, float(manifest.get("build_seconds", 0)),
                int(manifest.get("size_mb", 0)), final,
            )  # fmt: skip
            self.reporter.finished(result)
            return result
        mirror = debian_mirror(self.settings)
        partial = final.with_name(f".{final.name}.partial-{os.getpid()}")
        log_path = self.settings.logs_dir / f"image-{final.name}.log"
        started = time.monotonic()
        try:
            partial.mkdir(parents=True)
            self.reporter.phase(recipe.name, f"mmdebstrap {recipe.suite} from {mirror}")
            self._bootstrap(recipe, partial / "rootfs", mirror, log_path)
            self.reporter.phase(recipe.name, "writing manifest")
            os.sync()  # dpkg wrote without fsync (DPKG_OPTIONS); the manifest comes after
            seconds = time.monotonic() - started
            manifest = make_manifest(recipe, partial / "rootfs", mirror, seconds)
            (partial / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            self.store.install(partial, final)
        finally:
            remove_tree(partial)
        result = BuildResult(recipe, True, seconds, manifest["size_mb"], final)
        self.reporter.finished(result)
        return result

    def _bootstrap(self, recipe: ImageRecipe, rootfs: Path, mirror: str, log_path: Path) -> None:
        """Run mmdebstrap into ``rootfs``, its output to ``log_path`` and the reporter."""
        if shutil.which("mmdebstrap") is None:
            raise ImageBuildFailed("mmdebstrap not found: apt-get install mmdebstrap")
        argv = mmdebstrap_argv(recipe, rootfs, mirror, self.settings)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONPATH=_package_parent())
        with log_path.open("w") as log:
            log.write("$ " + shlex.join(argv) + "\n")
            log.flush()
            try:
                code = _stream(argv, env, log, lambda line: self._on_line(recipe.name, line))
            except OSError as exc:
                raise ImageBuildFailed(f"cannot run mmdebstrap: {exc}") from exc
        if code != 0:
            raise ImageBuildFailed(_failure_message(recipe, code, log_path))

    def _on_line(self, image: str, line: str) -> None:
        if line.startswith(("I: ", "E: ", "W: ")):
            message = line[3:].strip()
            if message.startswith("running --"):
                message = message.split(" in ")[0].split(":")[0]
            self.reporter.phase(image, message[:90])

    def _share_files(self) -> None:
        self.reporter.phase("all images", "hard-linking identical files")
        try:
            share_identical_files(self.store.rootfs_dirs())
        except (OSError, subprocess.SubprocessError) as exc:
            self.reporter.phase("all images", f"hard-linking skipped: {exc}")


def _package_parent() -> str:
    """The dir holding the ``tvm`` package, so the customize hook can import it."""
    paths = [str(Path(__file__).resolve().parents[3])]
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    return os.pathsep.join(paths)


def _stream(argv: list[str], env: dict[str, str], log: Any, on_line: Callable[[str], None]) -> int:
    """Run ``argv`` with no stdin, copy its output to ``log`` line by line; its exit code.

    Stops the child (and waits for its own cleanup) if we are interrupted."""
    with subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=env, text=True, errors="replace", bufsize=1,
    ) as proc:  # fmt: skip
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                log.flush()
                on_line(line)
            return proc.wait()
        except BaseException:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise


def _failure_message(recipe: ImageRecipe, code: int, log_path: Path) -> str:
    lines = log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
    tail = "\n".join("  " + line for line in lines)
    hint = (
        f"check the packages of [images.{recipe.name}] in tvm/config/languages.toml and that "
        "the Debian mirror answers (TVM_DEBIAN_MIRROR)"
    )
    if os.geteuid() != 0:
        hint += "; or run as root (mmdebstrap --mode=unshare needs /etc/subuid entries)"
    return (
        f"image '{recipe.name}' failed to build: mmdebstrap exited {code}. "
        f"Last {len(lines)} lines of {log_path}:\n{tail}\n"
        f"Next: {hint}, then run: tvm images build --image {recipe.name}"
    )


# --------------------------------------------------------------- manifest ----


def make_manifest(
    recipe: ImageRecipe, rootfs: Path, mirror: str, build_seconds: float
) -> dict[str, Any]:
    """The ``manifest.json`` of a finished build: written last, it marks the image built."""
    return {
        "name": recipe.name,
        "digest": recipe.digest,
        "format": IMAGE_FORMAT,
        "suite": recipe.suite,
        "recipe": {
            "suite": recipe.suite,
            "packages": list(recipe.packages),
            "pip": list(recipe.pip),
            "pch": list(recipe.pch),
            "go_cache": recipe.go_cache,
        },
        "mirror": mirror,
        "python": python_version(rootfs),
        "packages": installed_packages(rootfs),
        "pip_packages": pip_packages(rootfs),
        "size_mb": disk_usage_mb([rootfs]),
        "build_seconds": round(build_seconds, 1),
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


# ------------------------------------------------------------ disk sharing ----
def share_identical_files(dirs: Sequence[Path]) -> None:
    """Replace identical files across ``dirs`` by hard links (same content, mode, owner)."""
    if len(dirs) == 0:
        return
    tool = shutil.which("hardlink")
    if tool:
        argv = [tool, "--quiet", "--ignore-time", "--respect-xattrs", *map(str, dirs)]
        subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, capture_output=True)
    else:
        _hardlink_python(dirs)


def _has_xattrs(path: Path) -> bool:
    try:
        return bool(os.listxattr(path, follow_symlinks=False))
    except OSError:  # the filesystem has none
        return False


def _hardlink_python(dirs: Sequence[Path]) -> int:
    """The fallback of :func:`share_identical_files`; the number of files linked."""
    import hashlib

    by_shape: dict[tuple[int, int, int, int, int], list[Path]] = {}
    for top in dirs:
        for dirpath, _, filenames in os.walk(top):
            for name in filenames:
                path = Path(dirpath, name)
                st = path.lstat()
                if path.is_symlink() or not path.is_file() or st.st_size == 0:
                    continue
                if _has_xattrs(path):
                    continue  # capabilities and the like must not spread
                shape = (st.st_dev, st.st_size, st.st_mode, st.st_uid, st.st_gid)
                by_shape.setdefault(shape, []).append(path)
    linked = 0
    for paths in by_shape.values():
        if len(paths) < 2:
            continue
        first_by_hash: dict[str, Path] = {}
        for path in paths:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            first = first_by_hash.setdefault(digest, path)
            if first is path or os.path.samefile(first, path):
                continue
            tmp = path.with_name(f".{path.name}.tvm-link")
            os.link(first, tmp)
            os.replace(tmp, path)
            linked += 1
    return linked
