"""The SQL store: engine, schema migrations, the writes (through storage/writer.py),
and the few queries the app needs.

Writes go through the store's writer: one transaction per batch, ids handed out in
commit order (see writer.py for how, per database). SQLite runs in WAL mode with
synchronous=NORMAL: a crashed process loses nothing committed (only a power cut
could), and readers never block the writer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pwd
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, bindparam, delete, event, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..config import WidgetConfig
from ..core.resources import resource_dir
from ..core.samples import Sample, utc, value_json
from ..core.values import Unreadable, checked_sample, fitting_sample
from ..core.views import accept
from .rollups import COLUMNS, ROLL_UP_EVERY, Plan, raw_series_sql, tier_series_sql
from .schema import rollups, samples
from .writer import MIGRATIONS_LOCK, ImportSession, Row, Writer, make_writer, set_sqlite_pragmas

log = logging.getLogger("dashboard.store")
LAST_SECOND = 253402300799  # 9999-12-31 23:59:59 UTC, the last second a datetime holds

Item = tuple[str, Any, str, str | None]  # widget, value, status, message


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
    set_sqlite_pragmas(cursor)
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


def _driver_errors() -> tuple[type[BaseException], ...]:
    try:
        import asyncpg  # an optional backend: only when installed
    except ImportError:
        return ()
    return (asyncpg.PostgresError, asyncpg.InterfaceError)


# What a database (or the way to it) can raise through the store: SQLAlchemy's wrapped
# errors, and the drivers' own where the writers use a driver directly.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (sqlite3.Error, DBAPIError, OSError, *_driver_errors())


def database_reason(exc: BaseException) -> str:
    """What the database (or the way to it) said, in one line."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def describe_open_failure(url: str, exc: BaseException) -> str:
    reason = database_reason(exc)
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


def encode_value(value: Any) -> str:
    """The JSON text a value is stored as (what SQLAlchemy's JSON type would write);
    TypeError or ValueError for a value with no JSON form (a set, NaN)."""
    return value_json(value)


def fitted(widgets: Iterable[WidgetConfig], latest: Mapping[str, Sample]) -> dict[str, Sample]:
    """Samples as their widgets show them: a stored value a widget's view does not take
    (written for another view before the config changed, or by another program) is an
    error on that widget, wherever it is shown, never a broken page or answer."""
    return {w.id: fitting_sample(latest[w.id], w.view, accept) for w in widgets if w.id in latest}


