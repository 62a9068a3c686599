"""The recorder's group commit, on SQLite and PostgreSQL: callers that arrive together
share a transaction, each returns once its samples are committed, publishing goes in
id order, a caller's items stay all-or-nothing, and one bad caller fails alone."""

from __future__ import annotations

import asyncio

import pytest

from dashboard.storage.recorder import Recorder
from tests.helpers import opened_store


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path, io_loop):
    url = f"sqlite+aiosqlite:///{tmp_path}/recorder.db" if request.param == "sqlite" else None
    with opened_store(url or request.getfixturevalue("pg_url"), io_loop) as store:
        yield store


class Published:
    def __init__(self):
        self.calls: list[list] = []

    def __call__(self, samples) -> None:
        self.calls.append(list(samples))

    @property
    def ids(self) -> list[int]:
        return [s.id for call in self.calls for s in call]


async def stored(store, widget: str) -> list:
    return [s.value for s in await store.history(widget, limit=100_000)]


@pytest.mark.gen_test(timeout=60)
async def test_callers_that_arrive_together_share_a_transaction_and_publish_in_id_order(store):
    published = Published()
    recorder = Recorder(store, published)
    committed_when_returned = []

    async def pusher(widget: str) -> None:
        for n in range(50):
            sample = await recorder.record(widget, n)
            # Returned means committed: the row is there for any other reader.
            committed_when_returned.append(sample.id in {s.id for s in await store.history(widget, limit=1)})

    await asyncio.gather(*(pusher(f"w{i}") for i in range(16)))
    assert recorder.written == 16 * 50
    assert recorder.batches < 16 * 50 / 2  # most transactions carried several callers' samples
    assert all(committed_when_returned)
    assert published.ids == sorted(published.ids) and len(set(published.ids)) == 800
    assert sum(len(call) for call in published.calls) == 800
    for i in range(16):
        assert await stored(store, f"w{i}") == list(range(50))


@pytest.mark.gen_test(timeout=30)
async def test_a_failing_caller_fails_alone_and_its_items_stay_together(store):
    published = Published()
    recorder = Recorder(store, published)
    # Queued in one go, so they are gathered into one transaction; the middle one breaks
    # a NOT NULL constraint in the database itself, which fails that whole transaction.
    good = recorder.submit([("a", 1, "ok", None)])
    bad = recorder.submit([("b", 2, "ok", None), (None, 3, "ok", None)])
    other = recorder.submit([("c", 4, "ok", None), ("c", 5, "ok", None)])
    no_json = recorder.submit([("d", {1, 2}, "ok", None)])  # a set has no JSON form
    results = await asyncio.gather(good, bad, other, no_json, return_exceptions=True)
    assert "null" in str(results[1]).lower(), results[1]  # NOT NULL, in either database's words
    assert isinstance(results[3], TypeError)
    assert [s.value for s in results[0]] == [1]
    assert [s.value for s in results[2]] == [4, 5]
    assert await stored(store, "a") == [1]
    assert await stored(store, "b") == []  # the batch's good item went with its bad one
    assert await stored(store, "c") == [4, 5]
    assert published.ids == sorted(published.ids) == [results[0][0].id, *(s.id for s in results[2])]


@pytest.mark.gen_test(timeout=30)
async def test_a_cancelled_caller_still_gets_its_sample_written(store):
    published = Published()
    recorder = Recorder(store, published)
    waiting = asyncio.ensure_future(recorder.record("a", 1))
    await asyncio.sleep(0)  # queued
    waiting.cancel()
    await recorder.idle()
    assert await stored(store, "a") == [1]
    assert [s.value for s in published.calls[0]] == [1]


@pytest.mark.gen_test(timeout=30)
async def test_publishing_that_fails_does_not_write_twice(store):
    def broken(samples) -> None:
        raise RuntimeError("the hub broke")

    recorder = Recorder(store, broken)
    first, second = await asyncio.gather(recorder.record("a", 1), recorder.record("a", 2))
    assert (first.value, second.value) == (1, 2)
    assert await stored(store, "a") == [1, 2]  # committed once each, not retried one by one
