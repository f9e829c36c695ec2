"""``tvm keys create|list|revoke``: the gateway's API keys (stored hashed)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from tvm.config.settings import Settings
from tvm.pyroshell.auth import hash_secret, new_secret
from tvm.pyroshell.store import Store

T = TypeVar("T")


def _with_store(work: Callable[[Store], Awaitable[T]]) -> T:
    async def run() -> T:
        store = Store.from_settings(Settings())
        await store.open()
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


@click.group()
def keys() -> None:
    """API keys of the gateway (sent as X-API-Key or X-Auth-Token)."""


@keys.command()
@click.argument("name")
@click.option(
    "--rate", type=click.IntRange(1), help="executions/min [default: TVM_KEY_RATE_PER_MINUTE]"
)
@click.option("--burst", type=click.IntRange(1), help="token-bucket size [TVM_KEY_BURST]")
@click.option(
    "--concurrency",
    type=click.IntRange(1),
    help="queued + running [TVM_KEY_MAX_CONCURRENT]",
)
def create(name: str, rate: int | None, burst: int | None, concurrency: int | None) -> None:
    """Create a key called NAME; its secret is printed once and never stored."""
    secret = new_secret()
    values: dict[str, Any] = {
        "name": name,
        "prefix": secret[:12],
        "secret_hash": hash_secret(secret),
        "rate_per_minute": rate,
        "burst": burst,
        "max_concurrent": concurrency,
    }
    key_id = _with_store(lambda store: store.add_key(values))
    click.echo(f"created key {key_id} ({name}), prefix {values['prefix']}")
    click.echo("secret (shown only now; send it as X-API-Key):")
    click.echo(secret)


@keys.command(name="list")
def list_keys() -> None:
    """List keys (never their secrets)."""
    settings = Settings()
    rows = _with_store(lambda store: store.keys())
    table = Table("id", "name", "prefix", "rate/min", "burst", "concurrency", "created", "state")
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["name"],
            row["prefix"],
            str(row["rate_per_minute"] or f"{settings.key_rate_per_minute} (default)"),
            str(row["burst"] or f"{settings.key_burst} (default)"),
            str(row["max_concurrent"] or f"{settings.key_max_concurrent} (default)"),
            row["created_at"].strftime("%Y-%m-%d %H:%M"),
            "revoked" if row["revoked"] else "active",
        )
    Console().print(table)


@keys.command()
@click.argument("key")
def revoke(key: str) -> None:
    """Revoke KEY (its id or its prefix)."""
    count = _with_store(lambda store: store.revoke_key(key))
    if not count:
        raise click.ClickException(f"no active key with id or prefix {key!r} (see: tvm keys list)")
    click.echo(f"revoked {count} key(s)")


COMMANDS = [keys]