class Store:
    def __init__(self, url: str, *, roll_up_every: float | None = ROLL_UP_EVERY):
        self.url = url
        self.roll_up_every = roll_up_every  # seconds between roll-up passes; None: only roll_up()
        self.engine: AsyncEngine | None = None
        self.writer: Writer | None = None
        # Retention's deletes take turns with each other (and leave the writer be).
        self._prune_lock = asyncio.Lock()

    async def open(self, *, migrate: bool = True) -> None:
        """Connect (and migrate); StoreUnavailable, with one line saying why and what to
        do, when the database cannot be created, opened or written."""
        try:
            ensure_sqlite_dir(self.url)
            self.engine = create_async_engine(self.url, json_deserializer=_read_json)
            if self.engine.dialect.name == "sqlite":
                event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            if migrate:
                await self.migrate()
            self.writer = await make_writer(self.engine, roll_up_every=self.roll_up_every)
            if migrate:
                await self.roll_up()  # what a crash left out of the rollups, before anything prunes it
        except DATABASE_ERRORS as exc:  # a database locked by another program past the wait, too
            if self.writer is not None:
                await self.writer.close()
                self.writer = None
            if self.engine is not None:
                await self.engine.dispose()
                self.engine = None
            raise StoreUnavailable(describe_open_failure(self.url, exc)) from exc

    async def migrate(self) -> None:
        async with self._engine.begin() as conn:
            # Several processes starting at once would otherwise create the same table twice.
            await _take_lock(conn, MIGRATIONS_LOCK)
            await conn.run_sync(_alembic_upgrade)

    async def close(self) -> None:
        # The writer finishes the write in progress before it lets go of its connection.
        if self.writer is not None:
            try:
                await self.roll_up()  # leave the rollups complete
            except Exception as exc:  # the next start catches up
                log.warning("the last roll-up pass failed: %s", exc)
            await self.writer.close()
            self.writer = None
        async with self._prune_lock:
            if self.engine is not None:
                await self.engine.dispose()
                self.engine = None

    async def ping(self) -> bool:
        try:
            async with self._engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:  # any failure means "not reachable" to a health check
            return False

    @staticmethod
    def encode(items: Sequence[Item]) -> list[Row]:
        """The rows to write for these items; TypeError or ValueError when a value has no
        JSON form (checked before any transaction, so that one bad value fails alone)."""
        return [(widget, value, encode_value(value), status, message) for widget, value, status, message in items]

    @property
    def _writer(self) -> Writer:
        if self.writer is None:
            raise RuntimeError("the store is not open")
        return self.writer

    @property
    def _engine(self) -> AsyncEngine:
        if self.engine is None:
            raise RuntimeError("the store is not open")
        return self.engine

    async def commit(self, batches: Sequence[Sequence[Row]], *, ts: datetime | None = None) -> list[list[Sample]]:
        """Insert every batch in one transaction, all or nothing; the committed samples of
        each batch, in id order (the caller publishes them: see Recorder). They are taken
        now, or at `ts` (a test placing samples in time)."""
        ts = ts or datetime.now(UTC)
        rows = [row for batch in batches for row in batch]
        ids = iter(await self._writer.append(rows, ts))
        return [
            [Sample(next(ids), widget, ts, value, status, message) for widget, value, _, status, message in batch]
            for batch in batches
        ]

    async def append_many(self, items: Sequence[Item]) -> list[Sample]:
        """Insert samples in one transaction, all or nothing (not published: see Recorder)."""
        (out,) = await self.commit([self.encode(items)])
        return out

    async def roll_up(self) -> int:
        """Add the samples written since the last roll-up pass to the rollups now (the
        writer does it about once a second); how many it took."""
        return await self._writer.roll_up()

    async def begin_import(self) -> ImportSession:
        """A staged import (storage/importer.py): rows added as a file is read, moved into
        the samples table in one transaction at commit, with their rollups."""
        return await self._writer.begin_import()

    async def shown(self, widgets: Iterable[WidgetConfig]) -> dict[str, Sample]:
        """The newest sample of each widget as the widget shows it (see fitted): what
        pages, the API, badges, streams and the tickers start from."""
        widgets = list(widgets)
        return fitted(widgets, await self.latest(w.id for w in widgets))

    async def latest(self, widgets: Iterable[str]) -> dict[str, Sample]:
        """The newest sample of each widget that has one (by time; for live samples that is
        also the highest id)."""
        out = {}
        async with self._engine.connect() as conn:
            for widget in widgets:
                row = (
                    await conn.execute(
                        select(samples)
                        .where(samples.c.widget == widget)
                        .order_by(samples.c.ts.desc(), samples.c.id.desc())
                        .limit(1)
                    )
                ).first()
                if row is not None:
                    out[widget] = _row_to_sample(row)
        return out

    async def last_id(self) -> int:
        """The newest event id (imported rows, below zero, are not events)."""
        async with self._engine.connect() as conn:
            return max((await conn.execute(select(func.max(samples.c.id)))).scalar() or 0, 0)

    async def history(
        self,
        widget: str,
        *,
        since: int | None = None,
        limit: int = 1000,
        after: datetime | None = None,
        upto: int | None = None,
    ) -> list[Sample]:
        """Samples of one widget, oldest first by time: all of them, or with since < id <=
        upto (and ts >= after). Imported rows may be older than live ones: ids are the
        stream's order, time is history's.

        With a limit, the newest `limit` of them: a graph wants the recent end.
        """
        query = select(samples).where(samples.c.widget == widget)
        if since is not None:
            query = query.where(samples.c.id > since)
        if after is not None:
            query = query.where(samples.c.ts >= after)
        if upto is not None:
            query = query.where(samples.c.id <= upto)
        query = query.order_by(samples.c.ts.desc(), samples.c.id.desc()).limit(limit)
        async with self._engine.connect() as conn:
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
        async with self._engine.connect() as conn:
            return [_row_to_sample(row) for row in (await conn.execute(query)).all()]

    async def prune(self, older_than: datetime, *, batch: int = 500) -> int:
        """Delete samples older than `older_than` in small batches, never a widget's newest."""
        # Each batch must cost the same however big the table: the "newest of its widget"
        # test is one index lookup per row (not a max() over every widget per batch), and
        # rows are taken in ts order, the order of ix_samples_ts, so nothing is sorted.
        # The newest of each widget also keeps the highest id, so SQLite's ids keep growing.
        newer = samples.alias("newer")
        newest_of_widget = (
            select(newer.c.id)
            .where(newer.c.widget == samples.c.widget)
            .order_by(newer.c.ts.desc(), newer.c.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        oldest = (
            select(samples.c.id)
            .where(samples.c.ts < older_than, samples.c.id != newest_of_widget)
            .order_by(samples.c.ts)
            .limit(batch)
        )
        total = 0
        while True:
            # Each batch is a transaction of its own, so the writer waits for one at most.
            async with self._prune_lock, self._engine.begin() as conn:
                ids = (await conn.execute(oldest)).scalars().all()
                if ids:
                    await conn.execute(delete(samples).where(samples.c.id.in_(ids)))
            total += len(ids)
            if len(ids) < batch:
                return total
            await asyncio.sleep(0)  # let writers in between batches

    async def prune_rollups(self, older_than: dict[int, int], *, batch: int = 500) -> int:
        """Delete each tier's buckets that start before its cutoff (tier step -> Unix
        seconds), oldest first, about `batch` rows per transaction."""
        total = 0
        for step, cutoff in older_than.items():
            oldest = rollups.c.step == step, rollups.c.bucket < cutoff
            while True:
                async with self._prune_lock, self._engine.begin() as conn:
                    # The bucket `batch` rows in: everything up to it goes (all widgets' rows of
                    # that bucket with it), everything before the cutoff when there is none.
                    edge = (
                        await conn.execute(
                            select(rollups.c.bucket)
                            .where(*oldest)
                            .order_by(rollups.c.bucket)
                            .offset(batch - 1)
                            .limit(1)
                        )
                    ).scalar()
                    upto = cutoff if edge is None else edge + 1
                    result = await conn.execute(delete(rollups).where(rollups.c.step == step, rollups.c.bucket < upto))
                    total += result.rowcount
                if edge is None:
                    break
                await asyncio.sleep(0)
        return total

    async def series(self, widgets: Sequence[str], plan: Plan) -> dict[str, dict[str, list]]:
        """Each widget's buckets in the plan's range: {"t": [bucket start, Unix seconds],
        "n": [...], "measured", "total", "low", "high", "ok", "warn", "down"}. Buckets
        without a sample that counts are left out."""
        out: dict[str, dict[str, list]] = {w: {"t": [], **{c: [] for c in COLUMNS}} for w in widgets}
        if not widgets:
            return out
        times = [bindparam(name, type_=DateTime(timezone=True)) for name in ("start_ts", "end_ts")]
        params: dict[str, Any] = {
            "widgets": list(widgets),
            "step": plan.step,
            # A range that ends in the last years a datetime holds can round up past 9999.
            "start_ts": datetime.fromtimestamp(min(plan.start, LAST_SECOND), UTC),
            "end_ts": datetime.fromtimestamp(min(plan.end, LAST_SECOND), UTC),
        }
        if plan.tier:
            sql = tier_series_sql(self._engine.dialect.name)
            params.update(tier=plan.tier, start=plan.start, end=plan.end)
        else:
            sql = raw_series_sql(self._engine.dialect.name)
        query = text(sql).bindparams(bindparam("widgets", expanding=True), *times)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query, params)).all()
        for widget, bucket, *values in rows:
            columns = out[widget]
            columns["t"].append(int(bucket))
            for name, value in zip(COLUMNS, values, strict=True):
                columns[name].append(value)
        return out
