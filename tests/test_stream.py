"""GET /events/<dashboard> on a real server, read by a raw socket client."""

import asyncio
import json
import re
import socket
import sqlite3
import time
from contextlib import closing

import pytest
import tornado.httpserver
import tornado.netutil
from tornado.httpclient import AsyncHTTPClient

from dashboard import __version__
from dashboard.hub import memory
from dashboard.web import stream as stream_module
from dashboard.web.app import make_app
from tests.helpers import (
    StreamClient,
    config_with,
    data,
    ids,
    mixed,
    open_stream,
    page_data,
    read_through,
    record_all,
    wait_until,
)

TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
MAIN = ("a", "b")  # the widgets of dashboard "main"; "other" shows b and c


SMALL_BUFFER = config_with(hub="buffer = 16")


def stream_count(server) -> int:
    return len(server.runtime.streams)


# --- the answer's head and first bytes ---------------------------------------------------


@pytest.mark.gen_test(timeout=20)
async def test_headers_are_exactly_those_of_an_event_stream(servers):
    server = await servers.start()
    client = await StreamClient.open(server.url("/events/main"), headers={"Accept-Encoding": "gzip"})
    assert client.status == 200
    assert client.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert client.headers["cache-control"] == "no-cache"
    assert client.headers["x-accel-buffering"] == "no"
    assert "content-encoding" not in client.headers
    assert "content-length" not in client.headers
    client.close()


@pytest.mark.gen_test(timeout=20)
async def test_the_stream_is_never_gzipped_even_where_responses_are(servers):
    server = await servers.start()
    gzip_app = make_app(server.runtime, compress_response=True)
    http = tornado.httpserver.HTTPServer(gzip_app)
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    http.add_sockets(sockets)
    base = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    try:
        await server.record("b", "x" * 2000)
        # The setting is live on this app: a JSON answer is compressed...
        api = await AsyncHTTPClient().fetch(
            base + "/api/widgets", headers={"Accept-Encoding": "gzip"}, decompress_response=False
        )
        assert api.headers.get("Content-Encoding") == "gzip"
        # ...and the stream is not.
        client = await StreamClient.open(base + "/events/main", headers={"Accept-Encoding": "gzip"})
        assert client.status == 200
        assert "content-encoding" not in client.headers
        event = await client.next_widget_event()
        assert data(event)["value"] == "x" * 2000
        client.close()
    finally:
        http.stop()
        server.runtime.hub.close()
        await wait_until(lambda: not server.runtime.streams, message="streams to end")
        await http.close_all_connections()


@pytest.mark.gen_test(timeout=20)
async def test_opening_is_retry_hello_current_values_then_live_events(servers):
    server = await servers.start()
    a, b, c = await record_all(server, [("a", 1.5), ("b", "x"), ("c", 3)])
    client = await StreamClient.open(server.url("/events/main"))
    hello = await client.next_event()
    assert client.raw.startswith(b"retry: 3000\n\nevent: hello\ndata: ")
    assert client.decoder.retry == 3000
    assert hello.type == "hello" and hello.last_event_id == ""
    assert json.loads(hello.data) == {"server": server.runtime.instance, "version": __version__}

    current = await client.collect(2)
    assert [(e.type, e.last_event_id, data(e)["value"]) for e in current] == [
        ("a", str(a.id), 1.5),
        ("b", str(b.id), "x"),
    ]
    for event in current:
        payload = data(event)
        assert set(payload) == {"widget", "value", "ts", "status"}
        assert payload["widget"] == event.type and payload["status"] == "ok"
        assert TS.fullmatch(payload["ts"])

    await server.record("c", 4)  # dashboard "other" only: never on this stream
    live = [await server.record("a", 2), await server.record("b", "y", "error", "down")]
    events = await client.collect(2)
    assert ids(events) == [s.id for s in live]
    assert ids(events) == sorted(ids(events)) and ids(events)[0] > c.id
    assert data(events[1]) == {
        "widget": "b",
        "value": "y",
        "ts": data(events[1])["ts"],
        "status": "error",
        "message": "down",
    }
    assert b'"widget":"c"' not in client.raw
    client.close()


