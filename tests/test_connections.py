"""Connections that never finish their request: time limits for a request's head and
body, a bound on connections still sending one, 431 for a head over the limit, and a
server out of file descriptors that keeps serving, answers /healthz and logs a few
counted lines instead of a traceback per accept() (service/connections.py).

Open event streams are long-lived on purpose: none of these limits applies to them."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import time

import pytest

from dashboard.config import load_config
from tests.helpers import BASE_CONFIG, TOKEN, StreamClient, config_with, wait_until
from tests.process import ServerProcess
from tests.webclient import WebClient

PUSH_HEAD = (
    "POST /api/widgets/a HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
    "Content-Type: application/json\r\n{framing}\r\n"
)


async def half_request(port: int, data: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    return reader, writer


async def closed_by_server(reader: asyncio.StreamReader, timeout: float) -> bytes:
    """What the server said before it closed the connection; fails if it did not within `timeout`."""
    received = b""
    deadline = time.monotonic() + timeout
    while True:
        try:
            piece = await asyncio.wait_for(reader.read(65536), max(0.01, deadline - time.monotonic()))
        except ConnectionResetError:
            return received
        except TimeoutError:
            raise AssertionError(f"still open after {timeout}s; got {received[:80]!r}") from None
        if not piece:
            return received
        received += piece


async def raw_exchange(port: int, data: bytes) -> bytes:
    reader, writer = await half_request(port, data)
    try:
        return await closed_by_server(reader, 10)
    finally:
        writer.close()


# --- in process -----------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_a_head_over_the_limit_is_answered_431_whole_or_in_pieces(servers):
    server = await servers.start(config_with(max_header='"4KiB"'))
    for padding in (5000, 300_000):  # read at once, and over many reads
        answer = await raw_exchange(
            server.port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * padding + b"\r\n\r\n"
        )
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 431 "), answer[:100]
        assert b"Referrer-Policy: no-referrer" in head and b"X-Content-Type-Options: nosniff" in head
        assert json.loads(body) == {"error": "request head too large: at most 4096 bytes ([server] max_header)"}
    fits = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Padding: " + b"a" * 2048 + b"\r\n\r\n"
    assert (await raw_exchange(server.port, fits)).startswith(b"HTTP/1.1 200")


@pytest.mark.gen_test(timeout=60)
async def test_a_head_or_a_body_that_never_ends_is_cut_off_and_counted_in_one_line(servers, caplog):
    server = await servers.start(config_with(header_timeout='"1s"', body_timeout='"1s"'))
    caplog.set_level("INFO", "dashboard.connections")
    server.server.http.closings.every = 0.5  # the interval of the summary lines, shortened
    heads = [await half_request(server.port, b"GET /d/main HTTP/1.1\r\nHost: x\r\n") for _ in range(5)]
    chunked = PUSH_HEAD.format(token=TOKEN, framing="Transfer-Encoding: chunked\r\n").encode() + b'5\r\n{"val'
    sized = PUSH_HEAD.format(token=TOKEN, framing="Content-Length: 100\r\n").encode() + b'{"value": 1'
    bodies = [await half_request(server.port, data) for data in (chunked, sized)]
    # An open stream is no unfinished request: it outlives both limits.
    stream = await StreamClient.open(server.url("/events/main"))
    for reader, _ in heads + bodies:
        assert await closed_by_server(reader, timeout=1 + 3) == b""
    before = await server.runtime.store.last_id()
    await server.record("a", 7)
    assert (await stream.next_widget_event()).type == "a"  # still flowing
    assert await server.runtime.store.last_id() == before + 1  # the half pushes stored nothing

    await wait_until(lambda: "bodies not sent" in caplog.text, message="the body timeouts logged")
    lines = [r.getMessage() for r in caplog.records if r.name == "dashboard.connections"]
    # The first closing is logged at once, the rest summed up in the interval's one line.
    assert len(lines) == 2, lines
    assert "heads not sent within header_timeout (1s) (4x)" in lines[1], lines
    assert "bodies not sent within body_timeout (1s) (2x)" in lines[1], lines
    assert "Timeout reading body" not in caplog.text  # Tornado's line per connection is left out
    stream.close()
    for _, writer in heads + bodies:
        writer.close()


@pytest.mark.gen_test(timeout=60)
async def test_the_sweep_keeps_each_limit_from_when_each_wait_began_driven_by_its_clock(servers):
    """One sweep keeps both limits (instead of Tornado's timers per request): a connection
    is closed once it has waited longer than its limit since its current wait began (its
    head, its next request on a kept-alive connection, or its body), and not before."""
    server = await servers.start(config_with(header_timeout='"10s"', body_timeout='"60s"'))
    http = server.server.http
    loop_time, ahead = http.clock, [0.0]
    http.clock = lambda: loop_time() + ahead[0]

    def sweep_at(seconds: float) -> None:
        ahead[0] = seconds
        http._sweep()

    async def answered(reader, writer, request: bytes) -> bytes:
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await asyncio.wait_for(reader.readexactly(length), 10)
        return head

    healthz = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    idle = [await half_request(server.port, b"") for _ in range(2)]  # kept alive after one request
    for reader, writer in idle:
        assert (await answered(reader, writer, healthz)).startswith(b"HTTP/1.1 200")
    head = await half_request(server.port, b"GET /healthz HTTP/1.1\r\n")
    body = PUSH_HEAD.format(token=TOKEN, framing="Content-Length: 12\r\n").encode() + b'{"value"'
    bodies = [await half_request(server.port, body) for _ in range(2)]
    await wait_until(lambda: all(w.body for w in list(http.waiting.values())[-2:]), message="both heads read")

    sweep_at(8)  # under every limit: all still open, and busy connections start waiting anew
    reader, writer = idle[1]
    assert (await answered(reader, writer, healthz)).startswith(b"HTTP/1.1 200")
    sweep_at(12)  # over the head limit since the first waits began; the body limit is far off
    for reader, _ in (idle[0], head):
        assert await closed_by_server(reader, timeout=5) == b""
    reader, writer = bodies[0]
    assert (await answered(reader, writer, b": 1}")).startswith(b"HTTP/1.1 200")
    assert not idle[1][0].at_eof()
    sweep_at(62)  # the body that never ends, and the connection idle since 8 s
    for reader, _ in (bodies[1], idle[1]):
        assert await closed_by_server(reader, timeout=5) == b""
    await wait_until(lambda: not http.waiting or all(s.closed() for s in http.waiting), message="nothing left")
    for _, writer in [*idle, head, *bodies]:
        writer.close()


@pytest.mark.gen_test(timeout=60)
async def test_past_max_incomplete_requests_a_new_connection_closes_the_oldest_waiting_one(servers):
    server = await servers.start(config_with(max_incomplete_requests="4", header_timeout='"30s"'))
    waiting = [await half_request(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n") for _ in range(4)]
    # Idle connections count too: a keep-alive connection waits for its next request.
    newer = [await half_request(server.port, b"GET / HTTP") for _ in range(2)]
    for reader, _ in waiting[:2]:
        assert await closed_by_server(reader, timeout=5) == b""
    # A whole request gets in and is answered, closing the oldest waiting one to do so.
    assert (await WebClient(server.port).get("/healthz")).status == 200
    assert await closed_by_server(waiting[2][0], timeout=5) == b""
    # The others were within the bound all along: they finish their requests and are answered.
    for reader, writer in [waiting[3]]:
        writer.write(b"Connection: close\r\n\r\n")
        assert (await closed_by_server(reader, timeout=5)).startswith(b"HTTP/1.1 200")
    for reader, writer in newer:
        writer.write(b"/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (await closed_by_server(reader, timeout=5)).startswith(b"HTTP/1.1 200")
    for _, writer in waiting + newer:
        writer.close()


@pytest.mark.gen_test(timeout=60)
async def test_the_limits_follow_a_config_reload(servers, tmp_path):
    path = tmp_path / "config.toml"
    server = await servers.start(config_with(header_timeout='"60s"'), config_loader=lambda: load_config(path))
    path.write_text(config_with(header_timeout='"1s"', max_header='"4KiB"'))
    assert await server.server.reload() is True
    reader, writer = await half_request(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n")
    assert await closed_by_server(reader, timeout=1 + 3) == b""
    writer.close()
    answer = await raw_exchange(server.port, b"GET / HTTP/1.1\r\nX-Padding: " + b"a" * 5000 + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 431 ")


# --- out of file descriptors, in a process of its own ---------------------------------------

DESCRIPTORS = 160  # the server's own files, sockets and database take a few dozen of these
HALF_REQUESTS = 400
HEADER_TIMEOUT = 3.0


def few_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (DESCRIPTORS, DESCRIPTORS))


def cpu_seconds(pid: int) -> float:
    """The CPU time a process has used so far (user and system)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def answers(port: int, path: str) -> bool:
    try:
        return (await WebClient(port).get(path)).status == 200
    except OSError:  # the connection closed for want of a descriptor
        return False


async def open_streams_until_refused(url: str, most: int) -> list[StreamClient]:
    """Event streams, opened one after another until the server can take no more."""
    streams = []
    for _ in range(most):
        try:
            stream = await StreamClient.open(url)
        except (asyncio.IncompleteReadError, ConnectionError):
            return streams
        streams.append(stream)
    raise AssertionError(f"{most} streams opened: the descriptor limit was never reached")


@pytest.mark.gen_test(timeout=120)
async def test_out_of_descriptors_the_server_keeps_serving_and_logs_a_few_lines(tmp_path):
    config = BASE_CONFIG.replace('grace = "2s"', f'grace = "2s"\nheader_timeout = "{HEADER_TIMEOUT:g}s"')
    server = ServerProcess(tmp_path, config, preexec_fn=few_descriptors)
    server.start()
    connections, streams = [], []
    try:
        await server.ready()
        log_before = len(server.log())
        cpu_before, wall_before = cpu_seconds(server.process.pid), time.monotonic()

        # Far more half-finished requests than the server has descriptors for: those
        # over half the limit close the oldest, so the server's own work still gets some.
        for _ in range(HALF_REQUESTS):
            connections.append(await half_request(server.port, b"GET /d/main HTTP/1.1\r\nHost: x\r\n"))
        health = await WebClient(server.port).get("/healthz")
        assert health.status == 200, health.text
        results = await asyncio.gather(
            *(closed_by_server(reader, timeout=HEADER_TIMEOUT + 5) for reader, _ in connections),
            return_exceptions=True,
        )
        still_open = [r for r in results if isinstance(r, BaseException)]
        assert not still_open, f"{len(still_open)} of {HALF_REQUESTS} still open: {still_open[0]}"
        assert (await WebClient(server.port).get("/d/main")).status == 200

        # Open streams are not requests and are never closed to make room: they can use up
        # every descriptor. accept() then fails with EMFILE, again and again.
        streams = await open_streams_until_refused(server.url("/events/main"), DESCRIPTORS)
        refused = [await half_request(server.port, b"GET /healthz HTTP/1.1\r\n\r\n") for _ in range(50)]
        for reader, writer in refused:
            assert await closed_by_server(reader, timeout=5) == b""  # closed at once, not left in the backlog
            writer.close()
        for stream in streams[:10]:
            stream.close()
        await wait_until(lambda: answers(server.port, "/healthz"), timeout=10, message="/healthz once streams closed")
        pushed = await WebClient(server.port).request(
            "POST",
            "/api/widgets/a",
            {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            b'{"value": 1}',
        )
        assert pushed.status == 200, pushed.text
        event = await streams[-1].next_widget_event()  # the open streams were served all along
        assert event.type == "a"

        cpu = cpu_seconds(server.process.pid) - cpu_before
        wall = time.monotonic() - wall_before
        assert cpu < 0.6 * wall, f"{cpu:.1f}s of CPU in {wall:.1f}s: the accept loop spins"
        grown = server.log()[log_before:]
        assert "Traceback" not in grown and "Too many open files" not in grown, grown[:2000]
        assert "file descriptors exhausted" in grown  # the operator is told, once per interval
        own = [
            line for line in grown.splitlines() if "tornado.access" not in line
        ]  # a line per request is the access log
        assert len(own) <= 4, grown
    finally:
        for _, writer in connections:
            writer.close()
        for stream in streams:
            stream.close()
        await server.stop()
