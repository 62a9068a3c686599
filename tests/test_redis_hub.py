"""The Redis hub on a real redis-server of its own: one subscription per process,
local fan-out through the same topics as the memory hub, and every event exactly
once and in order across Redis restarts, dropped links and id gaps (filled from
the database)."""

import asyncio
import json
import warnings
from datetime import UTC, datetime

import pytest
import redis.asyncio

from dashboard.core.samples import Sample
from dashboard.hub.redis_hub import RedisHub, message_sample, redis_address, redis_client, sample_message
from dashboard.storage.recorder import Recorder
from dashboard.storage.store import Store
from tests.helpers import BASE_CONFIG, StreamClient, data, health, opened_store, store_sample, wait_until

TOPICS = {"main": ("a", "b"), "other": ("b", "c")}


def fill_from(store):
    """What the server hands a hub to fill gaps with: the store's committed samples."""
    return lambda after, upto, limit: store.since(None, after, upto=upto, limit=limit)


@pytest.fixture
def store(tmp_path, io_loop):
    with opened_store(f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}", io_loop) as store:
        yield store


@pytest.fixture
def hubs(io_loop):
    """Start RedisHubs with `await hubs.start(url, store, ...)`; all stopped at teardown."""

    class Hubs(list):
        async def start(self, url, store, *, subscribe=True, origin="", channel="dashboard:events"):
            hub = RedisHub(url, buffer=64, channel=channel, origin=origin, subscribe=subscribe)
            hub.seed(TOPICS, await store.latest(["a", "b", "c"]), await store.last_id())
            self.append(hub)
            await hub.start(fill_from(store))
            return hub

    started = Hubs()
    yield started
    for hub in started:
        hub.close()
        io_loop.run_sync(hub.stop)


def ids_in(hub: RedisHub, topic: str = "main") -> list[int]:
    """Every id the topic's buffer holds (the tests keep below the buffer size)."""
    return [int(i) for i in hub.topic(topic).ids]


async def db_ids(store: Store, widgets=("a", "b")) -> list[int]:
    return [s.id for s in await store.since(widgets, 0, limit=100000)]


# --- the message on the wire -------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        1.5,
        0,
        -7,
        None,
        True,
        "plain",
        "line\nbreak\r\n<script>alert(1)</script>",
        "\u00e9\u4e2d\U0001f600",
        "\ud800 lone surrogate",
        {"nested": [1, {"k": "v"}], "empty": {}},
        [],
        "x" * 100_000,
    ],
)
def test_a_sample_survives_the_message_round_trip(value):
    sample = Sample(
        4711,
        "usd_eur",
        datetime(2026, 11, 21, 10, 15, 2, 120456, tzinfo=UTC),
        value,
        "error",
        'upstream said "no"',
    )
    raw = sample_message(sample, "web-1")
    raw.decode("ascii")  # JSON escapes keep the message ASCII, lone surrogates included
    back, origin = message_sample(raw)
    assert (back, origin) == (sample, "web-1")
    assert back.to_json() == sample.to_json()  # every process encodes the same event bytes


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"[]",
        b'{"id": 1}',
        b'{"id": "x", "widget": "a"}',
        json.dumps({"id": 1, "widget": "a", "ts": "yesterday", "value": 1, "status": "ok", "message": None}).encode(),
    ],
)
def test_a_message_that_is_not_a_sample_raises_a_known_error(raw):
    with pytest.raises((ValueError, KeyError, TypeError)):
        message_sample(raw)


@pytest.mark.parametrize(
    "url, shown",
    [
        ("redis://127.0.0.1:6379/0", "127.0.0.1:6379"),
        ("redis://:s3cret@cache.internal:6380/2", "cache.internal:6380"),
        ("rediss://user:s3cret@cache.internal/0", "cache.internal:6379"),
        ("unix:///run/redis/redis.sock?db=1", "/run/redis/redis.sock"),
    ],
)
def test_log_lines_name_the_redis_server_without_its_password(url, shown):
    assert redis_address(url) == shown


@pytest.mark.gen_test(timeout=30)
async def test_the_client_talks_to_redis_without_a_warning(redis_server):
    # redis-py 8 warns (at every start, in every process) when an asyncio client is
    # handed the synchronous Retry; the warning is made an error here.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        client = redis_client(redis_server.url)
        try:
            assert await client.ping()
        finally:
            await client.aclose()


