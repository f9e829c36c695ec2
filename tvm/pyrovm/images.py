"""Language images: root filesystems built from Debian packages, cached by recipe hash.

Layout under the data dir::

    $TVM_HOME/images/<name>-<digest>/rootfs/           the root filesystem (read-only in sandboxes)
    $TVM_HOME/images/<name>-<digest>/manifest.json     recipe, packages + versions, size, build time
    $TVM_HOME/images/.<name>-<digest>.partial-<pid>/   a build in progress, never used
    $TVM_HOME/logs/image-<name>-<digest>.log           the full output of the last build

How one image is built (:class:`ImageBuilder`), all under one lock (``images/.lock``):

1. leftover partial dirs of interrupted builds are removed;
2. ``mmdebstrap`` installs the recipe's packages (plus ``python3``, which the
   in-sandbox agent needs) into the partial dir, without docs, man pages and locales;
3. its customize hook runs this module (``python -m tvm.pyrovm.images customize``)
   on the host: mount points for bwrap, passwd/group entries for the sandbox
   uids, the recipe's ``pip`` packages (host pip, ``--target`` the image's
   site dir), and ``.pyc`` files compiled by the image's own Python;
4. ``manifest.json`` is written last and the dir is renamed into place (swapped
   atomically with an older build under ``--force``);
5. identical files are hard-linked across all images to share disk.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from tvm.config.catalog import IMAGE_FORMAT, ImageRecipe
from tvm.config.settings import Settings
from tvm.errors import ConfigError, ImageBuildFailed, ImageError, ImageNotBuilt

AGENT_PACKAGES = ("python3", "python3-minimal")  # either gives /usr/bin/python3
WHEEL_RUNTIME_PACKAGES = ("libstdc++6", "libgcc-s1")  # beyond libc, what wheels link to
LOG_TAIL_LINES = 30
_ENTRY_RE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._+-]*)-(?P<digest>[0-9a-f]{16})$")
_LEFTOVER_RE = re.compile(r"^\..+\.(partial|old)-\d+$")

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


# ------------------------------------------------------------------ store ----
@dataclass(frozen=True)
class ImageEntry:
    """One image directory found on disk (current or stale digest)."""

    name: str
    digest: str
    path: Path
    manifest: dict[str, Any] | None


class ImageStore:
    """Where built images live, and the safe ways to look at and remove them."""

    def __init__(self, settings: Settings) -> None:
        self.root = settings.images_dir

    def image_dir(self, recipe: ImageRecipe) -> Path:
        return self.root / f"{recipe.name}-{recipe.digest}"

    def rootfs(self, recipe: ImageRecipe) -> Path:
        """The built root filesystem of ``recipe``; ImageNotBuilt says how to build it."""
        path = self.image_dir(recipe) / "rootfs"
        if not self.is_built(recipe):
            raise ImageNotBuilt(
                f"image '{recipe.name}' is not built; run: tvm images build --image {recipe.name}"
            )
        return path

    def is_built(self, recipe: ImageRecipe) -> bool:
        return (self.image_dir(recipe) / "manifest.json").is_file()

    def manifest(self, recipe: ImageRecipe) -> dict[str, Any] | None:
        return _read_manifest(self.image_dir(recipe))

    def size_mb(self, recipe: ImageRecipe) -> int | None:
        manifest = self.manifest(recipe)
        return None if manifest is None else int(manifest.get("size_mb", 0))

    def entries(self) -> list[ImageEntry]:
        """Every ``<name>-<digest>`` dir under the store, sorted by name."""
        found = []
        for path in sorted(self.root.glob("*")) if self.root.is_dir() else []:
            match = _ENTRY_RE.match(path.name)
            if match and path.is_dir():
                found.append(ImageEntry(match["name"], match["digest"], path, _read_manifest(path)))
        return found

    def leftovers(self) -> list[Path]:
        """Partial dirs of builds that did not finish, and replaced old builds."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if _LEFTOVER_RE.match(p.name))

    def clean_leftovers(self) -> list[Path]:
        """Remove :meth:`leftovers`; call it only while holding :meth:`lock`."""
        removed = self.leftovers()
        for path in removed:
            remove_tree(path)
        return removed

    def rootfs_dirs(self) -> list[Path]:
        return [e.path / "rootfs" for e in self.entries() if e.manifest is not None]

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive right to change the store (build, remove, prune)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise ImageError(
                    f"another 'tvm images' command is changing {self.root} (it holds "
                    f"{self.root / '.lock'}); wait for it to finish and retry"
                ) from exc
            yield

    def install(self, partial: Path, final: Path) -> None:
        """Move a finished build into place; an existing one is swapped out atomically."""
        if not (final.exists() or final.is_symlink()):
            os.rename(partial, final)
            return
        if not _exchange(partial, final):
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.rename(final, old)
            os.rename(partial, final)
            partial = old
        remove_tree(partial)


