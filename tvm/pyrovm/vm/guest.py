"""Which guest kernel the VM drivers boot: the built one when present, else Debian's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tvm.pyrovm.vm import debian, kernel


@dataclass(frozen=True)
class GuestKernel:
    vmlinux: Path
    initrd: Path | None  # the Debian kernel needs one to load its virtio modules
    description: str

    @property
    def built(self) -> bool:
        return self.initrd is None


def guest_kernel(home: Path, *, allow_debian: bool = True) -> GuestKernel:
    """The kernel to boot; ImageNotBuilt says how to get one."""
    build = kernel.find_built(home)
    if build is not None:
        return GuestKernel(build.vmlinux, None, f"built kernel {build.source_version}")
    if not allow_debian:
        from tvm.errors import ImageNotBuilt

        raise ImageNotBuilt("guest kernel not built; run: tvm images kernel")
    vmlinux, initrd, release = debian.prepare(home)
    return GuestKernel(vmlinux, initrd, f"Debian {release} + initrd")