@pytest.mark.gen_test(timeout=20)
async def test_a_fresh_dashboard_sends_hello_and_nothing_else(servers):
    server = await servers.start()
    client = await open_stream(server)
    sample = await server.record("a", 1)
    event = await client.next_widget_event()
    assert event.last_event_id == str(sample.id)
    assert len(client.events) == 2
    client.close()


@pytest.mark.gen_test(timeout=20)
async def test_unknown_dashboard_is_404_before_any_stream(servers):
    server = await servers.start()
    client = await StreamClient.open(server.url("/events/nope"))
    assert client.status == 404
    assert client.headers["content-type"].startswith("text/html")
    assert stream_count(server) == 0
    client.close()
    response = await AsyncHTTPClient().fetch(server.url("/events/nope"), raise_error=False)
    assert response.code == 404
    assert b"retry:" not in response.body and b"nope" in response.body


# --- resuming ------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["header", "query", "both"])
@pytest.mark.gen_test(timeout=20)
async def test_resume_sends_exactly_what_was_missed(servers, how):
    server = await servers.start()
    samples = await record_all(server, mixed(9))
    main = [s.id for s in samples if s.widget in MAIN]
    last = main[2]
    if how == "header":
        client = await open_stream(server, last_event_id=last)
    elif how == "query":
        client = await open_stream(server, f"/events/main?last_event_id={last}")
    else:  # the header is the browser's own reconnect: it wins over the page's query
        client = await open_stream(server, f"/events/main?last_event_id={main[0]}", last_event_id=last)
    live = await server.record("a", 100)
    events = await read_through(client, live.id)
    assert ids(events) == [*main[3:], live.id]
    client.close()


@pytest.mark.gen_test(timeout=30)
async def test_resume_from_the_database_when_the_buffer_moved_on(servers):
    server = await servers.start(SMALL_BUFFER)
    samples = await record_all(server, mixed(120))
    topic = server.runtime.hub.topic("main")
    main = [s.id for s in samples if s.widget in MAIN]
    last = main[3]
    assert last < topic.floor, "the gap must be older than the buffer"
    client = await open_stream(server, last_event_id=last)
    replayed = await read_through(client, main[-1])
    assert ids(replayed) == main[4:]
    assert [data(e)["value"] for e in replayed] == [v for w, v in mixed(120) if w in MAIN][4:]
    more = await record_all(server, mixed(40, start=120))
    live = await read_through(client, [s.id for s in more if s.widget in MAIN][-1])
    assert ids(live) == [s.id for s in more if s.widget in MAIN]
    client.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_gap_beyond_the_replay_limit_gets_the_newest_value_of_each_widget(servers, monkeypatch):
    monkeypatch.setattr(stream_module, "REPLAY_LIMIT", 5)
    server = await servers.start(SMALL_BUFFER)
    samples = await record_all(server, mixed(120))
    newest = {s.widget: s for s in samples}
    client = await open_stream(server, last_event_id=samples[0].id)
    gap = await client.next_event()
    assert (gap.type, gap.last_event_id, data(gap)) == ("gap", "", {"reason": "too old", "after": samples[0].id})
    snapshot = await client.collect(2)
    assert [(e.type, int(e.last_event_id)) for e in snapshot] == sorted(
        [("a", newest["a"].id), ("b", newest["b"].id)], key=lambda pair: pair[1]
    )
    live = await server.record("a", 1000)
    assert ids([await client.next_widget_event()]) == [live.id]
    client.close()


