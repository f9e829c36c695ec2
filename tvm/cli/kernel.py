"""``tvm images kernel``: build the microVM guest kernel (or prepare Debian's).

Registered onto the ``tvm images`` group defined in :mod:`tvm.cli.images`.
"""

from __future__ import annotations

import time

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from tvm.cli.images import images
from tvm.config.settings import Settings
from tvm.pyrovm.vm import debian, kernel

COMMANDS: list[click.Command] = []  # `kernel` lives under `tvm images`


class _Progress:
    """A bar on a terminal; a line every ``every`` objects in CI logs."""

    def __init__(self, console: Console, every: int = 100) -> None:
        self.console = console
        self.every = every
        self.last = -every
        self.bar: Progress | None = None
        self.task: TaskID | None = None
        if console.is_terminal:
            self.bar = Progress(
                TextColumn("kernel"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("{task.description}"), console=console,
            )  # fmt: skip

    def __enter__(self) -> _Progress:
        if self.bar:
            self.bar.start()
            self.task = self.bar.add_task("", total=kernel.EXPECTED_OBJECTS)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar:
            self.bar.stop()

    def __call__(self, message: str, done: int, total: int) -> None:
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, completed=done, total=total, description=message[-60:])
        elif done - self.last >= self.every or not message.startswith(("CC", "AS")):
            self.last = done
            self.console.print(f"[{done}/{total}] {message}")


@images.command("kernel")
@click.option("--jobs", "-j", type=int, default=None, help="parallel make jobs (default: CPUs)")
@click.option("--nice", type=click.IntRange(0, 19), default=19, show_default=True)
@click.option("--force", is_flag=True, help="rebuild even when cached")
@click.option(
    "--debian", "use_debian", is_flag=True, help="prepare Debian's prebuilt kernel + initrd instead"
)
def kernel_command(jobs: int | None, nice: int, force: bool, use_debian: bool) -> None:
    """Build the guest kernel (vmlinux from linux-source-6.1 + TVM's config fragment).

    Cached under $TVM_HOME/kernels by the hash of the source version and the
    fragment; a second run returns at once. The qemu driver boots it when
    present (else Debian's cloud kernel); the firecracker driver needs it.
    """
    settings = Settings()
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=160)
    started = time.monotonic()
    if use_debian:
        vmlinux, initrd, release = debian.prepare(settings.home)
        console.print(f"Debian kernel {release}: {vmlinux} + {initrd}")
        return
    with _Progress(console) as progress:
        build = kernel.build_kernel(settings.home, jobs=jobs, nice=nice, force=force,
                                    progress=progress)  # fmt: skip
    size_mb = build.vmlinux.stat().st_size / (1 << 20)
    console.print(
        f"guest kernel {build.source_version} ({build.digest}): {build.vmlinux} "
        f"[{size_mb:.1f} MB, {time.monotonic() - started:.0f} s]"
    )