# --- fan-out through Redis ----------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_a_worker_publishes_and_web_hubs_deliver_once_in_order(redis_server, store, hubs):
    worker = await hubs.start(redis_server.url, store, subscribe=False, origin="worker")
    web1 = await hubs.start(redis_server.url, store, origin="web1")
    web2 = await hubs.start(redis_server.url, store, origin="web2")
    recorder = Recorder(store, worker.publish_all)
    written = [(await recorder.record(widget, n)).id for n, widget in enumerate("abcabcab")]
    main_ids = [i for i, w in zip(written, "abcabcab", strict=True) if w in "ab"]
    other_ids = [i for i, w in zip(written, "abcabcab", strict=True) if w in "bc"]
    for web in (web1, web2):
        await wait_until(lambda web=web: web.last_id == written[-1], timeout=10, message="every event delivered")
        assert ids_in(web, "main") == main_ids
        assert ids_in(web, "other") == other_ids
        assert web.filled == 0  # nothing was missing: the live path carried it all
    # A publisher has no topics of its own to fill: it only sends.
    assert ids_in(worker) == [] and worker.last_id == 0
    # Widget b is on both dashboards: one encoding, shared by both buffers.
    assert web1.topic("main").chunks[1] is web1.topic("other").chunks[0]


@pytest.mark.gen_test(timeout=30)
async def test_a_push_on_a_web_process_reaches_every_web_process_once(redis_server, store, hubs):
    web1 = await hubs.start(redis_server.url, store, origin="web1")
    web2 = await hubs.start(redis_server.url, store, origin="web2")
    # A push lands on web1: its recorder publishes through web1's hub.
    sample = await Recorder(store, web1.publish_all).record("a", 42)
    # Nothing local yet: the echo from Redis is the one delivery.
    assert sample.id not in ids_in(web1)
    for web in (web1, web2):
        await wait_until(lambda web=web: web.last_id == sample.id, timeout=10, message="the push delivered")
    # A second event proves nothing else (a late second copy) was on its way.
    later = await Recorder(store, web2.publish_all).record("a", 43)
    for web in (web1, web2):
        await wait_until(lambda web=web: web.last_id == later.id, timeout=10, message="the second push delivered")
        assert ids_in(web) == [sample.id, later.id]


@pytest.mark.gen_test(timeout=30)
async def test_each_process_holds_one_subscription_whatever_its_readers(redis_server, store, hubs):
    web1 = await hubs.start(redis_server.url, store)
    await hubs.start(redis_server.url, store)
    await hubs.start(redis_server.url, store, subscribe=False)
    web1.topic("main").readers = 500  # readers share the topic; none touches Redis
    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        [(_, subscribers)] = await client.pubsub_numsub("dashboard:events")
    finally:
        await client.aclose()
    assert subscribers == 2


# --- holes: filled from the database -------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_an_id_jump_is_filled_from_the_database(redis_server, store, hubs):
    web = await hubs.start(redis_server.url, store)
    publisher = await hubs.start(redis_server.url, store, subscribe=False)
    # Two samples committed whose publish never happened (a process died in between)...
    lost = [await store_sample(store, "a", 1), await store_sample(store, "b", 2)]
    # ...then one that was published.
    sample = await Recorder(store, publisher.publish_all).record("a", 3)
    await wait_until(lambda: web.last_id == sample.id, timeout=10, message="the published sample")
    assert ids_in(web) == [lost[0].id, lost[1].id, sample.id]
    assert web.filled == 2


@pytest.mark.gen_test(timeout=30)
async def test_samples_published_out_of_order_are_delivered_in_order_once(redis_server, store, hubs):
    web = await hubs.start(redis_server.url, store)
    first, second = await store_sample(store, "a", 1), await store_sample(store, "a", 2)
    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        # Two writers: the later id reaches Redis before the earlier one.
        await client.publish("dashboard:events", sample_message(second, "worker"))
        await client.publish("dashboard:events", sample_message(first, "web"))
        third = await store_sample(store, "a", 3)
        await client.publish("dashboard:events", sample_message(third, "worker"))
    finally:
        await client.aclose()
    await wait_until(lambda: web.last_id == third.id, timeout=10, message="the third sample")
    assert ids_in(web) == [first.id, second.id, third.id]


@pytest.mark.gen_test(timeout=30)
async def test_a_stranger_on_the_channel_is_ignored(redis_server, store, hubs):
    web = await hubs.start(redis_server.url, store)
    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        await client.publish("dashboard:events", b"hello from another program")
        sample = await store_sample(store, "a", 1)
        await client.publish("dashboard:events", sample_message(sample, "worker"))
    finally:
        await client.aclose()
    await wait_until(lambda: web.last_id == sample.id, timeout=10, message="the sample after the stranger")
    assert ids_in(web) == [sample.id] and web.linked


@pytest.mark.gen_test(timeout=90)
async def test_a_redis_restart_loses_nothing_and_repeats_nothing(redis_server, store, hubs):
    worker = await hubs.start(redis_server.url, store, subscribe=False, origin="worker")
    web = await hubs.start(redis_server.url, store, origin="web")
    recorder = Recorder(store, worker.publish_all)

    async def record(count: int) -> None:
        for n in range(count):
            await recorder.record("ab"[n % 2], n)
            await asyncio.sleep(0.005)  # a ticker's pace, so that the outage falls mid-stream

    await record(20)
    redis_server.kill()
    await wait_until(lambda: not web.linked, timeout=10, message="the hub noticing Redis is gone")
    await record(20)  # stored, not published: Redis is down
    redis_server.start()
    await record(20)
    expected = await db_ids(store)
    assert len(expected) == 60
    await wait_until(lambda: web.last_id == expected[-1], timeout=30, message="every event after the restart")
    assert ids_in(web) == expected  # none missing, none twice, in order
    assert web.linked and web.filled > 0