@pytest.mark.parametrize("last_event_id", ["999999", "9999999999999999999", "abc", "-5", "1e3", "5,6", "１２", "", " "])
@pytest.mark.gen_test(timeout=20)
async def test_an_id_never_issued_gets_the_current_values(servers, last_event_id):
    server = await servers.start()
    a, b, _ = await record_all(server, [("a", 1), ("b", "x"), ("c", 2)])
    client = await open_stream(server, last_event_id=last_event_id.encode("utf-8").decode("latin-1"))
    if last_event_id.strip():  # an id, just not one of ours: the client learns it missed something
        gap = await client.next_event()
        after = {"after": 999999} if last_event_id == "999999" else {}  # what is no id at all is not echoed
        assert (gap.type, data(gap)) == ("gap", {"reason": "unknown id", **after})
    # Then the current values (none at all: a fresh start, which misses nothing).
    assert ids(await client.collect(2)) == [a.id, b.id]
    client.close()


@pytest.mark.gen_test(timeout=30)
async def test_resumes_after_a_restart_while_samples_arrive(servers):
    """Clients reconnect from all sorts of ids while a ticker writes: every one of them
    gets each sample after its id exactly once, whether from memory or the database."""
    server = await servers.start()
    before = await record_all(server, mixed(60))
    await server.stop()
    server = await servers.start()
    writing = asyncio.ensure_future(record_all(server, mixed(150, start=60)))
    points = [0, before[1].id, before[30].id, before[-1].id]
    clients = []
    for last in points:
        clients.append((last, await open_stream(server, last_event_id=last)))
        await asyncio.sleep(0.01)  # let the writer move on between connects
    written = await writing
    everything = [s.id for s in before + written if s.widget in MAIN]
    for last, client in clients:
        got = await read_through(client, everything[-1])
        assert ids(got) == [i for i in everything if i > last], f"resumed from {last}"
        client.close()


@pytest.mark.gen_test(timeout=20)
async def test_samples_survive_a_restart(servers):
    server = await servers.start()
    a, b = await record_all(server, [("a", 7), ("b", "kept")])
    await server.stop()
    server = await servers.start()
    client = await open_stream(server)
    snapshot = await client.collect(2)
    assert [(e.type, int(e.last_event_id), data(e)["value"]) for e in snapshot] == [
        ("a", a.id, 7),
        ("b", b.id, "kept"),
    ]
    after = await server.record("a", 8)
    assert after.id > b.id
    assert ids([await client.next_widget_event()]) == [after.id]
    client.close()


# --- the page's render-to-connect race -----------------------------------------------------


@pytest.mark.gen_test(timeout=20)
async def test_samples_between_render_and_connect_arrive_exactly_once(servers):
    server = await servers.start()
    rendered = await record_all(server, [("a", 1), ("b", "before")])
    page = await AsyncHTTPClient().fetch(server.url("/d/main"))
    block = page_data(page.body.decode())
    assert block["lastEventId"] == rendered[-1].id
    assert block["events"] == "/events/main"
    between = await record_all(server, [("a", 2), ("c", 9), ("b", "between")])
    client = await open_stream(server, f"/events/main?last_event_id={block['lastEventId']}")
    after = await server.record("a", 3)
    events = await read_through(client, after.id)
    assert [(e.type, data(e)["value"]) for e in events] == [("a", 2), ("b", "between"), ("a", 3)]
    assert ids(events) == [between[0].id, between[2].id, after.id]
    client.close()


# --- keep-alive, limits, disconnects, stopping ----------------------------------------------


@pytest.mark.gen_test(timeout=20)
async def test_keepalive_comment_arrives_on_a_quiet_stream(servers):
    server = await servers.start(config_with(keepalive='"200ms"'))
    client = await open_stream(server)
    await client.read_raw_until(b"\n\n: keep-alive\n\n", timeout=5)
    assert client.events[-1].type == "hello"  # a comment is no event
    sample = await server.record("a", 1)
    assert ids([await client.next_widget_event()]) == [sample.id]
    client.close()


@pytest.mark.gen_test(timeout=30)
async def test_no_keepalive_while_events_flow(servers):
    server = await servers.start(config_with(keepalive='"1s"'))
    client = await open_stream(server)
    stream = await server.stream_of(client)
    now = time.monotonic()
    for value in range(25):  # 2.5 s of events 100 ms apart, on a driven clock: never a quiet second
        sample = await server.record("a", value)
        assert ids([await client.next_widget_event()]) == [sample.id]
        now += 0.1
        stream.tick(now)
    assert b"keep-alive" not in client.raw
    client.close()


