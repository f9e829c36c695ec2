"""The service's logging set-up: its own levels for chatty libraries."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tvm.config.catalog import satisfies
from tvm.config.settings import Settings
from tvm.utils.logs import configure_logging


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("nodesemver").setLevel(logging.NOTSET)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_an_unparsable_version_selector_logs_nothing_at_info(
    tmp_path: Path, restored_logging: None
) -> None:
    configure_logging(Settings(home=tmp_path, log_level="info"), "test")
    records = _Records()
    logging.getLogger().addHandler(records)
    assert satisfies("3.11.2", "bogus!!") is False
    assert [r for r in records.records if r.name.startswith("nodesemver")] == []
    logging.getLogger("tvm.test").info("still logged")
    assert [r.getMessage() for r in records.records] == ["still logged"]
