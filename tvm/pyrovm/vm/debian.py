"""Debian's prebuilt cloud kernel as a guest kernel (no compile; QEMU only).

``linux-image-cloud-amd64`` ships a compressed ``vmlinuz`` with virtio as
modules. For ``qemu -M microvm`` this module extracts the ELF ``vmlinux`` from
it and writes a tiny initrd (static busybox + the virtio modules) whose
``/init`` loads ``virtio_ring``, ``virtio``, ``virtio_mmio``, ``virtio_blk`` and
``virtio_console`` in that order, mounts ``/dev/vda`` read-only and hands over
to the agent (``/.tvm/init``). Firecracker needs the built kernel instead
(:mod:`tvm.pyrovm.vm.kernel`). Cached under ``$TVM_HOME/kernels/debian-<release>-<digest>/``.
"""

from __future__ import annotations

import hashlib
import lzma
import re
import shutil
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

from tvm.errors import ImageNotBuilt
from tvm.pyrovm.vm.cpio import CpioWriter

MODULES = ("virtio_ring", "virtio", "virtio_mmio", "virtio_blk", "virtio_console")
BUSYBOX = Path("/bin/busybox")
INIT = """#!/bin/busybox sh
B=/bin/busybox
$B mkdir -p /proc /sys /dev /newroot
$B mount -t devtmpfs devtmpfs /dev
for m in {modules}; do $B insmod /lib/modules/$m.ko || echo "tvm-initrd: insmod $m failed"; done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 1000 ]; do $B usleep 10000; i=$((i+1)); done
if ! $B mount -t ext4 -o ro /dev/vda /newroot; then
  echo "tvm-initrd: cannot mount /dev/vda"; $B poweroff -f
fi
$B mount --move /dev /newroot/dev
exec $B switch_root /newroot /.tvm/init
"""
RECIPE_VERSION = "1"


@dataclass(frozen=True)
class DebianKernel:
    release: str  # e.g. 6.1.0-56-cloud-amd64
    vmlinuz: Path
    modules: Path


def find_debian_kernel(
    boot: Path = Path("/boot"), lib: Path = Path("/lib/modules")
) -> DebianKernel:
    """The newest installed Debian cloud kernel (else any Debian kernel) with modules."""
    found = []
    for vmlinuz in boot.glob("vmlinuz-*"):
        release = vmlinuz.name.removeprefix("vmlinuz-")
        if (lib / release / "modules.dep").is_file():
            found.append((release.endswith("-cloud-amd64"), _version_key(release), release))
    if not found:
        raise ImageNotBuilt(
            "no guest kernel: build one with `tvm images kernel`, or install Debian's "
            "prebuilt one: apt-get install linux-image-cloud-amd64 busybox-static lz4"
        )
    release = max(found)[2]
    return DebianKernel(release, boot / f"vmlinuz-{release}", lib / release)


def _version_key(release: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", release))


def extract_vmlinux(vmlinuz: Path) -> bytes:
    """The ELF kernel inside a bzImage (LZ4, xz, gzip or zstd payload)."""
    data = vmlinuz.read_bytes()
    for magic, decode in (
        (b"\x02\x21\x4c\x18", _lz4),
        (b"\xfd7zXZ\x00", _xz),
        (b"\x1f\x8b\x08", _gzip),
        (b"\x28\xb5\x2f\xfd", _zstd),
    ):
        start = data.find(magic)
        while start != -1:
            try:
                out = decode(data[start:])
            except (OSError, ValueError, lzma.LZMAError, zlib.error):
                out = b""
            if out.startswith(b"\x7fELF"):
                return out
            start = data.find(magic, start + 1)
    raise ImageNotBuilt(f"cannot find an ELF kernel inside {vmlinuz} (need lz4/zstd installed?)")


def _tool(argv: list[str], data: bytes) -> bytes:
    if not shutil.which(argv[0]):
        raise OSError(f"{argv[0]} not installed")
    return subprocess.run(argv, input=data, capture_output=True, check=False).stdout


def _lz4(data: bytes) -> bytes:
    return _tool(["lz4", "-dc"], data)


def _zstd(data: bytes) -> bytes:
    return _tool(["zstd", "-dc"], data)


def _xz(data: bytes) -> bytes:
    return lzma.LZMADecompressor().decompress(data)


def _gzip(data: bytes) -> bytes:
    return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)


def module_paths(kernel: DebianKernel) -> dict[str, Path]:
    """Module name -> .ko file for :data:`MODULES` (built-in ones are left out)."""
    paths: dict[str, Path] = {}
    for line in (kernel.modules / "modules.dep").read_text().splitlines():
        rel = line.split(":", 1)[0]
        name = Path(rel).name.split(".ko")[0].replace("-", "_")
        if name in MODULES:
            paths[name] = kernel.modules / rel
    return paths


def write_initrd(kernel: DebianKernel, target: Path) -> None:
    if not BUSYBOX.is_file():
        raise ImageNotBuilt("initrd needs a static busybox: apt-get install busybox-static")
    modules = module_paths(kernel)
    cpio = CpioWriter()
    for directory in ("bin", "dev", "lib", "lib/modules", "proc", "sys", "newroot"):
        cpio.directory(directory)
    cpio.char_device("dev/console", 5, 1)
    cpio.file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
    for name, path in modules.items():
        raw = path.read_bytes()
        if path.suffix == ".xz":
            raw = lzma.decompress(raw)
        cpio.file(f"lib/modules/{name}.ko", raw, 0o644)
    present = " ".join(m for m in MODULES if m in modules)
    cpio.file("init", INIT.format(modules=present).encode(), 0o755)
    target.write_bytes(cpio.finish())


def prepare(home: Path, kernel: DebianKernel | None = None) -> tuple[Path, Path, str]:
    """(vmlinux, initrd, release) for the Debian kernel, built once and cached."""
    kernel = kernel or find_debian_kernel()
    stat = kernel.vmlinuz.stat()
    key = f"{RECIPE_VERSION}|{kernel.release}|{stat.st_size}|{int(stat.st_mtime)}|{INIT}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    out = home / "kernels" / f"debian-{kernel.release}-{digest}"
    vmlinux, initrd = out / "vmlinux", out / "initrd.cpio"
    if vmlinux.is_file() and initrd.is_file():
        return vmlinux, initrd, kernel.release
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "vmlinux").write_bytes(extract_vmlinux(kernel.vmlinuz))
    write_initrd(kernel, tmp / "initrd.cpio")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return vmlinux, initrd, kernel.release
