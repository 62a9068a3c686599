"""The sql source against real databases: SQLite files in a temp dir and the local
PostgreSQL (a fresh database per test, dropped after)."""

import sqlite3

import asyncpg
import pytest

from dashboard.config import ConfigError
from dashboard.sources import SourceError
from dashboard.sources.sql import read_only_problem
from tests.backends import free_port
from tests.configs import one_widget, table
from tests.helpers import build_widget_source, wait_until

TABLE_ROWS = [("builds", 7), ("deploys", 3), ("incidents", 0)]


def config_text(source: str, view: str = "number", **widget_keys) -> str:
    return table("storage", url="sqlite+aiosqlite:///dashboard.db") + one_widget("q", view, source, **widget_keys)


def build(tmp_path, source: str, view: str = "number", **widget_keys):
    return build_widget_source(tmp_path, config_text(source, view, **widget_keys), "q")


@pytest.fixture
def sqlite_file(tmp_path):
    """counts.db next to the config: a table of (name, n)."""
    path = tmp_path / "counts.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE counts (name TEXT, n INTEGER)")
        db.executemany("INSERT INTO counts VALUES (?, ?)", TABLE_ROWS)
    yield path


def sqlite_source(tmp_path, query: str, view: str = "number", extra: str = ""):
    return build(tmp_path, f'{{ kind = "sql", url = "sqlite+aiosqlite:///counts.db", query = "{query}"{extra} }}', view)


# --- SQLite ---------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_a_scalar_from_a_sqlite_path_relative_to_the_config(tmp_path, sqlite_file):
    source = sqlite_source(tmp_path, "SELECT sum(n) FROM counts")
    try:
        assert await source.fetch() == 10
        with sqlite3.connect(sqlite_file) as db:
            db.execute("UPDATE counts SET n = 8 WHERE name = 'builds'")
        assert await source.fetch() == 11  # read again each run, not cached
    finally:
        await source.close()


@pytest.mark.gen_test(timeout=30)
async def test_rows_for_a_list(tmp_path, sqlite_file):
    with sqlite3.connect(sqlite_file) as db:
        db.execute("INSERT INTO counts VALUES ('unknown', NULL)")
    source = sqlite_source(tmp_path, "SELECT name, n FROM counts ORDER BY name", "list", ', result = "rows"')
    try:
        assert await source.fetch() == [
            {"label": "builds", "value": 7},
            {"label": "deploys", "value": 3},
            {"label": "incidents", "value": 0},
            {"label": "unknown"},  # a NULL value: the row shows its label only
        ]
    finally:
        await source.close()


@pytest.mark.gen_test(timeout=30)
async def test_more_rows_than_a_list_shows_is_an_error(tmp_path, sqlite_file):
    with sqlite3.connect(sqlite_file) as db:
        db.executemany("INSERT INTO counts VALUES (?, ?)", [(f"r{i}", i) for i in range(300)])
    source = sqlite_source(tmp_path, "SELECT name, n FROM counts", "list", ', result = "rows"')
    try:
        with pytest.raises(SourceError, match="more than 200 rows: add a LIMIT"):
            await source.fetch()
    finally:
        await source.close()


@pytest.mark.parametrize(
    "query, message",
    [
        ("SELECT n FROM counts WHERE name = 'nobody'", "the query returned no rows"),
        ("SELECT n FROM no_such_table", "no such table: no_such_table"),
        ("SELECT nonsense(", "incomplete input"),
    ],
)
@pytest.mark.gen_test(timeout=30)
async def test_run_time_failures_are_source_errors(tmp_path, sqlite_file, query, message):
    source = sqlite_source(tmp_path, query)
    try:
        with pytest.raises(SourceError, match=message):
            await source.fetch()
    finally:
        await source.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_missing_sqlite_file_is_an_error_and_is_not_created(tmp_path):
    source = build(tmp_path, '{ kind = "sql", url = "sqlite+aiosqlite:///typo.db", query = "SELECT 1" }')
    try:
        with pytest.raises(SourceError, match=f"no SQLite database at {tmp_path / 'typo.db'}"):
            await source.fetch()
        assert not (tmp_path / "typo.db").exists()
    finally:
        await source.close()