def _read_manifest(image_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((image_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (renameat2 RENAME_EXCHANGE); False if unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, bytes(a), at_fdcwd, bytes(b), rename_exchange) == 0


def _mounts_below(path: Path) -> list[str]:
    """Mount points at or below ``path``, deepest first."""
    real = os.path.realpath(path)
    points = []
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as fh:
        for line in fh:
            point = re.sub(r"\\(\d{3})", lambda m: chr(int(m[1], 8)), line.split()[4])
            if point == real or point.startswith(real + "/"):
                points.append(point)
    return sorted(points, key=len, reverse=True)


def remove_tree(path: Path) -> None:
    """Delete an image or partial dir; never descends into something still mounted."""
    if path.is_symlink():
        path.unlink()
        return
    if not path.exists():
        return
    for point in _mounts_below(path):
        subprocess.run(["umount", "--lazy", point], check=False, capture_output=True)
    if still := _mounts_below(path):
        raise ImageError(f"cannot remove {path}: still mounted at {still}; umount them first")
    shutil.rmtree(path)


def disk_usage_mb(paths: Iterable[Path]) -> int:
    """Disk blocks used under ``paths``, each hard-linked inode counted once (like du)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for top in paths:
        for dirpath, dirnames, filenames in os.walk(top):
            for name in (*dirnames, *filenames):
                with contextlib.suppress(OSError):
                    st = os.lstat(os.path.join(dirpath, name))
                    if (st.st_dev, st.st_ino) not in seen:
                        seen.add((st.st_dev, st.st_ino))
                        total += st.st_blocks * 512
    return round(total / (1 << 20))


# ----------------------------------------------------------------- mirror ----
DEBIAN_CODENAMES = frozenset(
    {"bullseye", "bookworm", "trixie", "forky", "duke", "sid"}
    | {"oldstable", "stable", "testing", "unstable"}
)


@dataclass(frozen=True)
class AptSource:
    """One ``deb`` entry of the host's apt configuration."""

    uri: str
    suites: tuple[str, ...]


def parse_deb822_sources(text: str) -> list[AptSource]:
    """Entries of a deb822 ``*.sources`` file (``Types:``, ``URIs:``, ``Suites:``)."""
    found = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0].isspace() and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        suites = tuple(fields.get("suites", "").split())
        found += [AptSource(uri, suites) for uri in fields.get("uris", "").split()]
    return found


def parse_one_line_sources(text: str) -> list[AptSource]:
    """Entries of a one-line ``sources.list`` (``deb [opts] URI SUITE COMPONENTS``)."""
    found = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) < 3 or words[0] != "deb":
            continue
        rest = words[1:]
        if rest[0].startswith("["):
            while rest and not rest[0].endswith("]"):
                rest = rest[1:]
            rest = rest[1:]
        if len(rest) >= 2:
            found.append(AptSource(rest[0], (rest[1],)))
    return found


def pick_debian_mirror(sources: Iterable[AptSource]) -> str | None:
    """The main Debian archive among ``sources``: not -security, a Debian suite."""
    best, best_score = None, 0
    for source in sources:
        if "security" in source.uri or all(s.endswith("-security") for s in source.suites):
            continue
        score = 0
        if source.uri.rstrip("/").endswith("/debian"):
            score += 2
        if any(s.split("-")[0] in DEBIAN_CODENAMES for s in source.suites):
            score += 1
        if score > best_score:
            best, best_score = source.uri.rstrip("/"), score
    return best


def host_apt_sources(apt_dir: Path = Path("/etc/apt")) -> list[AptSource]:
    """Every ``deb`` entry configured on this host, in apt's reading order."""
    sources: list[AptSource] = []
    files = [apt_dir / "sources.list"]
    parts = apt_dir / "sources.list.d"
    if parts.is_dir():
        files += sorted(p for p in parts.iterdir() if p.suffix in (".list", ".sources"))
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        parse = parse_deb822_sources if path.suffix == ".sources" else parse_one_line_sources
        sources += parse(text)
    return sources


