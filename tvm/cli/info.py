"""``tvm languages`` and ``tvm status``: what this host offers."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from tvm.config.catalog import load_catalog
from tvm.config.settings import Settings


@click.command()
def languages() -> None:
    """The language table: name, versions, aliases, compiled?, image built?, size."""
    from tvm.pyrovm.images import ImageStore

    images = ImageStore(Settings())
    table = Table("language", "version", "aliases", "compiled", "image", "built", "size")
    for lang in load_catalog():
        size = images.size_mb(lang.image) if images.is_built(lang.image) else None
        table.add_row(
            lang.name,
            lang.version,
            ", ".join(lang.aliases),
            "yes" if lang.compiled else "no",
            lang.image.name,
            "yes" if size is not None else "no",
            f"{size} MB" if size is not None else "-",
        )
    Console().print(table)


@click.command()
def status() -> None:
    """Which isolation drivers are usable on this host, and why not."""
    from tvm.pyrovm import drivers

    settings = Settings()
    table = Table("driver", "usable", "reason")
    for name, availability in drivers.probe_all().items():
        table.add_row(
            name, "[green]yes[/]" if availability.usable else "[red]no[/]", availability.reason
        )
    console = Console()
    console.print(table)
    try:
        chosen = drivers.choose(settings.driver).name
        console.print(f"TVM_DRIVER={settings.driver} -> [bold]{chosen}[/]")
    except Exception as exc:
        console.print(f"[red]TVM_DRIVER={settings.driver}: {exc}[/]")


COMMANDS = [languages, status]
