"""What an image's root filesystem holds: its Python, its Debian and pip packages
(read by the build for the manifest, and by the customize hook)."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from pathlib import Path


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


def python_version(rootfs: Path) -> str | None:
    """``3.11`` for an image whose ``/usr/bin/python3`` is python3.11."""
    with contextlib.suppress(OSError):
        target = os.readlink(rootfs / "usr/bin/python3")
        if re.fullmatch(r"python3\.\d+", target):
            return target.removeprefix("python")
    found = sorted(rootfs.glob("usr/bin/python3.[0-9]*"))
    names = [p.name for p in found if re.fullmatch(r"python3\.\d+", p.name)]
    return names[-1].removeprefix("python") if names else None
