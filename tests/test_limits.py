"""The limits that protect a server with thousands of open streams, on a real
server: stream counts (all clients, per address), the stream lifetime, the TCP
options of stream sockets, and the fan-out staying correct when clients vanish,
speak HTTP/1.0, or come in hundreds."""

import asyncio
import re
import socket

import pytest

from dashboard.core.sse import decode
from dashboard.web import stream as stream_module
from tests.helpers import StreamClient, config_with, data, wait_until


async def open_stream(server, path="/events/main", *, local_host="127.0.0.1", **kwargs) -> StreamClient:
    client = await StreamClient.open_from(server.url(path), local_host=local_host, **kwargs)
    assert client.status == 200
    assert (await client.next_event()).type == "hello"
    return client


async def assert_refused(server, *, local_host="127.0.0.1") -> None:
    """200, an event stream, a jittered retry and nothing else, then the server closes."""
    client = await StreamClient.open_from(server.url("/events/main"), local_host=local_host)
    assert client.status == 200
    assert client.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert await client.read_until_closed() == []
    assert re.fullmatch(rb"retry: \d+\n\n", bytes(client.raw)), bytes(client.raw)
    assert 1000 <= client.decoder.retry <= 5000


async def raw_request(server, request: bytes):
    """A request written by hand on a fresh connection: the reader, the writer and the
    answer's head."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(request)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    return reader, writer, head


def counts(server) -> dict:
    return dict(server.runtime.streams_per_ip)


# --- how many streams ----------------------------------------------------------------------


@pytest.mark.parametrize("limit, others_get_in", [("max_streams", False), ("max_streams_per_ip", True)])
@pytest.mark.gen_test(timeout=30)
async def test_over_a_stream_limit_the_answer_is_a_retry_and_a_close(servers, limit, others_get_in):
    server = await servers.start(config_with(**{limit: "2"}))
    kept = [await open_stream(server), await open_stream(server, "/events/other")]
    await assert_refused(server)
    await assert_refused(server)  # a refusal does not take a place either
    if others_get_in:
        other = await open_stream(server, local_host="127.0.0.2")
        kept.append(other)
    else:
        await assert_refused(server, local_host="127.0.0.2")
    assert len(server.runtime.streams) == len(kept)
    kept.pop(0).close()
    await wait_until(lambda: len(server.runtime.streams) == len(kept), message="a place to free up")
    kept.append(await open_stream(server))
    sample = await server.record("b", "on both dashboards")
    for client in kept:
        event = await client.next_widget_event()
        assert (event.type, int(event.last_event_id)) == ("b", sample.id)
        client.close()


@pytest.mark.gen_test(timeout=30)
async def test_the_per_address_count_follows_every_open_and_close(servers):
    server = await servers.start(config_with(max_streams_per_ip="3"))
    first = [await open_stream(server) for _ in range(3)]
    second = [await open_stream(server, local_host="127.0.0.2") for _ in range(2)]
    assert counts(server) == {"127.0.0.1": 3, "127.0.0.2": 2}
    await assert_refused(server)
    assert counts(server) == {"127.0.0.1": 3, "127.0.0.2": 2}
    first[0].close()
    first[1].abort()
    second[0].abort()
    await wait_until(lambda: counts(server) == {"127.0.0.1": 1, "127.0.0.2": 1}, message="closes counted")
    for client in (first[2], second[1]):
        client.close()
    # No address is kept once its last stream is gone: the table is as big as what is open.
    await wait_until(lambda: counts(server) == {} and not server.runtime.streams, message="an empty table")


class StreamsThatMustNotBeScanned(set):
    def __iter__(self):
        raise AssertionError("the limits must not walk every open stream")


@pytest.mark.gen_test(timeout=30)
async def test_checking_the_limits_does_not_walk_the_open_streams(servers):
    server = await servers.start(config_with(max_streams_per_ip="2"))
    server.runtime.streams = StreamsThatMustNotBeScanned()
    clients = [await open_stream(server), await open_stream(server)]
    await assert_refused(server)
    clients.append(await open_stream(server, local_host="127.0.0.2"))
    assert len(server.runtime.streams) == 3
    for client in clients:
        client.close()
    await wait_until(lambda: not server.runtime.streams and counts(server) == {}, message="all gone")


# --- how long a stream lives -----------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_a_stream_ends_by_itself_after_its_lifetime_and_a_reconnect_resumes(servers):
    server = await servers.start(config_with(max_stream_lifetime='"500ms"', keepalive='"10s"'))
    client = await open_stream(server)
    seen = await server.record("a", 1)
    assert int((await client.next_widget_event()).last_event_id) == seen.id
    assert await client.read_until_closed(timeout=10) == []
    await wait_until(lambda: not server.runtime.streams and counts(server) == {}, message="the stream to be gone")
    missed = [await server.record("a", 2), await server.record("b", "while away")]
    again = await open_stream(server, last_event_id=client.decoder.last_event_id)
    resumed = [await again.next_widget_event(), await again.next_widget_event()]
    assert [int(e.last_event_id) for e in resumed] == [s.id for s in missed]
    assert [data(e)["value"] for e in resumed] == [2, "while away"]
    again.close()


@pytest.mark.gen_test(timeout=30)
async def test_streams_opened_together_end_spread_out(servers):
    """The lifetime is jittered, so a wall of screens does not reconnect at once:
    each stream draws its own end within the last 15% of the lifetime."""
    server = await servers.start(config_with(max_stream_lifetime='"1h"'))
    clients = [await open_stream(server) for _ in range(5)]
    streams = [await server.stream_of(client) for client in clients]
    lifetimes = [s.deadline - s.last_write for s in streams]  # no write since the opening
    assert all(0.85 * 3600 <= lifetime <= 3600 for lifetime in lifetimes)
    assert len(set(lifetimes)) == 5
    for client in clients:
        client.close()


# --- the sockets of streams ---------------------------------------------------------------


@pytest.mark.skipif(
    not all(hasattr(socket, o) for o in ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT")),
    reason="TCP keepalive timing options are Linux-only",
)
@pytest.mark.gen_test(timeout=30)
async def test_stream_sockets_have_tcp_keepalive_no_nagle_and_a_bounded_send_buffer(servers):
    server = await servers.start()
    client = await open_stream(server)
    sock = (await server.stream_of(client)).socket
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == stream_module.TCP_KEEPALIVE_IDLE
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == stream_module.TCP_KEEPALIVE_INTERVAL
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == stream_module.TCP_KEEPALIVE_COUNT
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    # Linux reports twice the value set (its bookkeeping); never the 4 MB it would grow to.
    assert (
        stream_module.STREAM_SEND_BUFFER
        <= sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        <= 2 * stream_module.STREAM_SEND_BUFFER
    )
    client.close()


@pytest.mark.gen_test(timeout=30)
async def test_other_answers_keep_their_sockets_as_they_were(servers):
    """Only event streams are tuned: a page or an API answer on a kept-alive connection is not."""
    server = await servers.start()
    _, writer, head = await raw_request(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 ")
    port = writer.get_extra_info("sockname")[1]
    (connection,) = [c for c in server.server.http._connections if c.stream.socket.getpeername()[1] == port]
    assert connection.stream.socket.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
    writer.close()


# --- the fan-out, under the conditions that matter at scale ----------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_hundreds_of_streams_get_every_event_once_in_order(servers):
    server = await servers.start(config_with(max_streams_per_ip="1000", batch='"20ms"'))
    clients = [await open_stream(server, "/events/main" if n % 4 else "/events/other") for n in range(200)]
    published = []
    for burst in range(10):
        published += await server.runtime.recorder.record_many(
            [
                ("abc"[(burst + n) % 3], f"{burst}.{n}" if (burst + n) % 3 == 1 else burst * 10 + n, "ok", None)
                for n in range(6)
            ]
        )
    expected = {
        "main": [s.id for s in published if s.widget in ("a", "b")],
        "other": [s.id for s in published if s.widget in ("b", "c")],
    }
    for n, client in enumerate(clients):
        want = expected["main" if n % 4 else "other"]
        got = [int((await client.next_widget_event()).last_event_id) for _ in want]
        assert got == want, f"client {n}"
    for client in clients:
        client.close()


@pytest.mark.gen_test(timeout=60)
async def test_clients_that_vanish_do_not_disturb_the_others(servers):
    server = await servers.start(config_with(max_streams_per_ip="1000"))
    staying = [await open_stream(server) for _ in range(10)]
    leaving = [await open_stream(server) for _ in range(10)]
    for client in leaving:
        client.abort()  # a reset the server has not seen yet when it next writes
    first = await server.record("a", 1)
    second = await server.record("a", 2)
    for client in staying:
        got = [int((await client.next_widget_event()).last_event_id) for _ in range(2)]
        assert got == [first.id, second.id]
    await wait_until(
        lambda: (
            len(server.runtime.streams) == 10
            and server.runtime.hub.readers == 10
            and counts(server) == {"127.0.0.1": 10}
        ),
        message="the vanished streams gone",
    )
    for client in staying:
        client.close()


@pytest.mark.gen_test(timeout=30)
async def test_an_http_1_0_client_gets_the_events_unchunked(servers):
    server = await servers.start()
    reader, writer, head = await raw_request(server, b"GET /events/main HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n")
    assert re.match(rb"HTTP/1\.[01] 200 ", head) and b"chunked" not in head.lower()
    await wait_until(lambda: server.runtime.hub.topic("main").subscribers, message="the stream to subscribe")
    samples = [await server.record("a", 1), await server.record("b", "two")]
    body = b""
    while body.count(b"\n\n") < 4:  # retry, hello, two events
        body += await asyncio.wait_for(reader.read(65536), 10)
    assert body.startswith(b"retry: 3000\n\nevent: hello\n")
    events = [e for e in decode(body) if e.type != "hello"]
    assert [(e.type, int(e.last_event_id)) for e in events] == [("a", samples[0].id), ("b", samples[1].id)]
    writer.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_stream_that_ends_ends_its_chunked_answer_properly_and_closes(servers):
    """After its lifetime the answer ends as HTTP/1.1 says (the zero-length chunk), so that
    a proxy sees a complete answer, and the connection closes: the stream left Tornado's
    hands at its opening, so it is not kept alive for another request."""
    server = await servers.start(config_with(max_stream_lifetime='"300ms"'))
    reader, writer, head = await raw_request(
        server, b"GET /events/main HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
    )
    assert b"transfer-encoding: chunked" in head.lower()
    body = await asyncio.wait_for(reader.read(), 10)  # until the server closes
    assert body.endswith(b"\r\n0\r\n\r\n")
    chunks, rest = [], body
    while rest:
        size, _, rest = rest.partition(b"\r\n")
        chunks.append(rest[: int(size, 16)])
        assert rest[int(size, 16) : int(size, 16) + 2] == b"\r\n"
        rest = rest[int(size, 16) + 2 :]
    assert chunks[-1] == b"" and decode(b"".join(chunks))[0].type == "hello"
    await wait_until(lambda: not server.runtime.streams, message="the stream to be gone")
    writer.close()
