"""Retention: old samples go, in batches that let writers in; each widget keeps its newest."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from dashboard.config import load_config
from dashboard.storage.retention import Pruner
from dashboard.storage.schema import rollups, samples
from dashboard.storage.store import Store
from tests.helpers import BASE_CONFIG, opened_store, store_sample, wait_until, write_config

FAST_PRUNING = BASE_CONFIG.replace(
    'url = "sqlite+aiosqlite:///data/test.db"',
    'url = "sqlite+aiosqlite:///data/test.db"\nretention = "1ms"\nprune_every = "20ms"',
)


@pytest.fixture
def store(tmp_path, io_loop):
    with opened_store(f"sqlite+aiosqlite:///{tmp_path}/retention.db", io_loop) as store:
        yield store


async def count(store: Store, widget: str | None = None) -> int:
    query = select(func.count()).select_from(samples)
    if widget is not None:
        query = query.where(samples.c.widget == widget)
    async with store.engine.connect() as conn:
        return (await conn.execute(query)).scalar()


async def insert_old(store: Store, rows: int, widgets: int, age: timedelta) -> None:
    ts = datetime.now(UTC) - age
    async with store.engine.begin() as conn:
        await conn.execute(
            samples.insert(), [dict(widget=f"w{i % widgets}", ts=ts, value=i, status="ok") for i in range(rows)]
        )


@pytest.mark.gen_test(timeout=30)
async def test_a_round_deletes_what_is_older_than_retention_but_each_widgets_newest(store, tmp_path):
    config = load_config(write_config(tmp_path, BASE_CONFIG.replace("[storage]", '[storage]\nretention = "1h"')))
    for value in range(5):
        await store_sample(store, "a", value)
        await store_sample(store, "b", f"text {value}")
    newest = await store.latest(["a", "b"])
    pruner = Pruner(store, lambda: config)
    assert await pruner.prune_once() == 0  # nothing is an hour old yet
    later = Pruner(store, lambda: config, now=lambda: datetime.now(UTC) + timedelta(hours=2))
    assert await later.prune_once() == 8
    assert await store.latest(["a", "b"]) == newest
    assert await count(store) == 2
    # Ids keep growing after a prune.
    assert (await store_sample(store, "a", 99)).id > max(s.id for s in newest.values())


@pytest.mark.gen_test(timeout=60)
async def test_pruning_lets_writers_in_between_batches(store, tmp_path):
    config = load_config(write_config(tmp_path, BASE_CONFIG))
    await insert_old(store, 20_000, widgets=7, age=timedelta(days=60))
    pruning = asyncio.ensure_future(Pruner(store, lambda: config).prune_once())
    finished_while_pruning = []
    for value in range(20):
        await store_sample(store, "a", value)
        finished_while_pruning.append(not pruning.done())
    assert await pruning == 20_000 - 7
    # Each write waited for one batch (500 rows) at most, never for the whole prune.
    assert all(finished_while_pruning)
    assert await count(store) == 7 + 20
    assert set((await store.latest([f"w{i}" for i in range(7)])).keys()) == {f"w{i}" for i in range(7)}


@pytest.mark.gen_test(timeout=30)
async def test_the_server_prunes_on_schedule_and_stops_pruning_when_it_stops(servers):
    server = await servers.start(FAST_PRUNING)
    for value in range(10):
        await server.record("a", value)
    pruner = server.server.pruner
    rounds = pruner.rounds
    await wait_until(lambda: pruner.rounds >= rounds + 2, message="two pruning rounds")
    store = server.runtime.store
    assert await count(store, "a") == 1
    assert (await store.latest(["a"]))["a"].value == 9
    await server.stop()
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "retention"]


@pytest.mark.gen_test(timeout=30)
async def test_rollups_are_kept_longer_than_samples_each_tier_as_long_as_configured(store, tmp_path):
    config = load_config(
        write_config(
            tmp_path,
            BASE_CONFIG.replace(
                "[storage]",
                '[storage]\nretention = "1d"\nretention_10s = "1d"\nretention_1m = "3d"\nretention_1h = "10d"',
            ),
        )
    )
    now = datetime.now(UTC)
    for days in (0.25, 2, 5, 20):  # one sample each, that long ago
        await store.commit([store.encode([("a", days, "ok", None)])], ts=now - timedelta(days=days))
    await store.roll_up()
    pruner = Pruner(store, lambda: config, now=lambda: now)
    assert await pruner.prune_once() == 3  # all samples but a's newest, of six hours ago

    async def buckets(step: int) -> list[float]:
        async with store.engine.connect() as conn:
            rows = await conn.execute(select(rollups.c.bucket).where(rollups.c.step == step).order_by(rollups.c.bucket))
            return [round((now.timestamp() - bucket) / 86400) for bucket in rows.scalars()]

    assert await buckets(10) == [0]  # ten seconds: a day
    assert await buckets(60) == [2, 0]  # minutes: 3 days
    assert await buckets(3600) == [5, 2, 0]  # hours: 10 days
    assert pruner.pruned_rollups == 3 + 2 + 1