@pytest.mark.parametrize("how", ["close", "abort"])
@pytest.mark.gen_test(timeout=20)
async def test_a_disconnect_removes_the_stream(servers, how):
    server = await servers.start()
    topic = server.runtime.hub.topic("main")
    staying = await open_stream(server)
    leaving = await open_stream(server)
    await wait_until(lambda: stream_count(server) == 2 and topic.readers == 2, message="two readers")
    getattr(leaving, how)()
    await wait_until(lambda: stream_count(server) == 1 and topic.readers == 1, message="one reader left")
    # The one that stayed is unaffected.
    sample = await server.record("a", 1)
    assert ids([await staying.next_widget_event()]) == [sample.id]
    staying.abort()
    await wait_until(lambda: stream_count(server) == 0 and server.runtime.hub.readers == 0, message="no reader")


@pytest.mark.gen_test(timeout=20)
async def test_a_disconnect_while_events_flow_removes_the_stream(servers):
    server = await servers.start()
    client = await open_stream(server)
    writing = asyncio.ensure_future(record_all(server, mixed(60)))
    await client.next_widget_event()
    client.abort()
    await writing
    await wait_until(lambda: stream_count(server) == 0 and server.runtime.hub.readers == 0, message="no reader")


@pytest.mark.gen_test(timeout=20)
async def test_graceful_stop_says_retry_and_closes(servers):
    server = await servers.start()
    client = await open_stream(server)
    stopping = asyncio.ensure_future(server.stop())
    await client.read_until_closed()
    assert client.closed
    assert re.fullmatch(rb"retry: 3000\n\nevent: hello\ndata: [^\n]*\n\nretry: \d+\n\n", bytes(client.raw))
    assert 1000 <= client.decoder.retry <= 5000
    await stopping


def refused(client: StreamClient) -> bool:
    return re.fullmatch(rb"retry: \d+\n\n", bytes(client.raw)) is not None


async def read_refusal(server, **kwargs) -> StreamClient:
    client = await StreamClient.open_from(server.url("/events/main"), **kwargs)
    assert client.status == 200
    assert client.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert await client.read_until_closed() == []
    assert refused(client), bytes(client.raw)
    assert 1000 <= client.decoder.retry <= 5000
    return client


@pytest.mark.gen_test(timeout=20)
async def test_over_max_streams_the_answer_is_a_retry(servers):
    server = await servers.start(config_with(max_streams="2"))
    first = await open_stream(server)
    second = await open_stream(server, "/events/other")
    await read_refusal(server)
    await read_refusal(server, local_host="127.0.0.2")  # the limit is for all clients
    assert stream_count(server) == 2
    first.close()
    await wait_until(lambda: stream_count(server) == 1, message="a free place")
    third = await open_stream(server)
    assert stream_count(server) == 2
    second.close()
    third.close()


@pytest.mark.gen_test(timeout=20)
async def test_over_max_streams_per_ip_the_answer_is_a_retry(servers):
    server = await servers.start(config_with(max_streams_per_ip="2"))
    clients = [await open_stream(server), await open_stream(server)]
    await read_refusal(server)
    # Another address still gets in.
    other = await StreamClient.open_from(server.url("/events/main"), local_host="127.0.0.2")
    assert (await other.next_event()).type == "hello"
    assert stream_count(server) == 3
    for client in [*clients, other]:
        client.close()


