"""How rows reach the database: one transaction per batch, with as few trips to the
driver as it allows. The store (store.py) picks the writer for its dialect.

Measured on this project's machine (bench/README.md): through SQLAlchemy's async
engine, a transaction on aiosqlite takes about twenty hand-offs to the driver's
thread and back (~17 us of CPU each), which is most of what a sample used to cost
(~300 us). So:

- SQLite: the writer has a connection of its own, in a thread of its own; a whole
  transaction is one function run in that thread: one hand-off per batch. Ids are
  max(id) + 1, + 2, ... read under the write lock, which is taken across processes.
  A batch of up to CHUNK rows is a single INSERT in autocommit mode, which takes
  the write lock before it reads anything (as BEGIN IMMEDIATE would), computes its
  ids inside and commits at its end: one step of the driver. The sqlite3 module lets
  go of the GIL around every step, and winning it back from a busy event loop is
  what a write mostly waited for: BEGIN IMMEDIATE, SELECT, INSERT and COMMIT took
  five steps (single pushes 0.70x -> 0.77x the bare handler's rate in the same
  run, bench/README.md). A bigger batch is BEGIN IMMEDIATE, one INSERT per CHUNK
  rows, COMMIT. Reads stay on the SQLAlchemy engine (WAL: readers never wait for
  the writer). Publishing one batch while the next is written was tried and not
  taken: the two threads then fight for the GIL, and batches got slower.
- SQLite: a value that is a float is bound as the float, every other value as its
  JSON text. The value column's affinity makes numeric text a number, and SQLite's
  own reading of decimal text misses the nearest double by one unit in the last
  place for some values (about 1 in 200 random doubles of any magnitude): the
  database held 5.519960960058537e-297 where the stream said ...538e-297.
- PostgreSQL: asyncpg is asynchronous already; a batch is one transaction on a
  pooled connection: the writers' advisory lock, then one INSERT ... SELECT FROM
  unnest() (one prepared statement whatever the batch size).

Both run the roll-up pass (rollups.py) about once a second, as a transaction of its
own after a batch, so that no caller waits for it.

Imported rows are staged first (a temporary table, filled while the file is read)
and moved into the samples table by one statement at the end, so the write lock is
held for the move only. They take ids below every existing one (and below zero):
history, never events, so no stream replays them and live ids keep their order.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from .rollups import ROLL_UP_EVERY, import_roll_up_sql, roll_up_sql

log = logging.getLogger("dashboard.writer")

# A row to write: (widget, value, value as JSON text, status, message).
Row = tuple[str, Any, str, str, str | None]
# An imported row: (widget, Unix time in microseconds, value as JSON text, or a float).
ImportRow = tuple[str, int, str | float]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
WRITERS_LOCK = 0x64617368_0001  # PostgreSQL advisory lock keys (any distinct bigints)
MIGRATIONS_LOCK = 0x64617368_0002
IMPORTS_LOCK = 0x64617368_0003
# How long a write waits for another's lock before it fails: an import moving its rows
# in holds it about 2 s per million rows, and pushes had better wait than fail.
BUSY_TIMEOUT_MS = 30_000
_STAGE = "import_stage"


def sqlite_ts(ts: datetime) -> str:
    """The text SQLAlchemy stores a DateTime as on SQLite (UTC, naive): what reads parse."""
    return ts.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


class SqliteTimes:
    """Unix microseconds -> SQLite's timestamp text (what SQLAlchemy reads), each minute's
    "YYYY-MM-DD HH:MM:" made once: an import formats a million of these, and this is
    three times as fast as datetime's formatting (SQLite's strftime() is slower still)."""

    def __init__(self) -> None:
        self._minutes: dict[int, str] = {}

    def __call__(self, micros: int) -> str:
        minute, rest = divmod(micros, 60_000_000)
        prefix = self._minutes.get(minute)
        if prefix is None:
            if len(self._minutes) > 100_000:
                self._minutes.clear()
            prefix = self._minutes[minute] = (EPOCH + timedelta(minutes=minute)).strftime("%Y-%m-%d %H:%M:")
        second, micro = divmod(rest, 1_000_000)
        return f"{prefix}{second:02d}.{micro:06d}"


class Writer(Protocol):
    async def open(self) -> None: ...

    async def append(self, rows: Sequence[Row], ts: datetime) -> list[int]:
        """Insert the rows in one transaction; their ids, in row order."""
        ...

    async def roll_up(self) -> int:
        """One roll-up pass now; the samples it took."""
        ...

    async def begin_import(self) -> ImportSession: ...

    async def close(self) -> None: ...


class ImportSession(Protocol):
    async def add(self, rows: list[ImportRow]) -> None: ...

    async def commit(self, since: dict[int, int]) -> int:
        """Move every row added into the samples table and roll them up (per tier, from
        the bucket `since` says on); the rows moved."""
        ...

    async def abort(self) -> None: ...


class _Passes:
    """When the next roll-up pass is due: about once a second while batches come in, one
    at a time, never waited for by the batch that started it."""

    def __init__(self, every: float | None) -> None:
        self.every = every  # None: only when asked (tests that count what a pass took)
        self.last = time.monotonic()
        self.running: asyncio.Future[Any] | None = None

    def due(self) -> bool:
        return self.every is not None and self.running is None and time.monotonic() - self.last >= self.every

    def start(self, future: asyncio.Future[Any]) -> None:
        self.running = future
        future.add_done_callback(self._done)

    def _done(self, future: asyncio.Future[Any]) -> None:
        self.last = time.monotonic()
        self.running = None
        if not future.cancelled() and future.exception() is not None:
            # The samples stay above rollup_state.upto: series add them, the next pass takes them.
            log.warning("the roll-up pass failed: %s", future.exception())


# -- SQLite -----------------------------------------------------------------------------------

# Rows per statement. One multi-row statement, not executemany(): the sqlite3 module
# lets go of the GIL around every step, and a writer thread that must win it back from
# a busy event loop for each row spends longer waiting than writing.
CHUNK = 100
_INSERTS: dict[int, str] = {}

# The next id: above every row's, and above the roll-up mark too, which only grows: a
# retention that deleted the newest row could not make an id come twice. Imported rows
# (below zero) do not move live ids.
_TOP_ID = "SELECT max(coalesce((SELECT max(id) FROM samples), 0), (SELECT upto FROM rollup_state), 0)"
_SELF_NUMBERED: dict[int, str] = {}


def _self_numbered_sql(rows: int) -> str:
    """INSERT of `rows` samples that numbers them itself, from _TOP_ID: ?1 the time, then
    widget, value, status and message of each row. Inserted in id order, so the last
    rowid is the highest id."""
    if rows not in _SELF_NUMBERED:
        values = ", ".join(f"({k + 1}, ?{2 + 4 * k}, ?{3 + 4 * k}, ?{4 + 4 * k}, ?{5 + 4 * k})" for k in range(rows))
        _SELF_NUMBERED[rows] = (
            "INSERT INTO samples (id, widget, ts, value, status, message) "
            "SELECT top.n + v.column1, v.column2, ?1, v.column3, v.column4, v.column5 "
            f"FROM ({_TOP_ID} AS n) AS top, (VALUES {values}) AS v ORDER BY v.column1"
        )
    return _SELF_NUMBERED[rows]


def _insert_sql(rows: int) -> str:
    """INSERT of `rows` samples: ?1 the first id, ?2 the time, then widget, value, status
    and message of each row."""
    if rows not in _INSERTS:
        values = ", ".join(
            f"(?1 + {k}, ?{3 + 4 * k}, ?2, ?{4 + 4 * k}, ?{5 + 4 * k}, ?{6 + 4 * k})" for k in range(rows)
        )
        _INSERTS[rows] = f"INSERT INTO samples (id, widget, ts, value, status, message) VALUES {values}"
    return _INSERTS[rows]


# WAL pages before a commit copies them into the database file (SQLite's default: 1,000).
# Each batch rewrites a page of the (widget, time) index per widget it holds, the same
# pages batch after batch: a checkpoint copies each only once however often it was
# rewritten, so ten times fewer checkpoints copy nearly ten times fewer pages (and
# fsync ten times less). Batch pushes of 100 widgets: +15 % (bench/README.md); the
# WAL file grows to about 40 MB.
WAL_CHECKPOINT_PAGES = 10_000


def set_sqlite_pragmas(conn: Any) -> None:
    """What every connection to the SQLite file sets (the writer's and the engine's):
    WAL, so readers never block the writer; NORMAL sync, which loses nothing committed
    when the process dies; a wait for the write lock as long as an import may hold it;
    and checkpoints every WAL_CHECKPOINT_PAGES pages."""
    for pragma in (
        "journal_mode=WAL",
        "synchronous=NORMAL",
        f"busy_timeout={BUSY_TIMEOUT_MS}",
        f"wal_autocheckpoint={WAL_CHECKPOINT_PAGES}",
    ):
        conn.execute(f"PRAGMA {pragma}")


def _connect_sqlite(path: str) -> sqlite3.Connection:
    # isolation_level=None: the module opens no transaction of its own; ours are explicit.
    conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    set_sqlite_pragmas(conn)
    conn.execute("PRAGMA temp_store=FILE")  # a staged import lives in a temp file, not in memory
    # The pages each batch touches (the newest of each widget's index) stay cached
    # between transactions: 32 MB at most.
    conn.execute("PRAGMA cache_size=-32768")
    return conn


def _in_transaction(conn: Any, work: Any, *args: Any) -> Any:
    """work(cursor, *args) inside BEGIN IMMEDIATE ... COMMIT, rolled back on any error.
    IMMEDIATE takes the write lock first, so what is read inside cannot go stale."""
    cursor = conn.cursor()
    try:
        cursor.execute("BEGIN IMMEDIATE")
        try:
            result = work(cursor, *args)
            cursor.execute("COMMIT")
        except BaseException:
            try:
                cursor.execute("ROLLBACK")
            except Exception:  # SQLite rolled back by itself already (a full disk, say)
                pass
            raise
        return result
    finally:
        cursor.close()


def _execute(conn: Any, *statements: str) -> None:
    cursor = conn.cursor()
    try:
        for statement in statements:
            cursor.execute(statement)
    finally:
        cursor.close()


def _insert_statements(rows: Sequence[Row], ts: datetime) -> list[tuple[str, list[Any]]]:
    """The batch's INSERTs, built before the hand-off to the writer's thread (their first
    parameter, the first id, is filled in there)."""
    stamp = sqlite_ts(ts)
    statements = []
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        params: list[Any] = [0, stamp]
        for widget, value, encoded, status, message in chunk:
            params += (widget, value if type(value) is float else encoded, status, message)
        statements.append((_insert_sql(len(chunk)), params))
    return statements


def _value(cursor: Any, sql: str) -> Any:
    """The one value a query answers. Not cursor.execute(...).fetchone(): SQLAlchemy's
    adapter for an in-memory database returns something else than the cursor."""
    cursor.execute(sql)
    return cursor.fetchone()[0]


def _append_sqlite(cursor: Any, statements: list[tuple[str, list[Any]]]) -> int:
    first = next_id = int(_value(cursor, _TOP_ID)) + 1
    for sql, params in statements:
        params[0] = next_id
        cursor.execute(sql, params)
        next_id += (len(params) - 2) // 4
    return int(first)


def _insert_alone(conn: Any, sql: str, params: list[Any], count: int) -> int:
    """A self-numbered INSERT as a transaction of its own (autocommit); the first id."""
    cursor = conn.cursor()
    try:
        cursor.execute(sql, params)
        return int(cursor.lastrowid) - count + 1
    finally:
        cursor.close()


def _roll_up_range(cursor: Any, low: int, high: int) -> None:
    """Add the samples with low < id <= high to the rollups."""
    for statement in roll_up_sql("sqlite", "id > ? AND id <= ?"):
        cursor.execute(statement, (low, high) if "?" in statement else ())


def _roll_up_sqlite(cursor: Any) -> int:
    upto = _value(cursor, "SELECT upto FROM rollup_state")
    top = _value(cursor, "SELECT max(id) FROM samples") or 0
    if top <= upto:
        return 0
    _roll_up_range(cursor, upto, top)
    cursor.execute("UPDATE rollup_state SET upto = ?", (top,))
    return int(top - upto)


def _move_staged(cursor: Any, count: int, additions: list[str]) -> int:
    low = _value(cursor, "SELECT min(id) FROM samples")
    top = min(low or 0, 0)
    # The stage's rowids are 1..count in file order: ids top-count .. top-1, in that order.
    cursor.execute(
        f"INSERT INTO samples (id, widget, ts, value, status, message) "
        f"SELECT rowid + ?, widget, ts, value, 'ok', NULL FROM temp.{_STAGE}",
        (top - count - 1,),
    )
    for statement in additions:
        cursor.execute(statement)
    return count


class SqliteWriter:
    """Writes through a sqlite3 connection of its own, in a thread of its own. An
    in-memory database (which another connection could not see) is written through
    the engine's one connection instead: correct, with a hand-off per statement."""

    def __init__(self, engine: AsyncEngine, path: str | None, roll_up_every: float | None):
        self.engine = engine
        self.path = path
        self._thread: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._passes = _Passes(roll_up_every)

    async def open(self) -> None:
        if self.path is not None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
            self._conn = await asyncio.get_running_loop().run_in_executor(self._thread, _connect_sqlite, self.path)

    async def _run(self, function: Any, *args: Any) -> Any:
        """function(connection, *args), run where that connection lives."""
        if self._thread is None:  # in memory: the engine's connection, through its driver
            async with self.engine.connect() as conn:
                raw = await conn.get_raw_connection()
                return await conn.run_sync(lambda _: function(raw.dbapi_connection, *args))
        return await asyncio.get_running_loop().run_in_executor(self._thread, lambda: function(self._conn, *args))

    async def append(self, rows: Sequence[Row], ts: datetime) -> list[int]:
        if len(rows) <= CHUNK and self._thread is not None:  # autocommit: the own connection only
            params: list[Any] = [sqlite_ts(ts)]
            for widget, value, encoded, status, message in rows:
                params += (widget, value if type(value) is float else encoded, status, message)
            first = await self._run(_insert_alone, _self_numbered_sql(len(rows)), params, len(rows))
        else:
            first = await self._run(_in_transaction, _append_sqlite, _insert_statements(rows, ts))
        if self._passes.due():
            self._passes.start(asyncio.ensure_future(self.roll_up()))
        return list(range(first, first + len(rows)))

    async def roll_up(self) -> int:
        return int(await self._run(_in_transaction, _roll_up_sqlite))

    async def begin_import(self) -> ImportSession:
        session = SqliteImport(self)
        await session.start()
        return session

    async def close(self) -> None:
        if self._passes.running is not None:
            await asyncio.gather(self._passes.running, return_exceptions=True)
        if self._thread is not None:
            # Queued behind any write in progress: the thread finishes it first.
            conn, self._conn = self._conn, None
            if conn is not None:
                await asyncio.get_running_loop().run_in_executor(self._thread, conn.close)
            self._thread.shutdown(wait=True)
            self._thread = None


