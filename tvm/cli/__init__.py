"""The ``tvm`` command. One module per command group; this module wires them."""

from __future__ import annotations

import sys

import click

from tvm import __version__
from tvm.errors import TVMError


class _Group(click.Group):
    """Turns TVM errors into one clear line and exit status 1 (no traceback)."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except TVMError as exc:
            click.secho(f"error: {exc.message}", fg="red", err=True)
            sys.exit(1)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="tvm")
def main() -> None:
    """TVM: run untrusted code in many languages inside throw-away sandboxes."""


def _register() -> None:
    from tvm.cli import images, info, kernel, keys, logs, run, server

    for module in (server, run, info, images, kernel, keys, logs):
        for command in module.COMMANDS:
            main.add_command(command)


_register()