@pytest.mark.gen_test(timeout=60)
async def test_a_slow_client_costs_the_server_constant_memory(servers):
    """A client stops reading while thousands of events go out: the server keeps
    only its cursor (the shared buffer stays bounded) and, when the client reads
    again, sends it the newest value of each widget instead of the backlog."""
    server = await servers.start(SMALL_BUFFER)
    hub = server.runtime.hub
    slow = await StreamClient.open_from(server.url("/events/main"), receive_buffer=4096)
    assert (await slow.next_event()).type == "hello"
    fast = await open_stream(server)
    await wait_until(lambda: stream_count(server) == 2, message="both streams")
    stream = await server.stream_of(slow)
    # Small kernel buffers on both ends, whatever the host's TCP tuning: the backlog
    # then has to wait in the server, where the test can see it.
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    big = "x" * 4000
    published = []
    fast_got = []
    most_buffered = 0
    for batch in range(375):
        # Batches smaller than the ring buffer: a reader that keeps up misses nothing.
        items = [
            ("b", f"{big} {batch}.{n}", "ok", None) if n % 4 else ("a", batch * 10 + n, "ok", None) for n in range(8)
        ]
        published += await server.runtime.recorder.record_many(items)
        for topic in hub.topics.values():
            assert len(topic.ids) <= 32 and len(topic.chunks) <= 32
        fast_got += await read_through(fast, published[-1].id)
        most_buffered = max(most_buffered, len(stream.pending or b""))
    assert ids(fast_got) == [s.id for s in published]
    # What waits in the server's write buffer for the slow client is at most one
    # batch of the shared ring buffer (2 x 16 events), never the 12 MB backlog.
    assert most_buffered <= 2 * 16 * 4100
    stalled_at, _ = stream.sent()
    assert stalled_at < len(published) / 4
    newest = {s.widget: s.id for s in published}
    got = []
    while {"a", "b"} - {e.type for e in got if e.type in newest and int(e.last_event_id) == newest[e.type]}:
        got.append(await slow.next_widget_event(timeout=10))
    gaps = [e for e in got if e.type == "gap"]
    assert gaps and all(data(e) == {"reason": "fell behind"} for e in gaps), "the snapshot says it is one"
    got = [e for e in got if e.type != "gap"]
    received = ids(got)
    assert received == sorted(set(received)), "in order, nothing twice"
    assert len(received) < len(published) / 4, "a snapshot, not the backlog"
    assert sorted(received[-2:]) == sorted(newest.values())
    assert stream.sent()[0] - stalled_at <= 2 + 32
    # And it is live again.
    live = await server.record("a", -1)
    assert ids([await slow.next_widget_event()]) == [live.id]
    slow.close()
    fast.close()


@pytest.mark.gen_test(timeout=20)
async def test_a_replay_the_database_cannot_give_still_opens_the_stream(servers, tmp_path):
    """An EventSource answered with 500 never comes back: when the database fails
    the replay, the stream opens with the newest value of each widget instead."""
    server = await servers.start(SMALL_BUFFER)
    samples = await record_all(server, mixed(120))
    newest = {s.widget: s.id for s in samples}
    with closing(sqlite3.connect(tmp_path / "data" / "test.db")) as db, db:
        db.execute("ALTER TABLE samples RENAME TO samples_away")
    try:
        client = await open_stream(server, last_event_id=samples[0].id)
        assert client.headers["content-type"] == "text/event-stream; charset=utf-8"
        gap = await client.next_event()
        assert (gap.type, data(gap)) == ("gap", {"reason": "database unavailable", "after": samples[0].id})
        assert ids(await client.collect(2)) == sorted([newest["a"], newest["b"]])
    finally:
        with closing(sqlite3.connect(tmp_path / "data" / "test.db")) as db, db:
            db.execute("ALTER TABLE samples_away RENAME TO samples")
    live = await server.record("a", 1)
    assert ids([await client.next_widget_event()]) == [live.id]
    client.close()


@pytest.mark.gen_test(timeout=20)
async def test_a_stream_ends_after_its_lifetime_and_resumes(servers):
    server = await servers.start(config_with(max_stream_lifetime='"300ms"'))
    first = await record_all(server, [("a", 1), ("b", "x")])
    client = await open_stream(server)
    assert ids(await client.collect(2)) == [s.id for s in first]
    await client.read_until_closed()
    await wait_until(lambda: stream_count(server) == 0, message="the stream to end")
    missed = await server.record("a", 2)
    again = await open_stream(server, last_event_id=client.decoder.last_event_id)
    assert ids([await again.next_widget_event()]) == [missed.id]
    again.close()