@pytest.mark.parametrize(
    "query",
    [
        "WITH gone AS (SELECT 1) DELETE FROM counts",
        "SELECT 1; DELETE FROM counts",
        "DELETE FROM counts",
    ],
)
@pytest.mark.gen_test(timeout=30)
async def test_sqlite_refuses_writes_that_got_past_the_build_check(tmp_path, sqlite_file, query):
    source = sqlite_source(tmp_path, "SELECT 1")
    source.query = query  # as if the build-time check had missed it
    try:
        with pytest.raises(SourceError, match=r"readonly database|one statement at a time"):
            await source.fetch()
    finally:
        await source.close()
    with sqlite3.connect(sqlite_file) as db:
        assert db.execute("SELECT count(*) FROM counts").fetchone()[0] == len(TABLE_ROWS)


@pytest.mark.gen_test(timeout=20)
async def test_a_sql_widget_on_a_running_server(servers, tmp_path, sqlite_file):
    server = await servers.start(
        config_text(
            '{ kind = "sql", url = "sqlite+aiosqlite:///counts.db", '
            "query = \"SELECT n FROM counts WHERE name = 'deploys'\" }",
            every="50ms",
        ),
        port=0,
    )
    scheduler = server.runtime.scheduler
    await wait_until(lambda: "q" in scheduler.last and scheduler.last["q"].value == 3, message="the first value")
    with sqlite3.connect(sqlite_file) as db:
        db.execute("UPDATE counts SET n = 4 WHERE name = 'deploys'")
    await wait_until(lambda: scheduler.last["q"].value == 4, message="the changed value")
    with sqlite3.connect(sqlite_file) as db:  # the table is gone: the widget says so and keeps its last value
        db.execute("ALTER TABLE counts RENAME TO renamed")
    await wait_until(lambda: scheduler.last["q"].status == "error", message="the error")
    assert (scheduler.last["q"].value, scheduler.last["q"].message) == (4, "no such table: counts")


# --- the build-time check and config errors --------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "SELECT 1",
        "select count(*) from counts;",  # one trailing semicolon is still one statement
        "  (SELECT 1)",
        "WITH t AS (SELECT 1 AS x) SELECT x FROM t",
        "SELECT ';' || 'DELETE FROM counts; DROP TABLE x'",
        "SELECT 'it''s; fine'",
        'SELECT "update", "delete" FROM "drop"',
        "-- a note; DROP TABLE counts\nSELECT updated_at, created_by FROM deletions",
        "/* ; INSERT */ SELECT 1",
        "SELECT $q$; DELETE FROM x$q$",
        "SELECT 1;; ;\n-- end",
    ],
)
def test_reading_queries_pass_the_build_check(query):
    assert read_only_problem(query) is None


@pytest.mark.parametrize(
    "query, problem",
    [
        ("DELETE FROM counts", "expected a SELECT or WITH query, got 'DELETE' first"),
        ("", "expected a SELECT or WITH query, got 'nothing' first"),
        ("PRAGMA query_only = OFF", "got 'PRAGMA' first"),
        ("SELECT 1; DELETE FROM counts", "expected one statement, got more than one"),
        (
            "WITH gone AS (DELETE FROM counts RETURNING *) SELECT count(*) FROM gone",
            "expected a read-only query, got DELETE in it",
        ),
        ("WITH t AS (SELECT 1) INSERT INTO counts SELECT * FROM t", "got INSERT in it"),
        ("WITH t AS (SELECT 1) REPLACE  INTO counts SELECT * FROM t", "got REPLACE INTO in it"),
        ("SELECT * FROM counts FOR UPDATE", "got UPDATE in it"),
    ],
)
def test_the_build_check_names_the_problem(query, problem):
    assert problem in (read_only_problem(query) or "")


