"""A real ``tvm start`` (embedded worker, namespace driver) for the Piston client and
schema tests: one process on a free loopback port, its own database, stopped after."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port, namespace_unavailable, require_languages
from tests.gateway_support import Service
from tvm.config.catalog import load_catalog
from tvm.config.settings import Settings


def start_tvm(tmp: Path, *keys: str, every_language: bool = False, **env: str) -> Iterator[Service]:
    """Yield a running service; skip when the namespace driver or an image is missing."""
    settings = Settings()
    if every_language:
        reason = namespace_unavailable(settings, list(load_catalog()))
        if reason:
            pytest.skip(reason)
    require_languages(settings, *keys)
    port = free_port()
    full_env = dict(os.environ, TVM_LOG_JSON="true",
                    TVM_DATABASE_URL=f"sqlite+aiosqlite:///{tmp}/tvm.db", **env)  # fmt: skip
    argv = [sys.executable, "-m", "tvm.cli", "start", "--port", str(port)]
    service = Service(argv, tmp / "tvm.log", full_env, port)
    try:
        service.wait_ready(timeout=90)
        yield service
    finally:
        service.kill(signal.SIGTERM)
        print(service.log.read_text()[-3000:])