class SqliteImport:
    def __init__(self, writer: SqliteWriter):
        self.writer = writer
        self.count = 0
        self.times = SqliteTimes()

    async def start(self) -> None:
        # value JSON: the samples' column type, so a number is stored as one here too.
        await self.writer._run(
            _execute,
            f"DROP TABLE IF EXISTS temp.{_STAGE}",
            f"CREATE TEMP TABLE {_STAGE} (widget TEXT NOT NULL, micros INTEGER NOT NULL, ts TEXT NOT NULL, value JSON)",
        )

    async def add(self, rows: list[ImportRow]) -> None:
        times = self.times
        staged = [(widget, micros, times(micros), encoded) for widget, micros, encoded in rows]

        def stage(conn: Any) -> None:
            # A transaction on the temp database only: it takes no lock on the database itself.
            cursor = conn.cursor()
            try:
                cursor.execute("BEGIN")
                cursor.executemany(f"INSERT INTO temp.{_STAGE} (widget, micros, ts, value) VALUES (?, ?, ?, ?)", staged)
                cursor.execute("COMMIT")
            finally:
                cursor.close()

        await self.writer._run(stage)
        self.count += len(rows)

    async def commit(self, since: dict[int, int]) -> int:
        # The aggregation reads and writes temporary tables only: it runs before the
        # write lock is taken, which is then held for the move and the additions.
        aggregation, additions = import_roll_up_sql("sqlite", f"temp.{_STAGE}", since)
        await self.writer._run(_execute, *aggregation)
        moved = await self.writer._run(_in_transaction, _move_staged, self.count, additions)
        await self.abort()
        return int(moved)

    async def abort(self) -> None:
        await self.writer._run(
            _execute, *(f"DROP TABLE IF EXISTS temp.{name}" for name in (_STAGE, "import_tens", "import_minutes"))
        )


