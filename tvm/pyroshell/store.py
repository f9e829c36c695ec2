"""Durable state of the gateway: submissions and API keys (SQLAlchemy 2, async).

SQLite (aiosqlite) at ``$TVM_HOME/tvm.db`` by default, PostgreSQL (asyncpg) with
``TVM_DATABASE_URL=postgresql+asyncpg://...``. A submission is committed before
its token is returned.

Life of a submission row (``status_id`` is Judge0's)::

    1 In Queue --claim--> 2 Processing --finish--> 3..14
                          (dispatched_at set just before the job is sent to a worker)

Who runs a Processing row, and what happens when that replica dies, is decided by
:mod:`tvm.pyroshell.leases` (the ``lease_*`` and ``attempts`` columns).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    DefaultClause,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tvm.compat.judge0_status import Status
from tvm.config.settings import Settings
from tvm.errors import ConfigError

QUEUED, PROCESSING, INTERNAL_ERROR = Status.IN_QUEUE, Status.PROCESSING, Status.INTERNAL_ERROR
CALLBACK_NONE, CALLBACK_PENDING, CALLBACK_DONE, CALLBACK_FAILED = 0, 1, 2, 3

metadata = MetaData()

submissions = Table(
    "submissions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("token", String(36), nullable=False, unique=True),
    Column("status_id", Integer, nullable=False, index=True),
    Column("params", JSON, nullable=False),  # Judge0 attributes, text ones base64
    Column("native", JSON, nullable=False),  # the CodeExecutionRequest that runs it
    Column("result", JSON),  # Judge0 result attributes, text ones base64
    Column("key_id", Integer, index=True),
    Column("request_id", String(64)),
    Column("worker", String(255)),
    Column("callback_state", Integer, nullable=False, default=CALLBACK_NONE, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("dispatched_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True), index=True),
    # Leases (tvm.pyroshell.leases): which replica runs it, until when, how often it started.
    Column("lease_owner", String(255)),
    Column("lease_expires", DateTime(timezone=True)),
    Column("attempts", Integer, nullable=False, default=0, server_default="0"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("rate_per_minute", Integer),
    Column("burst", Integer),
    Column("max_concurrent", Integer),
    Column("revoked", Boolean, nullable=False, default=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
    Column("notes", Text),
)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(moment: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands datetimes back naive; they were stored as UTC."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment


def database_url(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    return f"sqlite+aiosqlite:///{settings.home / 'tvm.db'}"


def _row(mapping: Any) -> dict[str, Any]:
    row = dict(mapping)
    for key in ("created_at", "started_at", "dispatched_at", "finished_at", "revoked_at",
                "lease_expires"):  # fmt: skip
        if key in row:
            row[key] = _aware(row[key])
    return row


class Store:
    """All database access of the gateway."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            parsed = make_url(url)
        except Exception as exc:  # sqlalchemy raises several kinds
            raise ConfigError(f"TVM_DATABASE_URL is not a database URL: {exc}") from exc
        self.dialect = parsed.get_backend_name()
        options: dict[str, Any] = {}
        if self.dialect == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                from pathlib import Path

                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            options["connect_args"] = {"timeout": 30}
        else:
            options.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(url, **options)
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)

    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        return cls(database_url(settings))

    async def open(self) -> None:
        try:
            async with self.engine.begin() as conn:
                await conn.run_sync(metadata.create_all)
                await conn.run_sync(_add_missing_columns)
        except (SQLAlchemyError, OSError) as exc:
            raise ConfigError(f"cannot open the database {self.safe_url}: {exc}") from exc

    async def close(self) -> None:
        await self.engine.dispose()

    @property
    def safe_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    # -- submissions ---------------------------------------------------------------
    async def add(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert submissions in one transaction (committed when this returns)."""
        stamp = now()
        values = [{"created_at": stamp, "callback_state": CALLBACK_NONE, **row} for row in rows]
        async with self.engine.begin() as conn:
            await conn.execute(insert(submissions), values)

    async def get(self, token: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            found = (
                await conn.execute(select(submissions).where(submissions.c.token == token))
            ).mappings().first()  # fmt: skip
        return _row(found) if found else None

    async def get_many(self, tokens: Sequence[str]) -> dict[str, dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(select(submissions).where(submissions.c.token.in_(tokens)))
            ).mappings().all()  # fmt: skip
        return {row["token"]: _row(row) for row in rows}

    async def page(self, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Submissions ``offset`` to ``offset + limit``, oldest first, and how many there are."""
        async with self.engine.connect() as conn:
            total = int(
                (await conn.execute(select(func.count()).select_from(submissions))).scalar_one()
            )
            rows = (
                await conn.execute(
                    select(submissions).order_by(submissions.c.id).offset(offset).limit(limit)
                )
            ).mappings().all()  # fmt: skip
        return [_row(row) for row in rows], total

    async def tallies(self, since: dt.datetime) -> dict[str, Any]:
        """Counts for statistics: ``total``, ``since`` (created since then), ``days``
        (created per UTC day since then), ``statuses`` and ``languages`` (per id)."""
        day = func.date(submissions.c.created_at)
        language = submissions.c.params["language_id"].as_integer()
        async with self.engine.connect() as conn:
            total = int(
                (await conn.execute(select(func.count()).select_from(submissions))).scalar_one()
            )
            recent = submissions.c.created_at >= since
            days = (await conn.execute(
                select(day, func.count()).where(recent).group_by(day)
            )).all()  # fmt: skip
            statuses = (await conn.execute(
                select(submissions.c.status_id, func.count()).group_by(submissions.c.status_id)
            )).all()  # fmt: skip
            languages = (await conn.execute(
                select(language, func.count()).group_by(language)
            )).all()  # fmt: skip
        return {
            "total": total,
            "days": {str(d): int(n) for d, n in days},
            "statuses": {int(i): int(n) for i, n in statuses},
            "languages": {int(i): int(n) for i, n in languages if i is not None},
        }

    async def delete(self, token: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(delete(submissions).where(submissions.c.token == token))

    async def count(self, status_ids: Sequence[int], key_id: int | None = None) -> int:
        query = select(func.count()).where(submissions.c.status_id.in_(status_ids))
        if key_id is not None:
            query = query.where(submissions.c.key_id == key_id)
        async with self.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def mark_dispatched(self, submission_id: int, worker: str | None) -> None:
        """Recorded just before the job is sent: from then on it is never re-run. ``None``
        clears it again when that worker refused the job without starting it."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(submissions)
                .where(submissions.c.id == submission_id)
                .values(dispatched_at=now() if worker else None, worker=worker)
            )

    async def expire(self, older_than: dt.timedelta) -> int:
        """Delete finished submissions older than the retention."""
        cutoff = now() - older_than
        async with self.engine.begin() as conn:
            gone = await conn.execute(
                delete(submissions).where(
                    submissions.c.finished_at.is_not(None),
                    submissions.c.finished_at < cutoff,
                    submissions.c.status_id.not_in((QUEUED, PROCESSING)),
                )
            )
        return int(gone.rowcount or 0)

    # -- API keys ----------------------------------------------------------------------
    async def add_key(self, values: dict[str, Any]) -> int:
        async with self.engine.begin() as conn:
            done = await conn.execute(
                insert(api_keys).values(created_at=now(), revoked=False, **values)
            )
            return int(done.inserted_primary_key[0])  # type: ignore[index]

    async def keys(self) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(api_keys).order_by(api_keys.c.id))).mappings().all()
        return [_row(row) for row in rows]

    async def key_by_hash(self, secret_hash: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            found = (
                await conn.execute(select(api_keys).where(api_keys.c.secret_hash == secret_hash))
            ).mappings().first()  # fmt: skip
        return _row(found) if found else None

    async def has_keys(self) -> bool:
        query = select(func.count()).select_from(api_keys).where(api_keys.c.revoked.is_(False))
        async with self.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one()) > 0

    async def revoke_key(self, ident: str) -> int:
        """Revoke by id or prefix; returns how many keys were revoked."""
        where = api_keys.c.prefix == ident
        if ident.isdigit():
            where = where | (api_keys.c.id == int(ident))
        async with self.engine.begin() as conn:
            done = await conn.execute(
                update(api_keys)
                .where(where, api_keys.c.revoked.is_(False))
                .values(revoked=True, revoked_at=now())
            )
        return int(done.rowcount or 0)


def _add_missing_columns(conn: Connection) -> None:
    """A database made by an older TVM gets the columns added since (each is nullable
    or has a server default, so adding it is all the migration there is)."""
    found = inspect(conn)
    for table in metadata.sorted_tables:
        have = {column["name"] for column in found.get_columns(table.name)}
        for column in table.columns:
            if column.name not in have:
                kind = column.type.compile(dialect=conn.dialect)
                server = column.server_default
                default = f" DEFAULT {server.arg}" if isinstance(server, DefaultClause) else ""
                conn.execute(
                    text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}{default}")
                )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()
