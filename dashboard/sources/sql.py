"""A read-only SQL query on the widget's interval: a count, a sum, the latest
reading (one value), or the first two columns of up to 200 rows for a list.
SQLite through aiosqlite, PostgreSQL through asyncpg (`dashboard[postgres]`).

Read-only three times over, because a config file is often edited by people
who do not own the database it points at:

* at build time, only one SELECT or WITH statement without a write keyword is
  accepted (a cheap, early, readable refusal, not the real guard);
* the database refuses writes itself: SQLite files are opened read-only
  (`mode=ro`, which also keeps a mistyped path from creating an empty
  database) with `PRAGMA query_only`, PostgreSQL transactions are `READ ONLY`
  with a `statement_timeout` of the widget's timeout;
* nothing is ever committed: each run's transaction is rolled back.

Messages carry the driver's own words but never the URL, and the URL's
password is scrubbed from them in case a driver echoes it.
"""

from __future__ import annotations

import datetime
import decimal
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..config import ConfigError, database_url
from ..core.views import MAX_LIST_ROWS
from . import SourceError

RESULTS = ("scalar", "rows")
READ_STATEMENTS = ("SELECT", "WITH")
# Quoted text, quoted names and comments, in which a keyword or ";" means nothing.
_NOT_CODE = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|`[^`]*`|--[^\n]*|/\*.*?\*/|\$(\w*)\$.*?\$\1\$""", re.S)
_WRITE = re.compile(
    r"\b(INSERT|UPDATE|DELETE|MERGE|UPSERT|REPLACE\s+INTO|CREATE|DROP|ALTER|TRUNCATE|"
    r"GRANT|REVOKE|ATTACH|DETACH|PRAGMA|VACUUM)\b",
    re.I,
)
_FIRST_WORD = re.compile(r"[\s(]*(\w*)")
MAX_MESSAGE = 300


def read_only_problem(query: str) -> str | None:
    """Why the query is not one plain reading statement, or None."""
    code = _NOT_CODE.sub(" ", query)
    if len([part for part in code.split(";") if part.strip()]) > 1:
        return 'expected one statement, got more than one (a ";" followed by more SQL)'
    match = _FIRST_WORD.match(code)
    first = match[1].upper() if match else ""
    if first not in READ_STATEMENTS:
        return f"expected a SELECT or WITH query, got {first or 'nothing'!r} first"
    write = _WRITE.search(code)
    if write:
        return f"expected a read-only query, got {' '.join(write[0].upper().split())} in it"
    return None


def plain(value: Any) -> Any:
    """A database value as JSON can carry it."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, decimal.Decimal):  # numeric, and SUM() over integers on PostgreSQL
        if value.is_finite() and value == value.to_integral_value():
            return int(value)
        return float(value)
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise SourceError("the query returned binary data; select text or a number")
    return str(value)  # a UUID, an interval, an enum...


class SqlSource:
    def __init__(
        self,
        engine: AsyncEngine,
        query: str,
        result: str,
        *,
        timeout: float,
        sqlite_file: Path | None = None,
        secret: str | None = None,
    ):
        self.engine = engine
        self.query = query
        self.result = result
        self.timeout = timeout
        self.sqlite_file = sqlite_file  # None: PostgreSQL
        self.postgres = sqlite_file is None
        self._secret = secret  # the URL's password, to scrub from messages

    async def fetch(self) -> Any:
        if self.sqlite_file is not None and not self.sqlite_file.is_file():
            # Said here, not by the driver: clearer, and a failed aiosqlite connect leaves
            # its worker thread to answer a future after the fact.
            raise SourceError(f"no SQLite database at {self.sqlite_file}")
        try:
            async with self.engine.connect() as connection:  # leaving without commit() rolls back
                if self.postgres:
                    await connection.exec_driver_sql("SET TRANSACTION READ ONLY")
                    await connection.exec_driver_sql(f"SET LOCAL statement_timeout = {int(self.timeout * 1000)}")
                # exec_driver_sql: the query goes to the driver as written (text() would read
                # ":name" inside it as a bind parameter).
                result = await connection.exec_driver_sql(self.query)
                rows = result.fetchmany(MAX_LIST_ROWS + 1 if self.result == "rows" else 1)
        except (SQLAlchemyError, OSError) as exc:  # OSError: asyncpg's connect errors are not wrapped
            raise SourceError(self._describe(exc)) from None
        return self._value(rows)

    def _value(self, rows: Sequence[Any]) -> Any:
        if self.result == "scalar":
            if not rows:
                raise SourceError("the query returned no rows")
            return plain(rows[0][0])
        if len(rows) > MAX_LIST_ROWS:
            raise SourceError(f"the query returned more than {MAX_LIST_ROWS} rows: add a LIMIT")
        return [_row(row) for row in rows]

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, DBAPIError) and exc.orig is not None:
            message = str(exc.orig)
        elif isinstance(exc, OSError):
            message = f"cannot connect to the database: {exc.strerror or str(exc) or type(exc).__name__}"
        else:  # str() of SQLAlchemy's own errors adds a link to its docs
            message = str(exc.args[0]) if exc.args else type(exc).__name__
        message = message.strip().splitlines()[0] if message.strip() else type(exc).__name__
        if self._secret:
            message = message.replace(self._secret, "***")
        return message[:MAX_MESSAGE]

    async def close(self) -> None:
        await self.engine.dispose()


def _row(row) -> dict[str, Any]:
    label = "" if row[0] is None else plain(row[0])
    if len(row) < 2 or row[1] is None:
        return {"label": label}
    return {"label": label, "value": plain(row[1])}


def _query_only(dbapi_connection, connection_record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA query_only = ON")
    cursor.close()


def _engine(options, url_text: str, widget) -> tuple[AsyncEngine, Path | None, str | None]:
    url = make_url(url_text)
    pool = {"pool_size": 1, "max_overflow": 0, "pool_timeout": widget.timeout}
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            raise options.error("url", "expected the path of a database file (an in-memory database is empty)")
        # Opened as a URI so that mode=ro applies; Path.as_uri() escapes spaces, "?" and "#".
        path = Path(url.database)
        url = url.set(database=path.as_uri(), query={**url.query, "mode": "ro", "uri": "true"})
        engine = create_async_engine(url, **pool)
        event.listen(engine.sync_engine, "connect", _query_only)
        return engine, path, None
    connect_args = {"timeout": widget.timeout, "server_settings": {"application_name": f"dashboard:{widget.id}"}}
    try:
        engine = create_async_engine(url, pool_pre_ping=True, connect_args=connect_args, **pool)
    except ImportError:
        raise ConfigError(
            f'{options.file}: {options.path}.url: PostgreSQL needs asyncpg: pip install "dashboard[postgres]"'
        ) from None
    return engine, None, url.password


def build(options, widget, config) -> SqlSource:
    options.str("url")  # required here: [storage]'s default database is not a thing to query
    url = database_url(options, config.base_dir)  # the same schemes, and relative SQLite paths, as [storage]
    query = options.str("query")
    problem = read_only_problem(query)
    if problem:
        raise options.error("query", problem)
    result = options.str("result", "scalar", choices=RESULTS)
    if result == "rows" and widget.view != "list":
        raise options.error("result", f'rows are shown by a list: use view = "list", not "{widget.view}"')
    if result == "scalar" and widget.view == "list":
        raise options.error("result", 'a list shows rows: use result = "rows"')
    engine, sqlite_file, secret = _engine(options, url, widget)
    return SqlSource(engine, query, result, timeout=widget.timeout, sqlite_file=sqlite_file, secret=secret)