# -- PostgreSQL -------------------------------------------------------------------------------

_PG_INSERT = """INSERT INTO samples (widget, ts, value, status, message)
SELECT w, $2, CAST(v AS json), s, m FROM unnest($1::text[], $3::text[], $4::text[], $5::text[]) AS u(w, v, s, m)
RETURNING id"""


async def _pg_roll_up(conn: Any) -> int:
    """The pass, inside a transaction that holds the writers' lock (so every id up to
    max(id) is committed: none can appear below it later)."""
    upto = await conn.fetchval("SELECT upto FROM rollup_state")
    top = await conn.fetchval("SELECT max(id) FROM samples") or 0
    if top <= upto:
        return 0
    for statement in roll_up_sql("postgresql", "id > $1 AND id <= $2"):
        await conn.execute(statement, upto, top)
    await conn.execute("UPDATE rollup_state SET upto = $1", top)
    return int(top - upto)


class PostgresWriter:
    def __init__(self, engine: AsyncEngine, roll_up_every: float | None):
        self.engine = engine
        self._passes = _Passes(roll_up_every)

    async def open(self) -> None:
        pass

    async def _in_transaction(self, work: Any, *args: Any) -> Any:
        """work(asyncpg connection, *args) in a transaction holding the writers' lock."""
        async with self.engine.connect() as sa_conn:
            raw = await sa_conn.get_raw_connection()
            conn: Any = raw.driver_connection
            try:
                async with conn.transaction():
                    # Other processes write too. A sequence hands out ids at insert but rows
                    # appear at commit: a reader could see id 101 before 100 commits, move its
                    # cursor past 100 and never send it. One lock for all writers makes
                    # commit order id order.
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", WRITERS_LOCK)
                    return await work(conn, *args)
            except (OSError, ConnectionError) as exc:
                raw.invalidate(exc)  # not back into the pool
                raise

    async def append(self, rows: Sequence[Row], ts: datetime) -> list[int]:
        async def insert(conn: Any) -> list[Any]:
            return list(
                await conn.fetch(
                    _PG_INSERT,
                    [row[0] for row in rows],
                    ts,
                    [row[2] for row in rows],
                    [row[3] for row in rows],
                    [row[4] for row in rows],
                )
            )

        records = await self._in_transaction(insert)
        if self._passes.due():
            self._passes.start(asyncio.ensure_future(self.roll_up()))
        # nextval() runs in the order unnest() yields the rows, so the sorted ids are the rows'.
        return sorted(record[0] for record in records)

    async def roll_up(self) -> int:
        return int(await self._in_transaction(_pg_roll_up))

    async def begin_import(self) -> ImportSession:
        session = PostgresImport(self.engine)
        await session.start()
        return session

    async def close(self) -> None:
        if self._passes.running is not None:
            await asyncio.gather(self._passes.running, return_exceptions=True)


