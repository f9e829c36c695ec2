"""The gateway's store on real databases: SQLite (always) and PostgreSQL (when
``TVM_TEST_POSTGRES_URL`` names one; ``scripts/ci-postgres.sh`` makes it)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, text, update

from tests.gateway_support import postgres_url
from tvm.errors import ConfigError
from tvm.pyroshell.leases import EPOCH, Leases
from tvm.pyroshell.replica import SingleGateway
from tvm.pyroshell.store import (
    CALLBACK_DONE,
    CALLBACK_FAILED,
    CALLBACK_PENDING,
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


def leases(store: Store, owner: str = "a", seconds: float = 30, tries: int = 3) -> Leases:
    return Leases(store, owner, seconds, tries)


async def expire_all(store: Store) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(update(submissions).values(lease_expires=EPOCH))


async def test_add_get_and_claim_in_order(store: Store) -> None:
    rows = [row() for _ in range(5)]
    await store.add(rows)
    assert (await store.get(rows[0]["token"]))["status_id"] == QUEUED  # type: ignore[index]
    claimed = [claim.row for claim in await leases(store).claim(3)]
    assert [r["token"] for r in claimed] == [r["token"] for r in rows[:3]]
    assert all(r["status_id"] == PROCESSING and r["started_at"] for r in claimed)
    assert all(r["lease_owner"] == "a" and r["attempts"] == 1 for r in claimed)
    assert await store.count((QUEUED,)) == 2
    assert len(await store.get_many([r["token"] for r in rows])) == 5


async def test_concurrent_claims_never_share_a_row(store: Store) -> None:
    await store.add([row() for _ in range(20)])
    replicas = [leases(store, owner=f"r{i}") for i in range(8)]
    batches = await asyncio.gather(*(replica.claim(4) for replica in replicas))
    ids = [claim.row["id"] for batch in batches for claim in batch]
    assert len(ids) == len(set(ids))  # no row claimed twice
    ids += [claim.row["id"] for claim in await replicas[0].claim(20)]
    assert len(ids) == len(set(ids)) == 20


async def test_a_live_lease_is_not_taken_an_expired_one_is(store: Store) -> None:
    await store.add([row()])
    a, b = leases(store, "a", seconds=0.3), leases(store, "b")
    (first,) = await a.claim(1)
    assert await b.claim(5) == []  # a holds it
    assert await a.renew() == 1
    await asyncio.sleep(0.5)  # a died: no renewal
    (second,) = await b.claim(5)
    assert second.row["id"] == first.row["id"] and not second.exhausted
    assert second.row["lease_owner"] == "b" and second.row["attempts"] == 2
    # a comes back: its renewal and its result are refused, b's result is stored once
    assert await a.renew() == 0 and not a.held
    assert not await a.finish(first.row["id"], {"status_id": 3, "by": "a"}, callback=False)
    assert await b.finish(first.row["id"], {"status_id": 3, "by": "b"}, callback=False)
    stored = await store.get(first.row["token"])
    assert stored is not None and stored["result"]["by"] == "b" and stored["lease_owner"] is None


async def test_attempts_are_bounded(store: Store) -> None:
    await store.add([row()])
    replica = leases(store, tries=2)
    (claim,) = await replica.claim(1)
    assert await replica.retry(claim.row["id"]) == 2  # its worker went away once
    assert await replica.retry(claim.row["id"]) is None  # max_attempts reached
    await expire_all(store)
    (again,) = await leases(store, "b", tries=2).claim(1)
    assert again.exhausted and again.row["attempts"] == 2


async def test_restart_takes_its_own_work_back_at_once(store: Store) -> None:
    await store.add([row(), row()])
    before, other = leases(store, "me"), leases(store, "other")
    await before.claim(1)
    await other.claim(1)
    after = leases(store, "me")  # the same replica, restarted
    assert await after.release_own() == 1
    (claim,) = await after.claim(5)  # only its own; other's lease still holds
    assert claim.row["attempts"] == 2
    assert await after.release_own(everyone=True) == 2


async def test_requeue_of_an_unsent_job_does_not_count(store: Store) -> None:
    await store.add([row()])
    replica = leases(store)
    (claim,) = await replica.claim(1)
    await store.mark_dispatched(claim.row["id"], "http://127.0.0.1:8100")
    await replica.requeue(claim.row["id"])  # it was sent: stays
    assert await store.count((PROCESSING,)) == 1
    await store.mark_dispatched(claim.row["id"], None)
    await replica.requeue(claim.row["id"])
    back = await store.get(claim.row["token"])
    assert back is not None and back["status_id"] == QUEUED and back["attempts"] == 0


async def test_wait_true_rows_are_taken_not_claimed(store: Store) -> None:
    fresh = row(status_id=PROCESSING)
    await store.add([fresh])
    replica = leases(store, "b")
    assert await replica.claim(5) == []  # run by the request that made it, not lost work
    stored = await store.get(fresh["token"])
    assert stored is not None
    taken = await replica.take(stored)
    assert taken is not None and taken["lease_owner"] == "b" and taken["attempts"] == 1
    assert await leases(store, "c").take(stored) is None


async def test_callbacks_are_delivered_by_one_replica(store: Store) -> None:
    url = {"language_id": 71, "callback_url": "http://127.0.0.1:1/"}
    await store.add([row(params=url)])
    a, b = leases(store, "a", seconds=0.3), leases(store, "b")
    (claim,) = await a.claim(1)
    assert await a.finish(claim.row["id"], {"status_id": 3}, callback=True)
    assert await b.claim_callbacks() == []  # a is delivering it
    await asyncio.sleep(0.5)  # a died before delivering
    (pending,) = await b.claim_callbacks()
    assert pending["callback_state"] == CALLBACK_PENDING
    await b.callback_settled(pending["id"], CALLBACK_DONE)
    await a.callback_settled(pending["id"], CALLBACK_FAILED)  # a is too late: ignored
    assert await a.claim_callbacks() == [] and await b.claim_callbacks() == []
    done = await store.get(claim.row["token"])
    assert done is not None and done["callback_state"] == CALLBACK_DONE


async def test_finish_expire_and_delete(store: Store) -> None:
    old, new = row(), row()
    await store.add([old, new])
    replica = leases(store)
    for claim in await replica.claim(2):
        await replica.finish(claim.row["id"], {"status_id": 3}, callback=False)
    assert await store.expire(dt.timedelta(hours=1)) == 0
    assert await store.expire(dt.timedelta(seconds=-1)) == 2
    assert await store.get(old["token"]) is None


async def test_an_older_database_gets_the_new_columns(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    old = Store(url)
    async with old.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE submissions (id INTEGER PRIMARY KEY, "
                                "token VARCHAR(36), status_id INTEGER)"))  # fmt: skip
        await conn.execute(text("INSERT INTO submissions (token, status_id) VALUES ('t', 1)"))
    await old.close()
    db = Store(url)
    await db.open()
    try:
        async with db.engine.connect() as conn:
            found = (await conn.execute(select(submissions.c.attempts))).scalar_one()
        assert found == 0
    finally:
        await db.close()


def test_sqlite_serves_one_gateway(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'tvm.db'}"
    first, second = SingleGateway(url), SingleGateway(url)
    first.acquire()
    try:
        with pytest.raises(ConfigError, match="PostgreSQL") as caught:
            second.acquire()
        assert f"pid {os.getpid()}" in caught.value.message
    finally:
        first.release()
    second.acquire()  # free again once the first one is gone
    second.release()


async def test_keys(store: Store) -> None:
    key_id = await store.add_key({"name": "a", "prefix": "tvm_abcd", "secret_hash": "f" * 64})
    assert await store.has_keys()
    found = await store.key_by_hash("f" * 64)
    assert found is not None and found["id"] == key_id and not found["revoked"]
    assert await store.revoke_key("tvm_abcd") == 1
    assert await store.revoke_key(str(key_id)) == 0
    assert not await store.has_keys()
