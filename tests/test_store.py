"""The SQL store on a real SQLite file: ids, transactions, queries, pruning,
WAL mode, restarts and migrations."""

import asyncio
import random
import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, inspect, text

from dashboard.storage.recorder import Recorder
from dashboard.storage.store import Store
from tests.helpers import head_revision, opened_store, store_sample


def url_of(path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "data" / "store.db"


@pytest.fixture
def store(db_path, io_loop):
    with opened_store(url_of(db_path), io_loop) as store:
        yield store


def summary(samples) -> list[tuple]:
    return [(s.widget, s.value) for s in samples]


@pytest.mark.gen_test(timeout=30)
async def test_append_hands_out_growing_ids(store):
    first = await store_sample(store, "a", 1)
    second = await store_sample(store, "b", "x", "error", "down")
    batch = await store.append_many([("a", 2, "ok", None), ("c", [1, 2], "ok", None)])
    ids = [first.id, second.id, *(s.id for s in batch)]
    assert ids == sorted(ids) and len(set(ids)) == 4
    assert (second.status, second.message) == ("error", "down")
    assert batch[0].ts == batch[1].ts and batch[0].ts.tzinfo is not None
    assert await store.last_id() == ids[-1]


@pytest.mark.gen_test(timeout=30)
async def test_append_many_is_all_or_nothing(store):
    await store_sample(store, "a", 1)
    published = []
    with pytest.raises(TypeError, match="not JSON serializable"):
        await Recorder(store, published.append).record_many(
            [("a", 2, "ok", None), ("b", {1, 2}, "ok", None)],  # a set has no JSON form
        )
    assert published == []
    assert summary(await store.history("a")) == [("a", 1)]
    assert await store.history("b") == []
    # The store is still usable, and the failed batch took no ids for good.
    after = await store_sample(store, "a", 3)
    assert after.id == 2


# Doubles that SQLite's own reading of decimal text misses by one unit in the last place.
INEXACT_AS_TEXT = [5.519960960058538e-297, *(random.Random(7).uniform(-1, 1) * 10.0**e for e in range(-300, 301, 3))]


@pytest.mark.gen_test(timeout=30)
async def test_every_float_is_stored_as_the_very_same_double(store, db_path):
    """A float is bound as itself, not as text SQLite reads back a unit off: the database
    holds what the stream sent, whether a batch is one INSERT or a transaction of several."""
    small = await store.append_many([("f", value, "ok", None) for value in INEXACT_AS_TEXT[:50]])
    big = await store.append_many([("f", value, "ok", None) for value in INEXACT_AS_TEXT[50:]])  # over CHUNK rows
    assert len(INEXACT_AS_TEXT[50:]) > 100
    stored = [s.value for s in sorted(await store.history("f", limit=1000), key=lambda s: s.id)]
    assert stored == INEXACT_AS_TEXT and [s.value for s in small + big] == INEXACT_AS_TEXT
    with closing(sqlite3.connect(db_path)) as db:
        raw = [v for (v,) in db.execute("SELECT value FROM samples WHERE widget = 'f' ORDER BY id")]
    assert raw == INEXACT_AS_TEXT


@pytest.mark.gen_test(timeout=30)
async def test_the_recorder_publishes_the_committed_samples_in_order(store):
    seen = []
    out = await Recorder(store, seen.append).record_many([("a", 1, "ok", None), ("b", 2, "ok", None)])
    assert seen == [out]
    assert [s.id for s in out] == sorted(s.id for s in out)


@pytest.mark.gen_test(timeout=30)
async def test_latest_is_the_newest_sample_of_each_widget(store):
    for widget, value in [("a", 1), ("b", 2), ("a", 3), ("a", 4), ("b", 5)]:
        await store_sample(store, widget, value)
    await store_sample(store, "a", 4, "error", "down")
    latest = await store.latest(["a", "b", "nothing"])
    assert set(latest) == {"a", "b"}
    assert (latest["a"].value, latest["a"].status, latest["a"].message) == (4, "error", "down")
    assert latest["b"].value == 5
    assert latest["a"].ts.tzinfo is not None


@pytest.mark.gen_test(timeout=30)
async def test_history_since_limit_upto_are_oldest_first(store):
    ids = [(await store_sample(store, "a", value)).id for value in range(10)]
    await store_sample(store, "b", "other widget")
    values = lambda samples: [s.value for s in samples]  # noqa: E731
    assert values(await store.history("a")) == list(range(10))
    assert values(await store.history("a", since=ids[6])) == [7, 8, 9]
    assert values(await store.history("a", limit=3)) == [7, 8, 9]  # the newest three, oldest first
    assert values(await store.history("a", since=ids[1], limit=3)) == [7, 8, 9]
    assert values(await store.history("a", upto=ids[4])) == [0, 1, 2, 3, 4]
    assert values(await store.history("a", since=ids[1], upto=ids[4], limit=2)) == [3, 4]
    assert values(await store.history("a", after=datetime.now(UTC) + timedelta(hours=1))) == []
    assert values(await store.history("a", after=datetime.now(UTC) - timedelta(hours=1))) == list(range(10))
    assert await store.history("nothing") == []


@pytest.mark.gen_test(timeout=30)
async def test_since_is_the_replay_of_several_widgets(store):
    rows = [("a", 1), ("b", 2), ("c", 3), ("a", 4), ("b", 5), ("c", 6)]
    ids = [(await store_sample(store, w, v)).id for w, v in rows]
    got = await store.since(["a", "b"], ids[0], limit=10)
    assert summary(got) == [("b", 2), ("a", 4), ("b", 5)]
    assert summary(await store.since(["a", "b"], ids[0], upto=ids[3], limit=10)) == [("b", 2), ("a", 4)]
    # limit + 1 rows: the caller can tell there were more than it wants to replay.
    assert summary(await store.since(["a", "b", "c"], 0, limit=2)) == [("a", 1), ("b", 2), ("c", 3)]
    assert await store.since(["a"], ids[-1], limit=10) == []


@pytest.mark.gen_test(timeout=30)
async def test_prune_keeps_the_newest_sample_of_each_widget_and_deletes_in_batches(store):
    for value in range(10):
        await store_sample(store, "a", value)
    await store_sample(store, "b", "only one")
    for value in range(3):
        await store_sample(store, "c", value)
    deletes = []

    def count_deletes(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("DELETE"):
            deletes.append(statement)

    event.listen(store.engine.sync_engine, "before_cursor_execute", count_deletes)
    # Everything is older than a cutoff in the future: only each widget's newest stays.
    removed = await store.prune(datetime.now(UTC) + timedelta(days=1), batch=4)
    assert removed == 9 + 2
    assert len(deletes) == 3  # 4 + 4 + 3
    assert summary(await store.history("a")) == [("a", 9)]
    assert summary(await store.history("b")) == [("b", "only one")]
    assert summary(await store.history("c")) == [("c", 2)]
    # Nothing is newer than a cutoff in the past.
    assert await store.prune(datetime.now(UTC) - timedelta(days=1)) == 0
    # Ids keep growing after a prune: the newest row is never deleted.
    last = await store.last_id()
    assert (await store_sample(store, "a", 10)).id == last + 1


@pytest.mark.gen_test(timeout=30)
async def test_sqlite_runs_in_wal_mode(store):
    async with store.engine.connect() as conn:
        assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await conn.execute(text("PRAGMA synchronous"))).scalar() == 1  # NORMAL
        assert (await conn.execute(text("PRAGMA wal_autocheckpoint"))).scalar() == 10_000
    # The writer's own connection sets the same.
    pages = await asyncio.get_running_loop().run_in_executor(
        store.writer._thread, lambda: store.writer._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    )
    assert pages == 10_000


@pytest.mark.gen_test(timeout=30)
async def test_ping(store):
    assert await store.ping() is True


@pytest.mark.gen_test(timeout=30)
async def test_samples_survive_a_restart(db_path):
    store = Store(url_of(db_path))
    await store.open()
    first = await store_sample(store, "a", {"nested": [1, "two", None]})
    await store_sample(store, "b", "x", "error", "down")
    await store.close()

    again = Store(url_of(db_path))
    await again.open()
    try:
        latest = await again.latest(["a", "b"])
        assert latest["a"].value == {"nested": [1, "two", None]}
        assert latest["a"].ts == first.ts
        assert (latest["b"].status, latest["b"].message) == ("error", "down")
        assert (await store_sample(again, "a", 2)).id > latest["b"].id
    finally:
        await again.close()


@pytest.mark.gen_test(timeout=30)
async def test_migrations_run_on_a_fresh_file_and_are_idempotent(db_path):
    assert not db_path.exists()
    store = Store(url_of(db_path))
    await store.open()  # creates the directory and the schema
    await store_sample(store, "a", 1)
    await store.migrate()
    await store.close()
    store = Store(url_of(db_path))
    await store.open()
    await store.close()

    with closing(sqlite3.connect(db_path)) as conn, conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(head_revision(),)]
        assert conn.execute("SELECT count(*) FROM samples").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM rollups").fetchone() == (3,)  # ten seconds, a minute, an hour
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(samples)")}
    assert {"ix_samples_widget_ts", "ix_samples_ts"} <= indexes


