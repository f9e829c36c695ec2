"""The Lima side of ``tvm start --lima``, ``tvm stop --lima`` and ``tvm status``."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console

from tvm.pyrolima.commands import Runner, require
from tvm.pyrolima.lima import LimaManager, size_bytes

F = Callable[..., Any]


def lima_options(command: F) -> F:
    """The options ``tvm start`` takes for a Lima deployment."""
    for option in reversed(
        [
            click.option(
                "--lima", is_flag=True, help="run TVM on K3s + Istio in a Lima VM (needs limactl)"
            ),
            click.option(
                "--memory", default="4GiB", show_default=True, help="with --lima: the VM's memory"
            ),
            click.option(
                "--cpus",
                type=click.IntRange(1, 64),
                default=4,
                show_default=True,
                help="with --lima: the VM's CPUs",
            ),
            click.option(
                "--instance", default="tvm", show_default=True, help="with --lima: the instance"
            ),
        ]
    ):
        command = option(command)
    return command


def start_lima(memory: str, cpus: int, instance: str, port: int | None, debug: bool) -> None:
    """Create or start the instance, wait for TVM's rollout, print how to reach it."""
    require("limactl")
    manager = LimaManager(
        memory=memory, cpu=cpus, instance=instance, api_port=port or 8080, runner=Runner(debug)
    )
    existing = manager.status()
    if existing is not None and (existing.cpus, existing.memory_bytes) != (
        cpus,
        size_bytes(memory),
    ):
        click.echo(
            f"Lima instance {instance} exists with {existing.cpus} CPUs and "
            f"{existing.memory_bytes / (1 << 30):g} GiB; --memory/--cpus apply only when it "
            f"is created (`limactl delete {instance}` to change them)",
            err=True,
        )
    started = manager.start()
    click.echo(f"TVM runs in Lima instance {started.name} ({started.status}). Try:")
    click.echo(f"  {manager.curl_example()}")
    click.echo(f"  {' '.join(manager.kubectl())} get pods -n tvm")


def stop_lima(instance: str, debug: bool) -> None:
    require("limactl")
    LimaManager(instance=instance, runner=Runner(debug)).stop()
    click.echo(f"stopped Lima instance {instance}")


def print_lima_status(console: Console, instance: str = "tvm") -> None:
    """One line on the Lima deployment, for ``tvm status``."""
    if shutil.which("limactl") is None:
        console.print("Lima: limactl is not installed (`tvm start --lima` needs it)")
        return
    found = LimaManager(instance=instance).status()
    if found is None:
        console.print(f"Lima: no instance {instance!r} (create it with `tvm start --lima`)")
        return
    memory = f"{found.memory_bytes / (1 << 30):g} GiB"
    console.print(
        f"Lima: instance [bold]{found.name}[/] is {found.status} "
        f"({found.cpus} CPUs, {memory}, {found.dir})"
    )