def debian_mirror(settings: Settings, apt_dir: Path = Path("/etc/apt")) -> str:
    """``TVM_DEBIAN_MIRROR`` if set, else the Debian archive the host's apt uses."""
    if settings.debian_mirror.strip():
        return settings.debian_mirror.strip().rstrip("/")
    mirror = pick_debian_mirror(host_apt_sources(apt_dir))
    if mirror is None:
        raise ConfigError(
            f"no Debian archive found in {apt_dir}/sources.list or {apt_dir}/sources.list.d/; "
            "set TVM_DEBIAN_MIRROR (or debian_mirror in config.toml) to a Debian mirror URL"
        )
    return mirror


# ---------------------------------------------------------------- builder ----
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
    hook = [sys.executable, "-m", __name__, "customize"]
    hook += ["--uid-base", str(settings.uid_base), "--uid-count", str(settings.uid_count)]
    for requirement in recipe.pip:
        hook += ["--pip", requirement]
    argv = [
        shutil.which("mmdebstrap") or "mmdebstrap",
        "--mode=" + ("root" if os.geteuid() == 0 else "unshare"),
        "--variant=essential",
        "--include=" + ",".join(image_packages(recipe)),
        *(f"--dpkgopt={opt}" for opt in DPKG_EXCLUDES),
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
        with self.store.lock():
            self.store.clean_leftovers()
            for recipe in dict.fromkeys(recipes):
                try:
                    results.append(self._build_one(recipe, force))
                except ImageBuildFailed as exc:
                    self.reporter.phase(recipe.name, "failed")
                    failures.append(exc.message)
            if any(r.built for r in results):
                self._share_files()
        if failures:
            raise ImageBuildFailed("\n\n".join(failures))
        return results

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
    paths = [str(Path(__file__).resolve().parents[2])]
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
def installed_packages(rootfs: Path) -> dict[str, str]:
    """``{package: version}`` of the Debian packages installed in ``rootfs``."""
    admindir = rootfs / "var/lib/dpkg"
    if not (admindir / "status").is_file():
        return {}
    fmt = "${db:Status-Abbrev}\t${Package}\t${Version}\n"
    proc = subprocess.run(
        ["dpkg-query", f"--admindir={admindir}", "-W", f"-f={fmt}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    packages = {}
    for line in proc.stdout.splitlines():
        status, _, rest = line.partition("\t")
        name, _, version = rest.partition("\t")
        if status.startswith("ii"):
            packages[name] = version
    return packages


def pip_packages(rootfs: Path) -> dict[str, str]:
    """``{distribution: version}`` installed by pip under ``/usr/local/lib``."""
    found = {}
    for info in sorted(rootfs.glob("usr/local/lib/python3*/dist-packages/*.dist-info")):
        name, _, version = info.name.removesuffix(".dist-info").partition("-")
        found[name] = version
    return found


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


# ------------------------------------------------ customize hook (in-build) ----
def _info(message: str) -> None:
    print(f"I: tvm: {message}", file=sys.stderr, flush=True)


def python_version(rootfs: Path) -> str | None:
    """``3.11`` for an image whose ``/usr/bin/python3`` is python3.11."""
    with contextlib.suppress(OSError):
        target = os.readlink(rootfs / "usr/bin/python3")
        if re.fullmatch(r"python3\.\d+", target):
            return target.removeprefix("python")
    found = sorted(rootfs.glob("usr/bin/python3.[0-9]*"))
    names = [p.name for p in found if re.fullmatch(r"python3\.\d+", p.name)]
    return names[-1].removeprefix("python") if names else None


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


def customize_rootfs(rootfs: Path, uid_base: int, uid_count: int, pip: Sequence[str] = ()) -> None:
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the mmdebstrap customize hook (not a user command)."""
    parser = argparse.ArgumentParser(prog="python -m tvm.pyrovm.images")
    sub = parser.add_subparsers(dest="command", required=True)
    customize = sub.add_parser("customize", help="finish a bootstrapped image (hook)")
    customize.add_argument("rootfs", type=Path)
    customize.add_argument("--uid-base", type=int, required=True)
    customize.add_argument("--uid-count", type=int, required=True)
    customize.add_argument("--pip", action="append", default=[])
    args = parser.parse_args(argv)
    try:
        customize_rootfs(args.rootfs, args.uid_base, args.uid_count, args.pip)
    except (OSError, subprocess.CalledProcessError, ImageBuildFailed) as exc:
        print(f"E: tvm: customize failed: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
