"""The gateway's store on real databases: SQLite (always) and PostgreSQL (when
``TVM_TEST_POSTGRES_URL`` names one; ``scripts/ci-postgres.sh`` makes it)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete

from tests.gateway_support import postgres_url
from tvm.pyroshell.store import (
    CALLBACK_PENDING,
    INTERNAL_ERROR,
    PROCESSING,
    QUEUED,
    Store,
    api_keys,
    submissions,
)


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'tvm.db'}"
    else:
        url = postgres_url()
    db = Store(url)
    await db.open()
    async with db.engine.begin() as conn:  # a clean slate on the shared server
        await conn.execute(delete(submissions))
        await conn.execute(delete(api_keys))
    try:
        yield db
    finally:
        await db.close()


def row(**values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "token": str(uuid.uuid4()),
        "status_id": QUEUED,
        "params": {"language_id": 71, "callback_url": None},
        "native": {"language": "python", "code": "out x"},
    }
    base.update(values)
    return base


async def test_add_get_and_claim_in_order(store: Store) -> None:
    rows = [row() for _ in range(5)]
    await store.add(rows)
    assert (await store.get(rows[0]["token"]))["status_id"] == QUEUED  # type: ignore[index]
    claimed = await store.claim(3)
    assert [r["token"] for r in claimed] == [r["token"] for r in rows[:3]]
    assert all(r["status_id"] == PROCESSING and r["started_at"] for r in claimed)
    assert await store.count((QUEUED,)) == 2
    assert len(await store.get_many([r["token"] for r in rows])) == 5


async def test_concurrent_claims_never_share_a_row(store: Store) -> None:
    await store.add([row() for _ in range(20)])
    batches = await asyncio.gather(*(store.claim(4) for _ in range(8)))
    ids = [r["id"] for batch in batches for r in batch]
    assert len(ids) == len(set(ids))  # no row claimed twice
    ids += [r["id"] for r in await store.claim(20)]
    assert len(ids) == len(set(ids)) == 20


async def test_recover_requeues_unsent_and_fails_sent(store: Store) -> None:
    unsent, sent = row(), row(params={"language_id": 71, "callback_url": "http://127.0.0.1:1/"})
    await store.add([unsent, sent])
    claimed = await store.claim(2)
    await store.mark_dispatched(claimed[1]["id"], "http://127.0.0.1:8100")
    requeued, failed = await store.recover({"status_id": INTERNAL_ERROR, "message": "bG9zdA=="})
    assert (requeued, failed) == (1, 1)
    again = await store.get(unsent["token"])
    lost = await store.get(sent["token"])
    assert again is not None and again["status_id"] == QUEUED and again["started_at"] is None
    assert lost is not None and lost["status_id"] == INTERNAL_ERROR
    assert lost["callback_state"] == CALLBACK_PENDING and lost["finished_at"]


async def test_refused_dispatch_can_be_cleared(store: Store) -> None:
    await store.add([row()])
    (claimed,) = await store.claim(1)
    await store.mark_dispatched(claimed["id"], "http://127.0.0.1:8100")
    await store.mark_dispatched(claimed["id"], None)
    assert await store.recover({"status_id": INTERNAL_ERROR}) == (1, 0)


async def test_finish_expire_and_delete(store: Store) -> None:
    old, new = row(), row()
    await store.add([old, new])
    for claimed in await store.claim(2):
        await store.finish(claimed["id"], {"status_id": 3}, callback=False)
    assert await store.expire(dt.timedelta(hours=1)) == 0
    assert await store.expire(dt.timedelta(seconds=-1)) == 2
    assert await store.get(old["token"]) is None


async def test_keys(store: Store) -> None:
    key_id = await store.add_key({"name": "a", "prefix": "tvm_abcd", "secret_hash": "f" * 64})
    assert await store.has_keys()
    found = await store.key_by_hash("f" * 64)
    assert found is not None and found["id"] == key_id and not found["revoked"]
    assert await store.revoke_key("tvm_abcd") == 1
    assert await store.revoke_key(str(key_id)) == 0
    assert not await store.has_keys()
