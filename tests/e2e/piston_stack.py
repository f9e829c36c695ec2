"""A real ``tvm start`` (embedded worker, namespace driver) for the Piston client and
schema tests: the suite's own :class:`~tests.conftest.Server` (a free loopback port,
its own database, no warm pools, checked for leftovers when it stops), skipped when
the namespace driver or an image it needs is missing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Server, namespace_unavailable, require_languages
from tvm.config.catalog import load_catalog
from tvm.config.settings import Settings


def start_tvm(tmp: Path, *keys: str, every_language: bool = False, **env: str) -> Iterator[Server]:
    """Yield a running server with ``env`` set; stop it after."""
    settings = Settings()
    if every_language:
        reason = namespace_unavailable(settings, list(load_catalog()))
        if reason:
            pytest.skip(reason)
    require_languages(settings, *keys)
    server = Server(tmp, env=env)
    try:
        yield server
    finally:
        server.stop()
        print(server.log.read_text()[-3000:])
