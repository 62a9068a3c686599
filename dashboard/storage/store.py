"""The SQL store: engine, schema migrations, and the few queries the app needs.

All writes go through one asyncio.Lock, so ids are handed out in the order the
caller sees them committed. SQLite runs in WAL mode with synchronous=NORMAL:
a crashed process loses nothing committed (only a power cut could), and readers
never block the writer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, event, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..core.resources import resource_dir
from ..core.samples import OK, Sample, utc
from .schema import samples

log = logging.getLogger("dashboard.store")

# PostgreSQL advisory lock keys (any two distinct bigints): one for writers, one for migrations.
WRITERS_LOCK = 0x64617368_0001
MIGRATIONS_LOCK = 0x64617368_0002

INSERT_SAMPLE = samples.insert()


async def _take_lock(conn, key: int) -> None:
    """Hold a PostgreSQL advisory lock until this transaction ends; nothing on SQLite,
    whose one-writer-at-a-time file lock already does the same across processes."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _row_to_sample(row) -> Sample:
    return Sample(row.id, row.widget, utc(row.ts), row.value, row.status, row.message)


def _alembic_upgrade(sync_connection, revision: str = "head") -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(resource_dir("migrations")))
    cfg.attributes["connection"] = sync_connection
    command.upgrade(cfg, revision)


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL; None for another database or one in memory."""
    prefix = "sqlite+aiosqlite:///"
    if not url.startswith(prefix) or ":memory:" in url or url == prefix:
        return None
    return Path(url[len(prefix) :].partition("?")[0])


def ensure_sqlite_dir(url: str) -> None:
    """Create the directory of a SQLite file, so a fresh checkout just runs."""
    path = sqlite_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


class StoreUnavailable(Exception):
    """The database cannot be opened. str() is one line for the person starting the server:
    the file or address, what is wrong, and what to do about it."""


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # a uid with no name (a container's --user 1234)
        return f"uid {os.geteuid()}"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, DBAPIError):
        exc = exc.orig
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def describe_open_failure(url: str, exc: BaseException) -> str:
    reason = _reason(exc)
    path = sqlite_file(url)
    if path is None:
        address = make_url(url)  # the password stays out of the message
        where = f"{address.host or 'localhost'}:{address.port or 5432}/{address.database or ''}"
        return (
            f"cannot open the database at {where}: {reason}: check that the database server runs "
            "and that [storage] url names it"
        )
    directory, user = path.parent, _user()
    if isinstance(exc, OSError):  # making the directory failed
        return (
            f"cannot create the database directory {directory} ({reason}): create it, writable by user {user}, "
            "or point [storage] url elsewhere"
        )
    if "not a database" in reason or "malformed" in reason:
        return (
            f"the database {path} is damaged or not a SQLite database ({reason}): move it aside (a new one "
            "is made at the next start) or put a backup in its place"
        )
    if not os.access(directory, os.W_OK):
        # SQLite writes a -wal and a -shm file beside the database: the directory must be writable.
        return (
            f"cannot write the database {path}: its directory {directory} is not writable by user {user}: "
            "make it writable, or point [storage] url elsewhere"
        )
    if path.exists() and not os.access(path, os.W_OK):
        return (
            f"cannot write the database {path}: the file is read-only for user {user}: make it writable, "
            "or point [storage] url elsewhere"
        )
    return f"cannot open the database {path}: {reason}"


class Store:
    def __init__(self, url: str):
        self.url = url
        self.engine: AsyncEngine | None = None
        self._write_lock = asyncio.Lock()

    async def open(self, *, migrate: bool = True) -> None:
        """Connect (and migrate); StoreUnavailable, with one line saying why and what to
        do, when the database cannot be created, opened or written."""
        try:
            ensure_sqlite_dir(self.url)
            self.engine = create_async_engine(self.url)
            if self.engine.dialect.name == "sqlite":
                event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            if migrate:
                await self.migrate()
        except (OSError, DBAPIError) as exc:
            if self.engine is not None:
                await self.engine.dispose()
                self.engine = None
            raise StoreUnavailable(describe_open_failure(self.url, exc)) from exc

    async def migrate(self) -> None:
        async with self.engine.begin() as conn:
            # Several processes starting at once would otherwise create the same table twice.
            await _take_lock(conn, MIGRATIONS_LOCK)
            await conn.run_sync(_alembic_upgrade)

    async def close(self) -> None:
        # Waiting for the lock lets a write in progress finish before the engine goes.
        async with self._write_lock:
            if self.engine is not None:
                await self.engine.dispose()
                self.engine = None

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:  # any failure means "not reachable" to a health check
            return False

    async def append(self, widget: str, value: Any, status: str = OK, message: str | None = None) -> Sample:
        (sample,) = await self.append_many([(widget, value, status, message)])
        return sample

    async def append_many(self, items: Sequence[tuple[str, Any, str, str | None]], *, then=None) -> list[Sample]:
        """Insert samples in one transaction, all or nothing.

        `then(samples)` runs after the commit while the write lock is still held, so
        whatever it publishes goes out in id order.
        """
        async with self._write_lock:
            ts = datetime.now(UTC)
            out = []
            async with self.engine.begin() as conn:
                # Other processes write too (web processes take pushes, a worker runs the
                # tickers). A sequence hands out ids at insert but rows appear at commit: a
                # reader could see id 101 before 100 commits, move its cursor past 100 and
                # never send it. One lock for all writers makes commit order id order.
                await _take_lock(conn, WRITERS_LOCK)
                for widget, value, status, message in items:
                    # One statement object with parameters: its compiled form is cached, where
                    # insert().values(...) would be built and looked up anew for each sample.
                    result = await conn.execute(
                        INSERT_SAMPLE,
                        {"widget": widget, "ts": ts, "value": value, "status": status, "message": message},
                    )
                    out.append(Sample(result.inserted_primary_key[0], widget, ts, value, status, message))
            if then is not None:
                then(out)
            return out

    async def latest(self, widgets: Iterable[str]) -> dict[str, Sample]:
        """The newest sample of each widget that has one."""
        out = {}
        async with self.engine.connect() as conn:
            for widget in widgets:
                row = (
                    await conn.execute(
                        select(samples).where(samples.c.widget == widget).order_by(samples.c.id.desc()).limit(1)
                    )
                ).first()
                if row is not None:
                    out[widget] = _row_to_sample(row)
        return out

    async def last_id(self) -> int:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(func.max(samples.c.id)))).scalar() or 0

    async def history(
        self,
        widget: str,
        *,
        since: int = 0,
        limit: int = 1000,
        after: datetime | None = None,
        upto: int | None = None,
    ) -> list[Sample]:
        """Samples of one widget with since < id <= upto (and ts >= after), oldest first.

        With a limit, the newest `limit` of them: a graph wants the recent end.
        """
        query = select(samples).where(samples.c.widget == widget, samples.c.id > since)
        if after is not None:
            query = query.where(samples.c.ts >= after)
        if upto is not None:
            query = query.where(samples.c.id <= upto)
        query = query.order_by(samples.c.id.desc()).limit(limit)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_row_to_sample(row) for row in reversed(rows)]

    async def since(
        self, widgets: Iterable[str] | None, event_id: int, *, upto: int | None = None, limit: int
    ) -> list[Sample]:
        """Samples of these widgets (None: of every widget) with event_id < id <= upto, oldest
        first, at most limit+1 rows (so the caller can tell that there were more than limit)."""
        query = select(samples).where(samples.c.id > event_id)
        if widgets is not None:
            query = query.where(samples.c.widget.in_(list(widgets)))
        if upto is not None:
            query = query.where(samples.c.id <= upto)
        query = query.order_by(samples.c.id).limit(limit + 1)
        async with self.engine.connect() as conn:
            return [_row_to_sample(row) for row in (await conn.execute(query)).all()]

    async def prune(self, older_than: datetime, *, batch: int = 500) -> int:
        """Delete samples older than `older_than` in small batches, never a widget's newest."""
        total = 0
        # Each batch must cost the same however big the table: the "newest of its widget"
        # test is one index lookup per row (not a max() over every widget per batch), and
        # rows are taken in ts order, the order of ix_samples_ts, so nothing is sorted.
        newer = samples.alias("newer")
        newest_of_widget = select(func.max(newer.c.id)).where(newer.c.widget == samples.c.widget).scalar_subquery()
        while True:
            async with self._write_lock, self.engine.begin() as conn:
                ids = (
                    (
                        await conn.execute(
                            select(samples.c.id)
                            .where(samples.c.ts < older_than, samples.c.id < newest_of_widget)
                            .order_by(samples.c.ts)
                            .limit(batch)
                        )
                    )
                    .scalars()
                    .all()
                )
                if ids:
                    await conn.execute(delete(samples).where(samples.c.id.in_(ids)))
            total += len(ids)
            if len(ids) < batch:
                return total
            await asyncio.sleep(0)  # let writers in between batches
