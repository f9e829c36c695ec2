"""Leases: which gateway replica runs which async submission, and what happens when
that replica dies.

A replica claims a row by writing its id in ``lease_owner`` and a deadline in
``lease_expires`` (now + ``lease_seconds``), and renews the deadline of every row
it holds every third of that while it runs them. A row can be claimed when it is

* queued (status 1), or
* Processing with an expired lease: its replica died or lost the database. The
  execution is run again (a sandbox has no effect outside itself, so running an
  interrupted one again is safe) and ``attempts`` counts every start. A row that
  already started ``max_attempts`` times is not run again: it ends as 13 Internal
  Error saying how often it was interrupted.

A run whose worker went away mid-job is also run again, by the same replica, under
the same bound (:meth:`Leases.retry`).

Exactly once, for what leaves the service: a result is stored only while the lease
is still this replica's (:meth:`Leases.finish`), so a replica that stalled past
its lease and comes back cannot overwrite or duplicate the result of the replica
that took its work. A finished row whose callback is pending keeps its lease while
the callback is delivered; a replica that dies before delivering loses the
callback to whichever replica claims it next. A crash between the PUT and the
write of its outcome sends it again (that one case is at least once).

PostgreSQL: the claim is ``SELECT ... FOR UPDATE SKIP LOCKED`` then a guarded
``UPDATE``, so replicas never wait on each other. SQLite serializes writes and
serves one gateway only (:mod:`tvm.pyroshell.replica`); the same guarded
``UPDATE`` keeps its concurrent claims apart.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, case, or_, select, update

from tvm.pyroshell.store import (
    CALLBACK_NONE,
    CALLBACK_PENDING,
    PROCESSING,
    QUEUED,
    Store,
    _row,
    now,
    submissions,
)

log = logging.getLogger("tvm.gateway.leases")

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
c = submissions.c


@dataclass
class Claim:
    """A claimed row; ``exhausted``: it was interrupted ``max_attempts`` times already
    and must be finished without running again."""

    row: dict[str, Any]
    exhausted: bool = False


@dataclass
class Leases:
    store: Store
    owner: str
    seconds: float
    max_attempts: int
    held: set[int] = field(default_factory=set)

    @property
    def _until(self) -> dt.datetime:
        return now() + dt.timedelta(seconds=self.seconds)

    def _expired(self, stamp: dt.datetime) -> ColumnElement[bool]:
        """A Processing row nobody holds: its lease ran out (or, made by an older TVM
        without leases, it started more than a lease ago)."""
        legacy = and_(
            c.lease_expires.is_(None),
            c.created_at < stamp - dt.timedelta(seconds=self.seconds),
        )
        return and_(c.status_id == PROCESSING, or_(c.lease_expires < stamp, legacy))

    # -- claiming ----------------------------------------------------------------------
    async def claim(self, limit: int) -> list[Claim]:
        """Up to ``limit`` rows, oldest first: queued ones and expired Processing ones."""
        if limit <= 0:
            return []
        stamp = now()
        claimable = or_(c.status_id == QUEUED, self._expired(stamp))
        async with self.store.engine.begin() as conn:
            query = (
                select(c.id, c.status_id, c.attempts).where(claimable).order_by(c.id).limit(limit)
            )
            if self.store.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True)
            found = (await conn.execute(query)).all()
            exhausted = [i for i, status, tries in found
                         if status == PROCESSING and tries >= self.max_attempts]  # fmt: skip
            runnable = [i for i, _, _ in found if i not in exhausted]
            claims: list[Claim] = []
            lease = {"lease_owner": self.owner, "lease_expires": self._until}
            if runnable:
                taken = await conn.execute(
                    update(submissions)
                    .where(c.id.in_(runnable), claimable)
                    .values(
                        status_id=PROCESSING,
                        started_at=stamp,
                        dispatched_at=None,
                        attempts=c.attempts + 1,
                        **lease,
                    )
                    .returning(*c)
                )
                claims += [Claim(_row(row)) for row in taken.mappings().all()]
            if exhausted:
                taken = await conn.execute(
                    update(submissions)
                    .where(c.id.in_(exhausted), claimable)
                    .values(**lease)
                    .returning(*c)
                )
                claims += [Claim(_row(row), exhausted=True) for row in taken.mappings().all()]
        self.held.update(claim.row["id"] for claim in claims)
        for claim in claims:
            if claim.row["attempts"] > 1 or claim.exhausted:
                log.warning(
                    "took over interrupted submission %s (attempt %d)",
                    claim.row["token"],
                    claim.row["attempts"],
                )
        return sorted(claims, key=lambda claim: claim.row["id"])

    async def take(self, row: dict[str, Any]) -> dict[str, Any] | None:
        """A row stored already in Processing (Judge0's ``wait=true``), run here at once."""
        async with self.store.engine.begin() as conn:
            taken = await conn.execute(
                update(submissions)
                .where(c.id == row["id"], c.status_id == PROCESSING, c.lease_owner.is_(None))
                .values(lease_owner=self.owner, lease_expires=self._until, attempts=c.attempts + 1)
                .returning(*c)
            )
            found = taken.mappings().first()
        if found is None:
            return None
        self.held.add(row["id"])
        return _row(found)

    async def retry(self, submission_id: int) -> int | None:
        """Count one more start of a row this replica holds, for running it again after
        its worker went away; None when it may not (``max_attempts``, or lease lost)."""
        async with self.store.engine.begin() as conn:
            done = await conn.execute(
                update(submissions)
                .where(
                    c.id == submission_id,
                    c.lease_owner == self.owner,
                    c.status_id == PROCESSING,
                    c.attempts < self.max_attempts,
                )
                .values(attempts=c.attempts + 1, lease_expires=self._until)
                .returning(c.attempts)
            )
            attempts = done.scalar_one_or_none()
        return None if attempts is None else int(attempts)

    async def renew(self) -> int:
        """Push the deadline of every row held; returns how many are still ours."""
        held = list(self.held)
        if not held:
            return 0
        async with self.store.engine.begin() as conn:
            done = await conn.execute(
                update(submissions)
                .where(c.id.in_(held), c.lease_owner == self.owner)
                .values(lease_expires=self._until)
                .returning(c.id)
            )
            ours = set(done.scalars())
        for lost in set(held) - ours:
            log.warning("lease on submission id %d was taken by another replica", lost)
            self.held.discard(lost)
        return len(ours)

    async def release_own(self, everyone: bool = False) -> int:
        """This replica's leases expire now, so its work is taken at once instead of
        after ``lease_seconds``: at a stop (what it could not finish), and at start
        (what its previous life held). ``everyone``: all leases (SQLite, where no
        other gateway can be alive)."""
        where: ColumnElement[bool] = c.lease_owner == self.owner
        if everyone:
            where = c.lease_owner.is_not(None) | (c.status_id == PROCESSING)
        async with self.store.engine.begin() as conn:
            done = await conn.execute(update(submissions).where(where).values(lease_expires=EPOCH))
        self.held.clear()
        return int(done.rowcount or 0)

    # -- finishing ---------------------------------------------------------------------
    async def finish(self, submission_id: int, result: dict[str, Any], callback: bool) -> bool:
        """Store the result if the lease is still ours; False when another replica took
        the row meanwhile (its result counts, this one is dropped)."""
        keep = self.owner if callback else None
        async with self.store.engine.begin() as conn:
            done = await conn.execute(
                update(submissions)
                .where(
                    c.id == submission_id, c.lease_owner == self.owner, c.status_id == PROCESSING
                )
                .values(
                    status_id=result["status_id"],
                    result=result,
                    finished_at=now(),
                    callback_state=CALLBACK_PENDING if callback else CALLBACK_NONE,
                    lease_owner=keep,
                    lease_expires=self._until if callback else None,
                )
            )
        won = bool(done.rowcount)
        if not (won and callback):
            self.held.discard(submission_id)
        if not won:
            log.warning(
                "submission id %d was taken by another replica; result dropped", submission_id
            )
        return won

    async def requeue(self, submission_id: int) -> None:
        """Back to the queue, not counted as a start: only for a job never sent."""
        async with self.store.engine.begin() as conn:
            await conn.execute(
                update(submissions)
                .where(
                    c.id == submission_id, c.lease_owner == self.owner, c.dispatched_at.is_(None)
                )
                .values(
                    status_id=QUEUED,
                    started_at=None,
                    lease_owner=None,
                    lease_expires=None,
                    attempts=case((c.attempts > 0, c.attempts - 1), else_=0),
                )
            )
        self.held.discard(submission_id)

    # -- callbacks ---------------------------------------------------------------------
    async def claim_callbacks(self) -> list[dict[str, Any]]:
        """Finished rows whose callback is pending and whose replica is gone."""
        stamp = now()
        unowned = or_(c.lease_owner.is_(None), c.lease_expires.is_(None), c.lease_expires < stamp)
        async with self.store.engine.begin() as conn:
            taken = await conn.execute(
                update(submissions)
                .where(c.callback_state == CALLBACK_PENDING, unowned)
                .values(lease_owner=self.owner, lease_expires=self._until)
                .returning(*c)
            )
            rows = [_row(row) for row in taken.mappings().all()]
        self.held.update(row["id"] for row in rows)
        return rows

    async def callback_settled(self, submission_id: int, state: int) -> None:
        async with self.store.engine.begin() as conn:
            await conn.execute(
                update(submissions)
                .where(c.id == submission_id, c.lease_owner == self.owner)
                .values(callback_state=state, lease_owner=None, lease_expires=None)
            )
        self.held.discard(submission_id)
