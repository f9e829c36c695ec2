"""A real mmdebstrap build of a tiny image (root, mmdebstrap and a Debian mirror needed)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tvm.config.catalog import ImageRecipe
from tvm.config.settings import Settings
from tvm.errors import ConfigError
from tvm.pyrovm.images import ImageStore
from tvm.pyrovm.images.build import ImageBuilder
from tvm.pyrovm.images.mirror import debian_mirror

pytestmark = pytest.mark.slow

TINY = ImageRecipe(name="tiny", suite="trixie", packages=("python3-minimal",), pip=("six",))


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "building an image needs root (mmdebstrap --mode=root)"
    if shutil.which("mmdebstrap") is None:
        return "mmdebstrap not installed (apt-get install mmdebstrap)"
    if shutil.which("chroot") is None:
        return "chroot not found"
    try:
        debian_mirror(Settings())
    except ConfigError as exc:
        return str(exc)
    return None


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    monkeypatch.setenv("TVM_HOME", str(tmp_path))
    return Settings()


def _in_image(rootfs: Path, code: str) -> str:
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"}
    argv = [shutil.which("chroot") or "chroot", str(rootfs), "/usr/bin/python3", "-c", code]
    return subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout


def test_tiny_image_builds_and_is_usable(settings: Settings) -> None:
    store = ImageStore(settings)
    result = ImageBuilder(settings, store).build(TINY)
    log = settings.logs_dir / f"image-tiny-{TINY.digest}.log"
    assert result.built, log.read_text()[-3000:]

    rootfs = store.rootfs(TINY)
    manifest = store.manifest(TINY)
    assert manifest is not None
    assert manifest["suite"] == "trixie" and "python3-minimal" in manifest["packages"]
    assert manifest["pip_packages"].get("six") and manifest["size_mb"] > 10
    assert (rootfs / "work").is_dir() and (rootfs / ".tvm/tvm_agent").is_dir()
    assert not list((rootfs / "usr/share/man").glob("*/*"))

    last_uid = settings.uid_base + settings.uid_count - 1
    code = f"import pwd, six, sys; print(pwd.getpwuid({last_uid}).pw_name, sys.version_info >= (3, 13))"
    assert _in_image(rootfs, code).split() == [f"runner{last_uid}", "True"]
    version = manifest["python"]
    assert list((rootfs / f"usr/lib/python{version}/__pycache__").glob("os.*.pyc"))

    again = ImageBuilder(settings, store).build(TINY)
    assert not again.built and store.leftovers() == []
