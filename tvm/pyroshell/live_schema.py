"""The live-sandbox models' limits in the served OpenAPI schema.

A sandbox's lifetime and memory are bounded by the service's settings
(``live_max_timeout_seconds``, ``live_max_memory_mb``), which :class:`~tvm.pyrovm.live.
LiveManager` enforces; the models cannot know them, so the schema gets them here,
from the same settings, and a client generated from it asks for nothing the
server refuses.
"""

from __future__ import annotations

from typing import Any

from tvm.config.settings import Settings
from tvm.pyrovm.live import MIN_MEMORY_MB


def _bound(prop: dict[str, Any], low: int, high: int) -> None:
    """Bound the integer alternative of ``prop`` (``int | None``), or ``prop`` itself."""
    for option in prop.get("anyOf", [prop]):
        if option.get("type") == "integer":
            option["minimum"] = low
            option["maximum"] = high


def refine(models: dict[str, Any], settings: Settings) -> None:
    most = settings.live_max_timeout_seconds
    for name in ("SandboxCreate", "TimeoutUpdate"):
        timeout = models.get(name, {}).get("properties", {}).get("timeout")
        if timeout is not None:
            _bound(timeout, 1, most)
    memory = models.get("SandboxCreate", {}).get("properties", {}).get("memory_mb")
    if memory is not None:
        _bound(memory, MIN_MEMORY_MB, settings.live_max_memory_mb)
