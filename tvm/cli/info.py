"""``tvm languages`` and ``tvm status``: what this host offers."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from tvm.cli.lima import print_lima_status
from tvm.config.catalog import load_catalog, verified_keys
from tvm.config.settings import Settings


@click.command()
def languages() -> None:
    """The language table: name, versions, aliases, compiled?, image built?, size, tested?"""
    from tvm.pyrovm.images import ImageStore

    catalog = load_catalog()
    images = ImageStore(Settings())
    tested = verified_keys(catalog)
    table = Table("language", "version", "aliases", "compiled", "image", "built", "size", "tested")
    previous = None
    for lang in catalog:
        size = images.size_mb(lang.image) if images.is_built(lang.image) else None
        table.add_row(
            lang.name if lang.name != previous else "",
            lang.version,
            ", ".join(lang.aliases),
            "yes" if lang.compiled else "no",
            lang.image.name,
            "yes" if size is not None else "no",
            f"{size} MB" if size is not None else "-",
            "yes" if lang.key in tested else "no",
            end_section=False,
        )
        previous = lang.name
    console = Console()
    if not console.is_terminal:  # piped: do not squeeze 70 rows into 80 columns
        console = Console(width=200)
    console.print(table)
    built = sum(1 for lang in catalog if images.is_built(lang.image))
    console.print(
        f"{len(catalog.names())} languages, {len(catalog)} versions: {built} with a built "
        f"image, {len(tested)} tested (only those are offered by /api/v2/runtimes)"
    )


@click.command()
def status() -> None:
    """Which isolation drivers are usable on this host, and why not."""
    from tvm.pyrovm import drivers

    settings = Settings()
    table = Table("driver", "usable", "reason")
    for name, availability in drivers.probe_all(settings).items():
        table.add_row(
            name, "[green]yes[/]" if availability.usable else "[red]no[/]", availability.reason
        )
    console = Console()
    console.print(table)
    try:
        chosen = drivers.choose_class(settings).name
        console.print(f"TVM_DRIVER={settings.driver} -> [bold]{chosen}[/]")
    except Exception as exc:
        console.print(f"[red]TVM_DRIVER={settings.driver}: {exc}[/]")
    print_lima_status(console)


COMMANDS = [languages, status]
