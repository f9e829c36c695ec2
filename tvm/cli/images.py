"""``tvm images``: build, list and remove language images."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
