"""VM disk images: a read-only ext4 made from a language image's rootfs.

The disk holds the rootfs as is, plus the agent at ``/.tvm/tvm_agent`` and the
guest's init at ``/.tvm/init`` (written into the filesystem with ``debugfs``,
so the rootfs directory itself is never modified). It is cached next to the
rootfs by the hash of (image directory + agent sources)::

    $TVM_HOME/images/<name>-<digest>/disk-<hash>.ext4

Every VM attaches it read-only; its writable ``/work`` and ``/tmp`` are tmpfs
inside the guest, gone with the VM, or (Firecracker) on a per-VM scratch disk
(:func:`make_scratch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

from tvm.errors import ImageBuildFailed, SandboxError
from tvm.pyrovm.drivers.base import AGENT_DIR

FORMAT = "1"
INIT_SCRIPT = (
    "#!/usr/bin/python3 -ISB\n"
    "import sys; sys.path.insert(0, '/.tvm')\n"
    "from tvm_agent.vminit import main\n"
    "main()\n"
)


def agent_files() -> list[Path]:
    return sorted(p for p in AGENT_DIR.glob("*.py"))


def disk_key(rootfs: Path) -> str:
    manifest = rootfs.parent / "manifest.json"
    stamp = int(manifest.stat().st_mtime) if manifest.exists() else 0
    digest = hashlib.sha256(f"{FORMAT}|{rootfs.resolve()}|{stamp}|{INIT_SCRIPT}".encode())
    for path in agent_files():
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def disk_path(rootfs: Path) -> Path:
    return rootfs.parent / f"disk-{disk_key(rootfs)}.ext4"


def _size_bytes(rootfs: Path) -> int:
    out = subprocess.run(
        ["du", "-s", "-B1", "-x", str(rootfs.resolve())], capture_output=True, text=True, check=True
    ).stdout
    used = int(out.split()[0])
    return (int(used * 1.2) + (64 << 20) + (1 << 20) - 1) & ~((1 << 20) - 1)


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ImageBuildFailed(f"{argv[0]} failed ({result.returncode}): {result.stderr[-1500:]}")


def _debugfs_script(init: Path) -> str:
    lines = ["mkdir /.tvm", "mkdir /.tvm/tvm_agent"]
    for path in agent_files():
        target = f"/.tvm/tvm_agent/{path.name}"
        lines += [f"rm {target}", f"write {path} {target}", f"sif {target} mode 0100644"]
        lines += [f"sif {target} uid 0", f"sif {target} gid 0"]
    lines += ["rm /.tvm/init", f"write {init} /.tvm/init", "sif /.tvm/init mode 0100755"]
    lines += ["sif /.tvm/init uid 0", "sif /.tvm/init gid 0"]
    return "\n".join(lines) + "\n"


def build_disk(rootfs: Path) -> Path:
    """The ext4 disk of ``rootfs`` (built once; concurrent callers wait for it)."""
    target = disk_path(rootfs)
    if target.is_file():
        return target
    lock_path = rootfs.parent / ".disk.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file():
            return target
        tmp = target.with_suffix(".tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        try:
            with tempfile.TemporaryDirectory(prefix="tvm-disk-") as scratch:
                init = Path(scratch) / "init"
                init.write_text(INIT_SCRIPT)
                script = Path(scratch) / "cmds"
                script.write_text(_debugfs_script(init))
                with open(tmp, "wb") as fh:
                    fh.truncate(_size_bytes(rootfs))
                _run(["mkfs.ext4", "-q", "-F", "-L", "tvmroot", "-O", "^has_journal",
                      "-m", "0", "-i", "8192", "-E", "root_owner=0:0",
                      "-d", str(rootfs.resolve()), str(tmp)])  # fmt: skip
                _run(["debugfs", "-w", "-f", str(script), str(tmp)])
            os.chmod(tmp, 0o444)
            tmp.rename(target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        for old in rootfs.parent.glob("disk-*.ext4"):
            if old != target:
                with contextlib.suppress(OSError):
                    old.unlink()
    return target


async def make_scratch(path: Path, size_mb: int) -> None:
    """An empty ext4 disk of ``size_mb`` for the guest's /work and /tmp."""
    with open(path, "wb") as fh:
        fh.truncate(size_mb << 20)
    argv = ["mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-m", "0", "-E", "root_owner=0:0"]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, str(path), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    except OSError as exc:
        raise SandboxError(f"cannot run mkfs.ext4: {exc}") from exc
    output, _ = await proc.communicate()
    if proc.returncode != 0:
        raise SandboxError(f"mkfs.ext4 of the scratch disk failed: {output.decode()[-500:]}")
