"""``tvm images``: build, list and remove language images.

``images`` is a click group; other modules may add subcommands to it
(``images.add_command(...)``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import click
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from tvm.config.catalog import Catalog, ImageRecipe, load_catalog
from tvm.config.settings import Settings
from tvm.pyrovm.images import ImageEntry, ImageStore, disk_usage_mb, remove_tree
from tvm.pyrovm.images.build import BuildResult, ImageBuilder


def _console() -> Console:
    """Rich on a terminal; wide plain lines in CI logs (no wrapping at 80 columns)."""
    console = Console(highlight=False)
    return console if console.is_terminal else Console(highlight=False, width=160)


@click.group()
def images() -> None:
    """Build, list and remove language images (root filesystems)."""


# ------------------------------------------------------------------ build ----
class _Reporter:
    """Build progress: a live line per image on a terminal, plain lines otherwise."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live = console.is_terminal
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[image]:<16}"),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=console,
        )
        self.tasks: dict[str, TaskID] = {}
        self.last: dict[str, str] = {}
        self.started: dict[str, float] = {}

    def __enter__(self) -> _Reporter:
        if self.live:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.progress.stop()

    def phase(self, image: str, message: str) -> None:
        self.started.setdefault(image, time.monotonic())
        if self.live:
            if image not in self.tasks:
                self.tasks[image] = self.progress.add_task(message, image=image, total=None)
            self.progress.update(self.tasks[image], description=message)
        elif self.last.get(image) != message:
            elapsed = time.monotonic() - self.started[image]
            self.console.print(f"{image}: [{elapsed:5.0f}s] {message}", highlight=False)
        self.last[image] = message

    def finished(self, result: BuildResult) -> None:
        name = result.recipe.name
        if result.built:
            text = f"[green]built[/] in {result.seconds:.0f} s, {result.size_mb} MB"
        else:
            text = f"up to date ({result.size_mb} MB)"
        if self.live:
            if name not in self.tasks:
                self.tasks[name] = self.progress.add_task(text, image=name, total=None)
            self.progress.update(self.tasks[name], description=text, total=1, completed=1)
            self.progress.stop_task(self.tasks[name])
        else:
            self.console.print(f"{name}: {text}")


def _used_images(catalog: Catalog) -> list[ImageRecipe]:
    return list({lang.image.name: lang.image for lang in catalog}.values())


def _select(
    catalog: Catalog, targets: Iterable[str], image_names: Iterable[str], all_images: bool
) -> list[ImageRecipe]:
    """The recipes named on the command line (``LANG[@VERSION]`` or ``--image NAME``)."""
    if all_images:
        return list(catalog.images.values())
    chosen: list[ImageRecipe] = []
    for name in image_names:
        if name not in catalog.images:
            raise click.BadParameter(
                f"unknown image '{name}'; known: {', '.join(sorted(catalog.images))}",
                param_hint="--image",
            )
        chosen.append(catalog.images[name])
    for target in targets:
        language, _, version = target.partition("@")
        chosen.append(catalog.resolve(language, version or None).image)
    if not chosen:
        return _used_images(catalog)
    return list(dict.fromkeys(chosen))


@images.command()
@click.argument("targets", nargs=-1, metavar="[LANG[@VERSION]]...")
@click.option("--image", "image_names", multiple=True, metavar="NAME", help="image by name")
@click.option("--all", "all_images", is_flag=True, help="every image of the catalog")
@click.option("--force", is_flag=True, help="rebuild even if already built")
def build(targets: tuple[str, ...], image_names: tuple[str, ...], all_images: bool,
          force: bool) -> None:  # fmt: skip
    """Build images with mmdebstrap (default: every image a language uses).

    An image is rebuilt only when its recipe changed, or with --force."""
    settings = Settings()
    catalog = load_catalog()
    recipes = _select(catalog, targets, image_names, all_images)
    console = _console()
    store = ImageStore(settings)
    with _Reporter(console) as reporter:
        results = ImageBuilder(settings, store, reporter).build_many(recipes, force)
    table = Table("image", "result", "build time", "size")
    for result in results:
        table.add_row(
            result.recipe.name,
            "built" if result.built else "up to date",
            f"{result.seconds:.0f} s",
            f"{result.size_mb} MB",
        )
    console.print(table)
    console.print(_disk_line(store))


# ------------------------------------------------------------- list/rm ----
def _disk_line(store: ImageStore) -> str:
    used = disk_usage_mb(e.path for e in store.entries())
    return f"disk use: {used} MB in {store.root} (files shared between images counted once)"


@images.command("list")
def list_() -> None:
    """Images of the catalog and on disk: suite, digest, built?, size, languages."""
    settings = Settings()
    catalog = load_catalog()
    store = ImageStore(settings)
    users: dict[str, list[str]] = {}
    for lang in catalog:
        users.setdefault(lang.image.name, []).append(lang.key)
    table = Table("image", "suite", "digest", "built", "size", "build time", "languages")
    current = set()
    for recipe in catalog.images.values():
        current.add(recipe.digest)
        manifest = store.manifest(recipe)
        table.add_row(
            recipe.name,
            recipe.suite,
            recipe.digest,
            "[green]yes[/]" if manifest else "[red]no[/]",
            f"{manifest['size_mb']} MB" if manifest else "-",
            f"{manifest.get('build_seconds', 0):.0f} s" if manifest else "-",
            ", ".join(users.get(recipe.name, [])) or "(unused)",
        )
    for entry in store.entries():
        if entry.digest in current:
            continue
        manifest = entry.manifest or {}
        table.add_row(
            entry.name,
            str(manifest.get("suite", "?")),
            entry.digest,
            "[yellow]stale[/]" if entry.manifest else "[red]broken[/]",
            f"{manifest['size_mb']} MB" if "size_mb" in manifest else "-",
            "-",
            "(tvm images prune)",
        )
    console = _console()
    console.print(table)
    console.print(_disk_line(store))


def _remove(store: ImageStore, entries: Iterable[ImageEntry]) -> None:
    removed = 0
    with store.lock():
        for path in store.clean_leftovers():
            click.echo(f"removed leftover {path}")
        for entry in entries:
            remove_tree(entry.path)
            click.echo(f"removed {entry.path}")
            removed += 1
    if removed == 0:
        click.echo("nothing to remove")


@images.command()
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--all", "all_images", is_flag=True, help="remove every image")
def rm(names: tuple[str, ...], all_images: bool) -> None:
    """Remove images by name (every digest of that name), or --all."""
    if not names and not all_images:
        raise click.UsageError("name the images to remove, or pass --all")
    store = ImageStore(Settings())
    entries = store.entries()
    if not all_images:
        known = {e.name for e in entries} | set(load_catalog().images)
        unknown = [n for n in names if n not in known]
        if unknown:
            raise click.BadParameter(
                f"unknown image(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        entries = [e for e in entries if e.name in names]
    _remove(store, entries)


@images.command()
def prune() -> None:
    """Remove old digests of catalog images and leftovers of interrupted builds."""
    catalog = load_catalog()
    store = ImageStore(Settings())
    stale = [
        e
        for e in store.entries()
        if e.name in catalog.images and e.digest != catalog.images[e.name].digest
    ]
    _remove(store, stale)


COMMANDS: list[click.Command] = [images]
