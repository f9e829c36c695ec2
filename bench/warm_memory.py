"""`make bench`'s memory section: what one warm sandbox holds while it waits.

For every language whose catalog entry pre-starts a compiler (or the run
stage's interpreter), one warm sandbox is made with it started (as the pool
makes it) and one without
(``prestart_compilers`` off: an idle agent), and the PSS and RSS of all their
processes (the agent and everything below it, read from the host's /proc)
are summed. The difference is what the pre-started compiler or interpreter
costs; the catalog's ``warm_memory_mb`` (the pool's memory budget per warm
sandbox of the language, on top of ``pool_sandbox_mb``) must not be below it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tests.conftest import descendants, warm_pool
from tvm.config.catalog import Catalog, Language
from tvm.config.settings import Settings
from tvm.pyrovm.images import ImageStore


def memory_kb(pids: set[int]) -> dict[str, int]:
    """Summed ``Pss`` and ``Rss`` (kB) of ``pids``, from smaps_rollup."""
    total = {"Pss": 0, "Rss": 0}
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, _, rest = line.partition(":")
            if key in total:
                total[key] += int(rest.split()[0])
    return total


async def warm_sandbox_kb(settings: Settings, lang: Language, prestart: bool) -> dict[str, int]:
    """Memory of one warm sandbox of ``lang`` as the pool makes it."""
    own = settings.model_copy(update={"prestart_compilers": prestart})
    async with warm_pool(own, lang) as manager:
        sandboxes = list(manager.warm[lang.key])
        await asyncio.sleep(1.0)  # the JVM's heap settles after its warm-up compile
        root = getattr(sandboxes[0], "pid", None)
        if not isinstance(root, int):
            raise RuntimeError(f"{lang.key}: the sandbox has no host pid")
        processes = descendants(root)
        return memory_kb(processes) | {"processes": len(processes)}


async def warm_memory(settings: Settings, catalog: Catalog) -> dict[str, Any]:
    """``{language@version: {pss_mb, rss_mb, idle_pss_mb, compiler_pss_mb, budget_mb}}``."""
    store = ImageStore(settings)
    results: dict[str, Any] = {}
    for lang in catalog:
        if lang.warm_compiler is None and not lang.warm_run:
            continue
        try:
            store.rootfs(lang.image)
        except Exception as exc:  # not built: say so, measure the others
            results[lang.key] = {"skipped": str(exc)[:200]}
            continue
        warm = await warm_sandbox_kb(settings, lang, True)
        idle = await warm_sandbox_kb(settings, lang, False)
        results[lang.key] = {
            "pss_mb": round(warm["Pss"] / 1024, 1),
            "rss_mb": round(warm["Rss"] / 1024, 1),
            "processes": warm["processes"],
            "idle_pss_mb": round(idle["Pss"] / 1024, 1),
            "compiler_pss_mb": round((warm["Pss"] - idle["Pss"]) / 1024, 1),
            "budget_mb": lang.warm_memory_mb,
        }
    return results


def report_warm_memory(console: Console, rows: dict[str, Any]) -> None:
    table = Table(
        title="memory of one warm sandbox with its compiler (or interpreter) pre-started (MB)"
    )
    for col in ("language", "PSS", "RSS", "idle agent PSS", "pre-started PSS", "budgeted"):
        table.add_column(col, justify="right" if col != "language" else "left")
    for key, row in rows.items():
        if "skipped" in row:
            table.add_row(key, f"skipped: {row['skipped'][:60]}")
            continue
        cells = ("pss_mb", "rss_mb", "idle_pss_mb", "compiler_pss_mb", "budget_mb")
        table.add_row(key, *(f"{row[c]:.0f}" for c in cells))
    console.print(table)
