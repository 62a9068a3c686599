"""The store on a real PostgreSQL database (a fresh one per test): the same Alembic
migrations and the same queries as on SQLite, and ids that become visible in order
when several processes write at once."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect, text

from dashboard.core.events import Reload
from dashboard.storage.store import Store
from tests.helpers import head_revision, store_sample


@pytest.fixture
def pg_store(pg_url, io_loop):
    store = Store(pg_url)
    io_loop.run_sync(store.open)
    yield store
    io_loop.run_sync(store.close)


@pytest.mark.gen_test(timeout=20)
async def test_migrations_build_the_schema_on_postgresql(pg_store):
    async with pg_store.engine.connect() as conn:
        assert conn.dialect.name == "postgresql"
        version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        indexes = await conn.run_sync(lambda sync: {i["name"] for i in inspect(sync).get_indexes("samples")})
        id_type = await conn.run_sync(
            lambda sync: {c["name"]: str(c["type"]) for c in inspect(sync).get_columns("samples")}["id"]
        )
    assert version == head_revision()
    assert {"samples", "rollups", "alerts", "alembic_version"} <= set(tables)
    assert {"ix_samples_widget_ts", "ix_samples_ts"} <= indexes
    assert id_type == "BIGINT"
    # Migrating again (the next process to start) changes nothing.
    await pg_store.migrate()


@pytest.mark.gen_test(timeout=20)
async def test_store_operations_on_postgresql(pg_store):
    first = await store_sample(pg_store, "a", 1.5)
    batch = await pg_store.append_many(
        [
            ("b", {"nested": [1, "two", None]}, "ok", None),
            ("a", "line\nbreak <script> \u00e9 \U0001f600", "ok", None),
            ("a", None, "error", "source down"),
        ]
    )
    ids = [first.id, *(s.id for s in batch)]
    assert ids == sorted(ids) and len(set(ids)) == 4
    assert await pg_store.last_id() == ids[-1]

    latest = await pg_store.latest(["a", "b", "none"])
    assert set(latest) == {"a", "b"}
    assert (latest["a"].id, latest["a"].status, latest["a"].message) == (ids[3], "error", "source down")
    assert latest["b"].value == {"nested": [1, "two", None]}
    assert latest["b"].ts.tzinfo is not None

    history = await pg_store.history("a")
    assert [(s.id, s.value) for s in history] == [
        (ids[0], 1.5),
        (ids[2], "line\nbreak <script> \u00e9 \U0001f600"),
        (ids[3], None),
    ]
    assert [s.id for s in await pg_store.history("a", limit=2)] == [ids[2], ids[3]]
    assert [s.id for s in await pg_store.history("a", since=ids[0], upto=ids[2])] == [ids[2]]

    assert [s.id for s in await pg_store.since(["a", "b"], ids[0], limit=10)] == ids[1:]
    assert [s.id for s in await pg_store.since(["b"], 0, limit=10)] == [ids[1]]
    assert len(await pg_store.since(["a", "b"], 0, limit=2)) == 3  # limit + 1: "there is more"
    assert [s.id for s in await pg_store.since(["a", "b"], 0, upto=ids[1], limit=10)] == ids[:2]
    await store_sample(pg_store, "hidden", 1)  # a widget no dashboard shows (None: every widget)
    assert [s.widget for s in await pg_store.since(None, ids[3], limit=10)] == ["hidden"]


@pytest.mark.gen_test(timeout=20)
async def test_prune_keeps_the_newest_of_each_widget_on_postgresql(pg_store):
    for value in range(5):
        await store_sample(pg_store, "a", value)
    await store_sample(pg_store, "b", "only")
    future = datetime.now(UTC) + timedelta(minutes=1)
    assert await pg_store.prune(future, batch=2) == 4
    assert [s.value for s in await pg_store.history("a")] == [4]
    assert [s.value for s in await pg_store.history("b")] == ["only"]
    assert await pg_store.prune(future) == 0


@pytest.mark.gen_test(timeout=60)
async def test_concurrent_writers_commit_ids_in_order(pg_url):
    """Two stores (two engines: as two processes would) write at once while a reader
    follows with since(cursor) the way a hub fills gaps. Had a later id become
    visible before an earlier one, the reader's cursor would pass the earlier one and
    the final tally would miss it."""
    writers = [Store(pg_url), Store(pg_url)]
    reader = Store(pg_url)
    for store in (*writers, reader):
        await store.open(migrate=store is writers[0])
    try:
        written: list[int] = []
        seen: list[int] = []
        done = asyncio.Event()

        async def write(store: Store, widget: str) -> None:
            for value in range(150):
                written.extend(s.id for s in await store.append_many([(widget, value, "ok", None)] * 2))

        async def follow() -> None:
            cursor = 0
            while True:
                finished = done.is_set()
                rows = await reader.since(["w0", "w1"], cursor, limit=1000)
                for sample in rows:
                    seen.append(sample.id)
                    cursor = sample.id
                if finished and not rows:
                    return
                await asyncio.sleep(0)

        follower = asyncio.create_task(follow())
        await asyncio.gather(*(write(store, f"w{n}") for n, store in enumerate(writers)))
        done.set()
        await follower
        assert len(written) == 600
        assert seen == sorted(written)
    finally:
        for store in (*writers, reader):
            await store.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_stream_resumes_from_postgresql_after_a_control_event(servers, pg_url):
    # Replay from PostgreSQL when the gap is older than the buffer, with a control
    # event (reload) in the buffer: it sits a fraction past the newest sample id.
    from tests.helpers import BASE_CONFIG, StreamClient

    config = BASE_CONFIG.replace('url = "sqlite+aiosqlite:///data/test.db"', f'url = "{pg_url}"')
    config = config.replace("[storage]", "[hub]\nbuffer = 16\n\n[storage]")
    server = await servers.start(config)
    first = await server.record("a", 0)
    missed = [await server.record("a", n) for n in range(1, 60)]  # more than the buffer holds
    server.runtime.hub.send_control("main", Reload())
    client = await StreamClient.open(server.url("/events/main"), last_event_id=first.id)
    events = [await client.next_widget_event() for _ in missed]
    assert [int(e.last_event_id) for e in events] == [s.id for s in missed]
    client.close()