@pytest.mark.gen_test(timeout=30)
async def test_open_without_migrate_leaves_the_schema_alone(db_path):
    store = Store(url_of(db_path))
    await store.open(migrate=False)
    try:
        async with store.engine.connect() as conn:
            tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        assert tables == []
    finally:
        await store.close()


@pytest.mark.gen_test(timeout=30)
async def test_an_in_memory_database_is_written_through_the_engines_own_connection():
    # Another connection could not see it: the writer uses the engine's.
    store = Store("sqlite+aiosqlite://")
    await store.open()
    try:
        written = await store.append_many([("a", 1, "ok", None), ("a", 2, "ok", None)])
        assert [s.id for s in written] == [1, 2]
        assert await store.roll_up() == 2
        session = await store.begin_import()
        await session.add([("a", 1_700_000_000_000_000, "5")])
        assert await session.commit({10: 0, 60: 0, 3600: 0}) == 1
        assert [(s.id, s.value) for s in await store.history("a")] == [(-1, 5), (1, 1), (2, 2)]
    finally:
        await store.close()


@pytest.mark.gen_test(timeout=30)
async def test_an_id_never_comes_twice_even_when_the_newest_row_is_gone(store):
    written = await store.append_many([("a", n, "ok", None) for n in range(5)])
    await store.roll_up()
    async with store.engine.begin() as conn:  # retention never does this, but an id must survive it
        await conn.execute(text("DELETE FROM samples WHERE id >= :id"), {"id": written[-2].id})
    assert (await store_sample(store, "a", 99)).id == written[-1].id + 1


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("size", [1, 7, 100, 101, 250])
async def test_each_row_is_stored_under_the_id_handed_back_in_one_statement_or_several(store, size):
    """Up to CHUNK rows are one self-numbered INSERT, more are several in a transaction:
    either way the ids follow the rows' order and each id holds its own row."""
    await store_sample(store, "before", 0)
    rows = [(f"w{n % 13}", n, "error" if n % 5 == 0 else "ok", f"m{n}" if n % 5 == 0 else None) for n in range(size)]
    samples = await store.append_many(rows)
    assert [s.id for s in samples] == list(range(2, 2 + size))
    async with store.engine.connect() as conn:
        stored = (await conn.execute(text("SELECT id, widget, value, status, message FROM samples WHERE id > 1"))).all()
    assert sorted((i, w, int(v), s, m) for i, w, v, s, m in stored) == [
        (sample.id, *row) for sample, row in zip(samples, rows, strict=True)
    ]


@pytest.mark.gen_test(timeout=30)
async def test_a_self_numbered_insert_that_fails_writes_nothing_and_takes_no_id(store):
    await store_sample(store, "a", 1)
    with pytest.raises(sqlite3.IntegrityError):
        await store.append_many([("a", 2, "ok", None), ("b", 3, None, None)])  # status is NOT NULL
    assert summary(await store.history("b")) == [] and summary(await store.history("a")) == [("a", 1)]
    assert (await store_sample(store, "a", 4)).id == 2
