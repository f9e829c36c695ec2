"""Judge0's informational answers: ``/about``, ``/version``, ``/license``,
``/isolate``, ``/system_info`` and ``/statistics``, in Judge0 CE 1.13.1's shapes.

``/about`` says Judge0's API version (clients choose their language ids by it);
TVM's own version is under ``tvm_version``. ``/system_info`` is ``lscpu``'s
fields plus ``Mem`` and ``Swap`` (as Judge0 reports them from ``free -h``).
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tvm import __version__
from tvm.compat.judge0 import COMPATIBLE_VERSION
from tvm.compat.judge0_languages import language_ref
from tvm.compat.judge0_status import DESCRIPTIONS, Status
from tvm.config.catalog import Catalog

LICENSE = (
    "TVM is free software under the MIT license.\n"
    "It answers Judge0 CE's API; it does not contain Judge0's code.\n"
)
STATISTICS_DAYS = 30
STATISTICS_CACHE = dt.timedelta(minutes=10)


def about() -> dict[str, Any]:
    return {
        "version": COMPATIBLE_VERSION,
        "homepage": None,
        "source_code": None,
        "maintainer": "TVM",
        "tvm_version": __version__,
    }


def isolate(driver: str) -> str:
    """Judge0 answers ``isolate --version``; TVM says what isolates instead."""
    return f"TVM {__version__}: sandboxes by the {driver} driver (not isolate)\n"


def _human(kib: int) -> str:
    """``free -h``'s style: 7.8Gi, 512Mi."""
    value, unit = float(kib), "Ki"
    for next_unit in ("Mi", "Gi", "Ti"):
        if value < 1024:
            break
        value, unit = value / 1024, next_unit
    return f"{value:.1f}{unit}" if value < 10 else f"{value:.0f}{unit}"


def system_info(meminfo: Path = Path("/proc/meminfo")) -> dict[str, str]:
    info: dict[str, str] = {}
    lscpu = shutil.which("lscpu")
    if lscpu:
        listing = subprocess.run([lscpu], capture_output=True, text=True, timeout=5, check=False)
        for line in listing.stdout.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                info[key.strip()] = value.strip()
    memory: dict[str, int] = {}
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            key, _, value = line.partition(":")
            memory[key] = int(value.split()[0]) if value.split() else 0
    info["Mem"] = _human(memory.get("MemTotal", 0))
    info["Swap"] = _human(memory.get("SwapTotal", 0))
    return info


def statistics(
    tallies: dict[str, Any], catalog: Catalog, now: dt.datetime, database_bytes: int | None
) -> dict[str, Any]:
    """Judge0's ``/statistics`` from :meth:`~tvm.pyroshell.store.Store.tallies`."""
    today = now.date()
    days = tallies["days"]
    last_days = {
        str(day): days.get(str(day), 0)
        for day in (today - dt.timedelta(days=n) for n in range(STATISTICS_DAYS, -1, -1))
    }
    languages = [
        {"language": language_ref(catalog, i) or {"id": i, "name": None}, "count": n}
        for i, n in sorted(tallies["languages"].items(), key=lambda item: -item[1])
    ]
    statuses = [
        {"status": {"id": i, "name": DESCRIPTIONS[Status(i)]}, "count": n}
        for i, n in sorted(tallies["statuses"].items(), key=lambda item: -item[1])
    ]
    return {
        "now": now.isoformat(),
        "cached": False,
        "cache_duration": f"{int(STATISTICS_CACHE.total_seconds() // 60)} minutes",
        "cache_expires_at": (now + STATISTICS_CACHE).isoformat(),
        "submissions": {
            "total": tallies["total"],
            "today": days.get(str(today), 0),
            "last_30_days": last_days,
        },
        "languages": languages,
        "statuses": statuses,
        "database": {
            "size_pretty": None if database_bytes is None else _human(database_bytes // 1024),
            "size_in_bytes": database_bytes,
        },
    }
