"""The image store: the language images on disk, as the runtime reads them.

Layout under the data dir::

    $TVM_HOME/images/<name>-<digest>/rootfs/           the root filesystem (read-only in sandboxes)
    $TVM_HOME/images/<name>-<digest>/manifest.json     recipe, packages + versions, size, build time
    $TVM_HOME/images/.<name>-<digest>.partial-<pid>/   a build in progress, never used
    $TVM_HOME/logs/image-<name>-<digest>.log           the full output of the last build

An image is built when its ``manifest.json`` exists (it is written last, see
:mod:`.build`). The runtime (engine, pool, drivers) imports only this module.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tvm.config.catalog import ImageRecipe
from tvm.config.settings import Settings
from tvm.errors import ImageError, ImageNotBuilt

_ENTRY_RE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._+-]*)-(?P<digest>[0-9a-f]{16})$")
_LEFTOVER_RE = re.compile(r"^\..+\.(partial|old)-\d+$")


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
        # <name>-<digest> -> (its directory, its rootfs, its manifest's path): every
        # sandbox looks its image up, and a Path join costs more than the lookup.
        self._paths: dict[str, tuple[Path, Path, str]] = {}

    def _paths_of(self, recipe: ImageRecipe) -> tuple[Path, Path, str]:
        key = f"{recipe.name}-{recipe.digest}"
        found = self._paths.get(key)
        if found is None:
            directory = self.root / key
            found = self._paths[key] = (
                directory,
                directory / "rootfs",
                str(directory / "manifest.json"),
            )
        return found

    def image_dir(self, recipe: ImageRecipe) -> Path:
        return self._paths_of(recipe)[0]

    def rootfs(self, recipe: ImageRecipe) -> Path:
        """The built root filesystem of ``recipe``; ImageNotBuilt says how to build it."""
        if not self.is_built(recipe):
            raise ImageNotBuilt(
                f"image '{recipe.name}' is not built; run: tvm images build --image {recipe.name}"
            )
        return self._paths_of(recipe)[1]

    def is_built(self, recipe: ImageRecipe) -> bool:
        return os.path.isfile(self._paths_of(recipe)[2])

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
    def lock(self, wait: Callable[[str], None] | None = None) -> Iterator[None]:
        """Exclusive right to change the store (build, remove, prune). Held by
        another command: an :class:`ImageError`, or with ``wait`` (told why)
        the right once that command is done."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                busy = (
                    f"another 'tvm images' command is changing {self.root} (it holds "
                    f"{self.root / '.lock'})"
                )
                if wait is None:
                    raise ImageError(f"{busy}; wait for it to finish and retry") from exc
                wait(f"{busy}; waiting for it to finish")
                fcntl.flock(fh, fcntl.LOCK_EX)
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
