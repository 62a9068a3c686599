"""The SQL store: engine, schema migrations, and the few queries the app needs.

All writes go through one asyncio.Lock, so ids are handed out in the order the
caller sees them committed. SQLite runs in WAL mode with synchronous=NORMAL:
a crashed process loses nothing committed (only a power cut could), and readers
never block the writer.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, event, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..core.samples import Sample, utc
from ..core.values import Unreadable, checked_sample
from .schema import samples

log = logging.getLogger("dashboard.store")

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"

# PostgreSQL advisory lock keys (any two distinct bigints): one for writers, one for migrations.
WRITERS_LOCK = 0x64617368_0001
MIGRATIONS_LOCK = 0x64617368_0002

INSERT_SAMPLE = samples.insert()


async def _take_lock(conn, key: int) -> None:
    """Hold a PostgreSQL advisory lock until this transaction ends; nothing on SQLite,
    whose one-writer-at-a-time file lock already does the same across processes."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def _decode_text(data: bytes) -> str:
    # sqlite3 would fail the whole query on one row with bytes that are not UTF-8 (written
    # by another program): such a value is read with U+FFFD in their place instead.
    return data.decode("utf-8", "replace")


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    dbapi_connection.driver_connection.text_factory = _decode_text
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _row_to_sample(row) -> Sample:
    # What was stored before the values were checked (views.accept), or by another
    # process, may not be showable: it becomes an error on its widget, not a broken page.
    return checked_sample(Sample(row.id, row.widget, utc(row.ts), row.value, row.status, row.message))


def _read_json(text: str | bytes) -> Any:
    """A stored value; one that is not JSON is handed on as Unreadable (checked_sample
    turns it into an error on its widget) rather than failing the whole query."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        return Unreadable(f"not JSON: {reason}")


def _alembic_upgrade(sync_connection, revision: str = "head") -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = sync_connection
    command.upgrade(cfg, revision)


def ensure_sqlite_dir(url: str) -> None:
    """Create the directory of a SQLite file, so a fresh checkout just runs."""
    prefix = "sqlite+aiosqlite:///"
    if url.startswith(prefix) and ":memory:" not in url:
        Path(url[len(prefix) :]).parent.mkdir(parents=True, exist_ok=True)


class Store:
    def __init__(self, url: str):
        self.url = url
        self.engine: AsyncEngine | None = None
        self._write_lock = asyncio.Lock()

    async def open(self, *, migrate: bool = True) -> None:
        ensure_sqlite_dir(self.url)
        self.engine = create_async_engine(self.url, json_deserializer=_read_json)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        if migrate:
            await self.migrate()

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

    async def append_many(self, items: Sequence[tuple[str, Any, str, str | None]]) -> list[Sample]:
        """Insert samples in one transaction, all or nothing; the committed samples, in id
        order (the caller publishes them: see Recorder)."""
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