class PostgresImport:
    """The whole import is one transaction on one connection: COPY into a temporary
    table as the file is read, then one INSERT ... SELECT. PostgreSQL's writers do not
    wait for it (no table lock); imports wait for each other (for their ids)."""

    def __init__(self, engine: AsyncEngine):
        self.engine = engine
        self.count = 0
        self._open = False
        self.conn: Any = None  # the asyncpg connection, from start()

    async def start(self) -> None:
        self._sa = await self.engine.connect()
        self._raw = await self._sa.get_raw_connection()
        self.conn = self._raw.driver_connection
        self._transaction = self.conn.transaction()
        await self._transaction.start()
        self._open = True
        await self.conn.execute(
            f"CREATE TEMP TABLE {_STAGE} (n bigserial, widget text NOT NULL, micros bigint NOT NULL, value json)"
            " ON COMMIT DROP"
        )

    async def add(self, rows: list[ImportRow]) -> None:
        # A json column takes text: a float goes back to its shortest repr, which PostgreSQL
        # reads exactly.
        records = [(w, micros, repr(v) if type(v) is float else v) for w, micros, v in rows]
        await self.conn.copy_records_to_table(_STAGE, records=records, columns=("widget", "micros", "value"))
        self.count += len(rows)

    async def commit(self, since: dict[int, int]) -> int:
        try:
            await self.conn.execute("SELECT pg_advisory_xact_lock($1)", IMPORTS_LOCK)
            top = min(await self.conn.fetchval("SELECT min(id) FROM samples") or 0, 0)
            # The stage's n are 1..count in file order: ids top-count .. top-1, in that order.
            await self.conn.execute(
                f"INSERT INTO samples (id, widget, ts, value, status, message) "
                f"SELECT n + $1, widget, timestamptz 'epoch' + micros * interval '1 microsecond', "
                f"value, 'ok', NULL FROM {_STAGE}",
                top - self.count - 1,
            )
            for statement in import_roll_up_sql("postgresql", _STAGE, since)[1]:
                await self.conn.execute(statement)
            await self._transaction.commit()
        except BaseException:
            await self.abort()
            raise
        self._open = False
        await self._sa.close()
        return self.count

    async def abort(self) -> None:
        if self._open:
            self._open = False
            try:
                await self._transaction.rollback()
            except Exception:  # already rolled back by a failed statement, or the link is gone
                pass
            await self._sa.close()


async def make_writer(engine: AsyncEngine, *, roll_up_every: float | None = ROLL_UP_EVERY) -> Writer:
    writer: Writer
    if engine.dialect.name == "postgresql":
        writer = PostgresWriter(engine, roll_up_every)
    else:
        database = engine.url.database
        in_memory = not database or database == ":memory:"
        writer = SqliteWriter(engine, None if in_memory else database, roll_up_every)
    await writer.open()
    return writer