@pytest.mark.parametrize(
    "source, view, message",
    [
        ('{ kind = "sql", query = "SELECT 1" }', "number", "widgets.q.source.url: missing"),
        (
            '{ kind = "sql", url = "mysql://u:secret@h/db", query = "SELECT 1" }',
            "number",
            "widgets.q.source.url: expected a URL starting with sqlite+aiosqlite:// or postgresql+asyncpg://, "
            'got "mysql://..."',
        ),
        (
            '{ kind = "sql", url = "sqlite+aiosqlite://", query = "SELECT 1" }',
            "number",
            "widgets.q.source.url: expected the path of a database file",
        ),
        ('{ kind = "sql", url = "sqlite+aiosqlite:///c.db" }', "number", "widgets.q.source.query: missing"),
        (
            '{ kind = "sql", url = "sqlite+aiosqlite:///c.db", query = "SELECT 1; DELETE FROM t" }',
            "number",
            "widgets.q.source.query: expected one statement",
        ),
        (
            '{ kind = "sql", url = "sqlite+aiosqlite:///c.db", query = "SELECT 1", result = "rows" }',
            "number",
            'widgets.q.source.result: rows are shown by a list: use view = "list", not "number"',
        ),
        (
            '{ kind = "sql", url = "sqlite+aiosqlite:///c.db", query = "SELECT 1" }',
            "list",
            'widgets.q.source.result: a list shows rows: use result = "rows"',
        ),
        (
            '{ kind = "sql", url = "sqlite+aiosqlite:///c.db", query = "SELECT 1", result = "table" }',
            "number",
            'widgets.q.source.result: expected one of: scalar, rows, got "table"',
        ),
        (
            '{ kind = "sql", url = "sqlite+aiosqlite:///c.db", query = "SELECT 1", every = "5s" }',
            "number",
            'widgets.q.source: unknown key "every"',
        ),
    ],
)
def test_config_errors(tmp_path, source, view, message):
    with pytest.raises(ConfigError) as caught:
        build(tmp_path, source, view)
    assert message in str(caught.value)
    assert "secret" not in str(caught.value)


# --- PostgreSQL ----------------------------------------------------------------------------------


async def pg_execute(url: str, *statements: str):
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"), timeout=5)
    try:
        result = None
        for statement in statements:
            result = await conn.fetch(statement)
        return result
    finally:
        await conn.close()


def pg_source(tmp_path, url: str, query: str, view: str = "number", extra: str = ""):
    return build(tmp_path, f'{{ kind = "sql", url = "{url}", query = "{query}"{extra} }}', view)


@pytest.fixture
def pg_counts(pg_url, io_loop):
    io_loop.run_sync(
        lambda: pg_execute(
            pg_url,
            "CREATE TABLE counts (name text, n integer, share numeric)",
            "INSERT INTO counts VALUES ('builds', 7, 0.7), ('deploys', 3, 0.3)",
        )
    )
    return pg_url


@pytest.mark.gen_test(timeout=20)
async def test_postgres_scalar_and_rows(tmp_path, pg_counts):
    total = pg_source(tmp_path, pg_counts, "SELECT sum(n) FROM counts")  # numeric on PostgreSQL
    share = pg_source(tmp_path, pg_counts, "SELECT share FROM counts WHERE name = 'builds'")
    rows = pg_source(
        tmp_path, pg_counts, "SELECT name, n, 'extra' FROM counts ORDER BY n DESC", "list", ', result = "rows"'
    )
    percent = pg_source(tmp_path, pg_counts, "SELECT '100%' || ':name'", "text")
    try:
        assert await total.fetch() == 10 and isinstance(await total.fetch(), int)
        assert await share.fetch() == 0.7
        assert await rows.fetch() == [{"label": "builds", "value": 7}, {"label": "deploys", "value": 3}]
        assert await percent.fetch() == "100%:name"  # the query reaches the driver as written
    finally:
        for source in (total, share, rows, percent):
            await source.close()