@pytest.mark.gen_test(timeout=20)
async def test_batching_delivers_every_event_in_order(servers):
    server = await servers.start(config_with(batch='"30ms"'))
    client = await open_stream(server)
    samples = await record_all(server, mixed(30))
    expected = [s.id for s in samples if s.widget in MAIN]
    assert ids(await read_through(client, expected[-1])) == expected
    client.close()


# --- what a client that does not read may cost ------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_a_reader_behind_by_more_bytes_than_the_budget_gets_the_newest_values(servers, monkeypatch):
    """Within the ring buffer by count, but over BACKLOG_BYTES by size: the slow reader
    is sent a gap and the newest value of each widget, not a private copy of the backlog."""
    monkeypatch.setattr(memory, "BACKLOG_BYTES", 40_000)
    server = await servers.start()
    slow = await StreamClient.open_from(server.url("/events/main"), receive_buffer=4096)
    assert (await slow.next_event()).type == "hello"
    await wait_until(lambda: stream_count(server) == 1, message="the stream")
    stream = await server.stream_of(slow)
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    published, most_held = [], 0
    for n in range(200):  # 200 x 4 KB, one at a time: 800 KB behind, 200 events (the buffer holds 1024)
        published.append(await server.record("b", "x" * 4000 + str(n)))
        most_held = max(most_held, len(stream.pending or b""))
    newest = await server.record("a", 7)
    assert most_held <= 40_000 + 2 * 4100  # the budget, and what was in flight when it stalled
    got = []
    while not got or got[-1].type != "a":
        got.append(await slow.next_widget_event(timeout=10))
    gaps = [e for e in got if e.type == "gap"]
    assert gaps and all(data(e) == {"reason": "fell behind"} for e in gaps)
    after_gap = got[max(i for i, e in enumerate(got) if e.type == "gap") + 1 :]
    assert [e.type for e in after_gap] == ["b", "a"]  # the newest of each, not the rest of the 200
    assert len([e for e in got if e.type == "b"]) < 100
    assert int(got[-1].last_event_id) == newest.id
    slow.close()


@pytest.mark.parametrize("config", [config_with(), SMALL_BUFFER], ids=["from memory", "from the database"])
@pytest.mark.gen_test(timeout=60)
async def test_a_replay_over_the_byte_budget_is_a_gap_and_the_newest_values(servers, monkeypatch, config):
    monkeypatch.setattr(stream_module, "BACKLOG_BYTES", 40_000)
    server = await servers.start(config)
    first = await server.record("a", 1)
    for n in range(40):  # 160 KB after `first`
        await server.record("b", "x" * 4000 + str(n))
    last = await server.record("a", 2)
    client = await open_stream(server, last_event_id=first.id)
    gap = await client.next_event()
    assert (gap.type, data(gap)) == ("gap", {"reason": "too old", "after": first.id})
    events = await client.collect(2)
    assert sorted(e.type for e in events) == ["a", "b"] and last.id in ids(events)
    client.close()


@pytest.mark.gen_test(timeout=60)
async def test_an_opening_the_client_does_not_read_is_closed_after_body_timeout(servers):
    """A replay of megabytes (within the backlog's 2 MiB: the kernel's own send buffer
    could take it all) to a client that never reads: closed once body_timeout has
    passed, its memory freed, instead of held until the client leaves."""
    server = await servers.start(config_with(body_timeout='"1s"'))
    first = await server.record("a", 1)
    await server.runtime.recorder.record_many([("b", "y" * 60_000 + str(n), "ok", None) for n in range(32)])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    with closing(sock):
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
        sock.sendall(f"GET /events/main HTTP/1.1\r\nHost: x\r\nLast-Event-ID: {first.id}\r\n\r\n".encode())
        await wait_until(lambda: stream_count(server) == 1, message="the stream opening")
        await wait_until(lambda: stream_count(server) == 0, timeout=15, message="closed after body_timeout")