@pytest.mark.gen_test(timeout=60)
async def test_a_hub_started_while_redis_is_down_catches_up_when_it_comes(redis_server, store, hubs):
    redis_server.kill()
    web = await hubs.start(redis_server.url, store)
    assert not web.linked
    before = await store_sample(store, "a", 1)
    redis_server.start()
    await wait_until(lambda: web.linked, timeout=20, message="the subscription")
    await wait_until(lambda: web.last_id == before.id, timeout=10, message="the catch-up")
    assert ids_in(web) == [before.id]


# --- through the real server: clients on two processes -----------------------------


def redis_config(url: str, directory) -> str:
    return BASE_CONFIG.replace("[storage]", f'[hub]\nbackend = "redis"\nurl = "{url}"\n\n[storage]').replace(
        "sqlite+aiosqlite:///data/test.db", f"sqlite+aiosqlite:///{directory}/shared.db"
    )


@pytest.mark.gen_test(timeout=90)
async def test_clients_of_two_servers_get_every_event_across_a_redis_restart(redis_server, servers, tmp_path):
    config = redis_config(redis_server.url, tmp_path)
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = await servers.start(config, directory=tmp_path / "one", role="web")
    two = await servers.start(config, directory=tmp_path / "two", role="web")
    clients = [await StreamClient.open(server.url("/events/main")) for server in (one, two) for _ in range(3)]
    for client in clients:
        assert (await client.next_event()).type == "hello"

    written = []

    async def push(server, count: int) -> None:
        for n in range(count):
            written.append((await server.record("a", n)).id)
            await asyncio.sleep(0.005)

    await push(one, 10)
    await push(two, 10)
    redis_server.kill()
    await wait_until(
        lambda: not one.runtime.hub.linked and not two.runtime.hub.linked,
        timeout=10,
        message="both hubs noticing Redis is gone",
    )
    await push(one, 10)
    redis_server.start()
    await push(two, 10)
    for client in clients:
        events = await client.collect(len(written), timeout=30)
        assert [int(e.last_event_id) for e in events] == written
        assert [data(e)["value"] for e in events] == [n % 10 for n in range(40)]
    for client in clients:
        client.close()


@pytest.mark.gen_test(timeout=90)
async def test_healthz_says_how_the_link_to_redis_is_doing_and_stays_200_without_it(redis_server, servers, tmp_path):
    server = await servers.start(redis_config(redis_server.url, tmp_path), directory=tmp_path, role="web")
    code, body = await health(server)
    assert code == 200
    assert body["hub"] == {
        "backend": "redis",
        "redis": redis_address(redis_server.url),
        "channel": "dashboard:events",
        "subscribed": True,
        "publishing": True,
        "queued": 0,
        "dropped": 0,
        "filled": 0,
    }
    redis_server.kill()
    await server.record("a", 1)  # stored; its publish waits for Redis

    async def link_is(subscribed, publishing):
        code, body = await health(server)
        assert code == 200 and body["ready"]  # pages and the database are fine
        return (body["hub"]["subscribed"], body["hub"]["publishing"]) == (subscribed, publishing)

    await wait_until(lambda: link_is(False, False), timeout=20, interval=0.1, message="/healthz showing Redis gone")
    assert (await health(server))[1]["hub"]["queued"] == 1
    redis_server.start()
    await wait_until(lambda: link_is(True, True), timeout=30, interval=0.1, message="/healthz showing Redis back")
    assert (await health(server))[1]["hub"]["queued"] == 0


@pytest.mark.gen_test(timeout=90)
async def test_a_page_resuming_from_an_id_this_process_has_not_heard_of_yet_goes_on_from_it(
    redis_server, servers, tmp_path
):
    server = await servers.start(redis_config(redis_server.url, tmp_path), directory=tmp_path, role="web")
    hub = server.runtime.hub
    before = await server.record("a", "before")
    await wait_until(lambda: hub.last_id == before.id, timeout=10, message="the sample, via Redis")
    redis_server.kill()
    await wait_until(lambda: not hub.linked, timeout=10, message="the hub noticing Redis is gone")
    seen = await server.record("a", "seen")  # as if another process's page got this one
    after = await server.record("a", "after")
    assert hub.last_id == before.id  # this process has heard of neither yet
    client = await StreamClient.open(server.url("/events/main"), last_event_id=seen.id)
    assert (await client.next_event()).type == "hello"
    redis_server.start()
    # Not the newest values this process knows (older than what the page shows), not `seen`
    # again: what came after it, once this process has heard of it.
    got = await client.next_widget_event(timeout=30)
    assert (int(got.last_event_id), data(got)["value"]) == (after.id, "after")
    client.close()