@pytest.mark.parametrize(
    "query, message",
    [
        (
            "WITH gone AS (DELETE FROM counts RETURNING *) SELECT count(*) FROM gone",
            "read-only transaction",
        ),  # PostgreSQL names the SELECT
        ("SELECT 1; DELETE FROM counts", "cannot insert multiple commands into a prepared statement"),
        ("UPDATE counts SET n = 0", "cannot execute UPDATE in a read-only transaction"),
    ],
)
@pytest.mark.gen_test(timeout=20)
async def test_postgres_refuses_writes_that_got_past_the_build_check(tmp_path, pg_counts, query, message):
    source = pg_source(tmp_path, pg_counts, "SELECT 1")
    source.query = query  # as if the build-time check had missed it
    try:
        with pytest.raises(SourceError, match=message):
            await source.fetch()
        source.query = "SELECT count(*) FROM counts"
        assert await source.fetch() == 2  # rolled back: the pooled connection works on
    finally:
        await source.close()
    assert (await pg_execute(pg_counts, "SELECT count(*) FROM counts"))[0][0] == 2


@pytest.mark.gen_test(timeout=20)
async def test_postgres_runs_on_after_a_failed_query(tmp_path, pg_counts):
    source = pg_source(tmp_path, pg_counts, "SELECT n FROM counts WHERE name = 'builds'")
    try:
        assert await source.fetch() == 7
        await pg_execute(pg_counts, "ALTER TABLE counts RENAME TO renamed")
        with pytest.raises(SourceError, match='relation "counts" does not exist'):
            await source.fetch()
        await pg_execute(pg_counts, "ALTER TABLE renamed RENAME TO counts")
        assert await source.fetch() == 7
    finally:
        await source.close()


@pytest.mark.gen_test(timeout=20)
async def test_postgres_statement_timeout_is_the_widget_timeout(tmp_path, pg_counts):
    source = build(
        tmp_path,
        f'{{ kind = "sql", url = "{pg_counts}", query = "SELECT pg_sleep(5)::text" }}',
        "text",
        timeout="200ms",
    )
    try:
        with pytest.raises(SourceError, match="canceling statement due to statement timeout"):
            await source.fetch()
    finally:
        await source.close()


@pytest.mark.gen_test(timeout=20)
async def test_postgres_errors_never_show_the_password(tmp_path, pg_url):
    host = pg_url.split("@", 1)[1].split("/", 1)[0]
    down = pg_source(tmp_path, f"postgresql+asyncpg://postgres:Sup3r-Secret@127.0.0.1:{free_port()}/test", "SELECT 1")
    wrong_db = pg_source(
        tmp_path, f"postgresql+asyncpg://postgres:Sup3r-Secret@{host}/no_such_db_Sup3r-Secret", "SELECT 1"
    )
    try:
        with pytest.raises(SourceError) as refused:
            await down.fetch()
        assert "cannot connect to the database" in str(refused.value)
        with pytest.raises(SourceError) as missing:
            await wrong_db.fetch()
        assert "does not exist" in str(missing.value)
        for caught in (refused, missing):
            assert "Sup3r-Secret" not in str(caught.value)
    finally:
        await down.close()
        await wrong_db.close()


@pytest.mark.gen_test(timeout=20)
async def test_close_ends_the_postgres_connection(tmp_path, pg_counts):
    source = pg_source(tmp_path, pg_counts, "SELECT 1")
    sessions = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dashboard:q'"
    assert await source.fetch() == 1
    assert (await pg_execute(pg_counts, sessions))[0][0] == 1  # one pooled connection, named for the widget
    await source.close()

    async def closed():
        return (await pg_execute(pg_counts, sessions))[0][0] == 0

    await wait_until(closed, message="the connection to close")
