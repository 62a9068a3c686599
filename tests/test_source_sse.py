"""The sse source against real servers on loopback: a tiny Tornado upstream whose
every connection follows the next step of a script, and our own dashboard server."""

import asyncio
import json

import pytest
import tornado.web
from tornado.httputil import HTTPHeaders

from dashboard.config import ConfigError
from dashboard.core.sse import encode_comment, encode_event, encode_retry
from dashboard.sources import SourceError
from dashboard.sources.http_json import JsonPath
from dashboard.sources.sse import SseSource
from tests.configs import one_widget, table
from tests.helpers import BASE_CONFIG, build_widget_source, wait_until
from tests.peers import RawPeer, self_signed_certificate, serving


def event(value, *, name: str | None = None, id: int | str | None = None) -> bytes:
    return encode_event(json.dumps(value), event=name, id=id)


def respond(*chunks: bytes, hold: bool = False, status: int = 200, content_type: str = "text/event-stream"):
    """One connection's answer: status, headers, each chunk flushed on its own, then
    close (or, with hold, stay open until the client leaves)."""

    async def answer(handler: "UpstreamHandler") -> None:
        handler.set_status(status)
        handler.set_header("Content-Type", content_type)
        for chunk in chunks:
            handler.write(chunk)
            await handler.flush()
        if hold:
            await handler.gone.wait()
        else:
            handler.finish()

    return answer


def replay(events: list[tuple[int, object]], *, upto: int | None = None, hold: bool = False):
    """Like our own stream: the events after the request's Last-Event-ID (up to `upto`)."""

    async def answer(handler: "UpstreamHandler") -> None:
        after = int(handler.request.headers.get("Last-Event-ID") or 0)
        chunks = [encode_retry(50)] + [event(v, id=i) for i, v in events if i > after and (upto is None or i <= upto)]
        await respond(*chunks, hold=hold)(handler)

    return answer


class Upstream:
    """Answers each connection to /stream with the next step of `script` (the last one
    repeats); /hop/<n> redirects n times before /stream. Remembers request headers."""

    def __init__(self, scheme: str = "http"):
        self.scheme = scheme
        self.script = []
        self.requests: list[HTTPHeaders] = []
        self.disconnects = 0
        self.port = 0

    def url(self, path: str = "/stream", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def next_answer(self, request):
        self.requests.append(request.headers.copy())
        return self.script[min(len(self.requests), len(self.script)) - 1]


class UpstreamHandler(tornado.web.RequestHandler):
    def initialize(self, upstream: Upstream):
        self.upstream = upstream
        self.gone = asyncio.Event()

    async def get(self):
        await self.upstream.next_answer(self.request)(self)

    def on_connection_close(self):
        self.upstream.disconnects += 1
        self.gone.set()


class HopHandler(tornado.web.RequestHandler):
    CODES = (301, 302, 307, 308, 303)

    def initialize(self, upstream: Upstream):
        self.upstream = upstream

    def get(self, hops: str):
        hops = int(hops)
        target = f"/hop/{hops - 1}" if hops > 1 else self.get_query_argument("to", "/stream")
        self.redirect(target, status=self.CODES[hops % len(self.CODES)])


@pytest.fixture
def upstream(io_loop):
    upstream = Upstream()
    with serving(
        io_loop,
        [
            (r"/stream", UpstreamHandler, {"upstream": upstream}),
            (r"/hop/([0-9]+)", HopHandler, {"upstream": upstream}),
        ],
    ) as peer:
        upstream.port = peer.port
        yield upstream


@pytest.fixture
def tls_upstream(io_loop, tmp_path_factory):
    """The upstream over TLS, with a self-signed certificate (its file: `.certificate`)."""
    upstream = Upstream("https")
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("tls"))
    upstream.certificate = cert
    with serving(
        io_loop,
        [(r"/stream", UpstreamHandler, {"upstream": upstream})],
        ssl_options={"certfile": str(cert), "keyfile": str(key)},
    ) as peer:
        upstream.port = peer.port
        yield upstream


def config_text(source: str, view: str = "text", **widget_keys) -> str:
    return table("storage", url="sqlite+aiosqlite:///dashboard.db") + one_widget("s", view, source, **widget_keys)


def build(tmp_path, source: str, view: str = "text") -> SseSource:
    return build_widget_source(tmp_path, config_text(source, view), "s")


class Running:
    """A source's stream() running for the length of an `async with`, keeping what it emits."""

    def __init__(self, source):
        self.source = source
        self.values = []

    async def emit(self, value) -> None:
        self.values.append(value)

    async def count(self, n: int) -> list:
        await wait_until(lambda: len(self.values) >= n or self.task.done(), message=f"{n} value(s)")
        if self.task.done():
            self.task.result()  # shows why the stream ended
        return self.values

    async def __aenter__(self) -> "Running":
        self.task = asyncio.create_task(self.source.stream(self.emit))
        return self

    async def __aexit__(self, *exc) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def no_wait(delay: float) -> None:
    await asyncio.sleep(0)


# --- values, filtering, formats ------------------------------------------------------------


MIXED = (
    event({"server": "x"}, name="hello"),
    event({"value": 1}, name="cpu", id=1),
    event({"value": 50}, name="mem", id=2),
    encode_comment("keep-alive"),
    event({"value": 2}, name="cpu", id=3),
    event("plain message", id=4),
    event(None, name="reload"),
    event("end", id=5),
)


@pytest.mark.gen_test(timeout=30)
async def test_an_event_name_and_a_path_pick_the_values(tmp_path, upstream):
    upstream.script = [respond(*MIXED, hold=True)]
    source = build(tmp_path, f'{{ kind = "sse", url = "{upstream.url()}", event = "cpu", path = "value" }}', "number")
    async with Running(source) as running:
        assert await running.count(2) == [1, 2]
        await wait_until(lambda: source.last_event_id == "5", message="the last event")
        assert running.values == [1, 2]  # every event moves the id, wanted or not
    assert upstream.requests[0]["Accept"] == "text/event-stream"


@pytest.mark.gen_test(timeout=30)
async def test_without_an_event_name_every_event_but_hello_and_reload(tmp_path, upstream):
    upstream.script = [respond(*MIXED, hold=True)]
    source = build(tmp_path, f'{{ kind = "sse", url = "{upstream.url()}" }}')
    async with Running(source) as running:
        assert await running.count(5) == [{"value": 1}, {"value": 50}, {"value": 2}, "plain message", "end"]


@pytest.mark.gen_test(timeout=30)
async def test_text_format_takes_the_data_as_it_is(tmp_path, upstream):
    upstream.script = [respond(encode_event("line one\nline two"), encode_event('{"not": "parsed"}'), hold=True)]
    source = build(tmp_path, f'{{ kind = "sse", url = "{upstream.url()}", format = "text" }}')
    async with Running(source) as running:
        assert await running.count(2) == ["line one\nline two", '{"not": "parsed"}']


@pytest.mark.gen_test(timeout=30)
async def test_an_unreadable_event_is_reported_and_the_stream_goes_on(tmp_path, upstream):
    upstream.script = [respond(encode_event("{broken"), event({"other": 1}), event({"value": 3}), hold=True)]
    source = build(tmp_path, f'{{ kind = "sse", url = "{upstream.url()}", path = "value" }}', "number")
    async with Running(source) as running:
        first, second, third = await running.count(3)
    assert isinstance(first, SourceError) and str(first) == "expected JSON, got '{broken'"
    assert isinstance(second, SourceError) and str(second) == 'no key "value" at value'
    assert third == 3


@pytest.mark.gen_test(timeout=30)
async def test_the_source_parses_like_the_spec(tmp_path, upstream):
    # The WHATWG cases of tests/test_sse.py, through the source's own connection, with
    # a BOM and a CRLF split across chunks.
    upstream.script = [
        respond(
            b"\xef\xbb",
            b"\xbfdata: 1\r",
            b"\n\r\n",  # a leading BOM, CRLF line ends
            b": a comment\n",  # ignored
            b"id: 7\x00x\ndata: 2\r\r",  # an id with NUL is ignored; CR line ends
            b"retry: soon\nevent\ndata: 3\n\n",  # a non-digit retry is ignored; a field with no colon
            b"event: nodata\n\n",  # no data: nothing is dispatched
            b"data\n\n",  # an empty data field is an event with ""
            b"id: 8\ndata: 4\n\n",
            hold=True,
        )
    ]
    source = build(tmp_path, f'{{ kind = "sse", url = "{upstream.url()}", format = "text" }}')
    async with Running(source) as running:
        assert await running.count(5) == ["1", "2", "3", "", "4"]
    assert (source.last_event_id, source.retry_delay) == ("8", None)


# --- connections: redirects, reconnects, failures ---------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_a_redirect_chain_is_followed(tmp_path, upstream):
    upstream.script = [respond(event(1), hold=True)]
    source = build(tmp_path, f'{{ kind = "sse", url = "{upstream.url("/hop/5")}" }}', "number")
    async with Running(source) as running:
        assert await running.count(1) == [1]


@pytest.mark.gen_test(timeout=30)
async def test_more_than_five_redirects_fail(tmp_path, upstream):
    source = build(tmp_path, f'{{ kind = "sse", url = "{upstream.url("/hop/6")}" }}', "number")
    with pytest.raises(SourceError, match="more than 5 redirects"):
        await source.stream(Running(source).emit)
    assert upstream.requests == []


@pytest.mark.gen_test(timeout=30)
async def test_credentials_do_not_follow_a_redirect_to_another_origin(tmp_path, upstream):
    upstream.script = [respond(event(1), hold=True)]
    elsewhere = upstream.url("/hop/1") + "?to=" + upstream.url(host="localhost")
    source = build(
        tmp_path,
        f'{{ kind = "sse", url = "{elsewhere}", headers = {{ Authorization = "Bearer t0ken", X-Trace = "7" }} }}',
        "number",
    )
    async with Running(source) as running:
        await running.count(1)
    assert upstream.requests[0]["X-Trace"] == "7"
    assert "Authorization" not in upstream.requests[0]


@pytest.mark.gen_test(timeout=30)
async def test_a_reconnect_sends_last_event_id_and_resumes_without_duplicates(tmp_path, upstream):
    history = [(1, 10), (2, 20), (3, 30), (4, 40), (5, 50)]
    upstream.script = [replay(history, upto=3), replay(history, hold=True)]  # the first connection ends after id 3
    source = build(tmp_path, f'{{ kind = "sse", url = "{upstream.url()}" }}', "number")
    async with Running(source) as running:
        # A duplicate or a gap would show within the first five.
        assert await running.count(5) == [10, 20, 30, 40, 50]
    assert [request.get("Last-Event-ID") for request in upstream.requests] == [None, "3"]


@pytest.mark.gen_test(timeout=30)
async def test_the_upstream_retry_is_the_reconnect_delay(upstream):
    upstream.script = [respond(encode_retry(1234), event(1)), respond(event(2), hold=True)]
    delays = []

    async def sleep(delay: float) -> None:
        delays.append(delay)

    source = SseSource(
        upstream.url(),
        event=None,
        format="json",
        path=JsonPath(""),
        headers={},
        connect_timeout=5,
        idle_timeout=None,
        reconnect_delay=30,
        sleep=sleep,
    )
    async with Running(source) as running:
        assert await running.count(2) == [1, 2]
    assert delays == [1.234]
    assert source.retry_delay == 1.234


@pytest.mark.gen_test(timeout=30)
async def test_a_silent_connection_is_reopened_without_failing(tmp_path, upstream):
    upstream.script = [respond(event(1), hold=True), respond(event(2), hold=True)]
    source = build(tmp_path, f'{{ kind = "sse", url = "{upstream.url()}", idle_timeout = "200ms" }}', "number")
    source._sleep = no_wait
    async with Running(source) as running:
        assert await running.count(2) == [1, 2]
        assert not running.task.done()
    await wait_until(lambda: upstream.disconnects == 2, message="both connections closed")


@pytest.mark.gen_test(timeout=30)
async def test_stopping_the_source_closes_the_upstream_connection(tmp_path, upstream):
    upstream.script = [respond(event(1), hold=True)]
    source = build(tmp_path, f'{{ kind = "sse", url = "{upstream.url()}" }}', "number")
    async with Running(source) as running:
        await running.count(1)
        assert upstream.disconnects == 0
    await wait_until(lambda: upstream.disconnects == 1, message="the upstream to see the client leave")


@pytest.mark.parametrize(
    "answer, message",
    [
        (respond(status=500), r"HTTP 500 Internal Server Error from http://127\.0\.0\.1:\d+/stream"),
        (respond(status=404), "HTTP 404 Not Found"),
        (
            respond(event(1), content_type="text/html; charset=UTF-8"),
            "expected Content-Type text/event-stream, got 'text/html; charset=UTF-8'",
        ),
    ],
)
@pytest.mark.gen_test(timeout=30)
async def test_a_bad_answer_is_a_source_error(tmp_path, upstream, answer, message):
    upstream.script = [answer]
    source = build(tmp_path, f'{{ kind = "sse", url = "{upstream.url()}?token=s3cret" }}', "number")
    with pytest.raises(SourceError, match=message) as caught:
        await source.stream(Running(source).emit)
    assert "s3cret" not in str(caught.value)


@pytest.mark.gen_test(timeout=30)
async def test_nothing_listening_is_a_source_error(tmp_path):
    from tests.backends import free_port

    port = free_port()
    source = build(tmp_path, f'{{ kind = "sse", url = "http://127.0.0.1:{port}/events" }}', "number")
    with pytest.raises(SourceError, match=f"cannot connect to 127.0.0.1:{port}: Connection refused"):
        await source.stream(Running(source).emit)


@pytest.mark.gen_test(timeout=20)
async def test_an_https_upstream_is_read_over_tls_with_the_system_s_trusted_certificates(
    tmp_path, tls_upstream, monkeypatch
):
    tls_upstream.script = [respond(event({"value": 7}, name="cpu", id=1), hold=True)]
    url = tls_upstream.url(host="localhost")
    source = build(tmp_path, f'{{ kind = "sse", url = "{url}", event = "cpu", path = "value" }}', "number")
    # Not trusted: a self-signed certificate is refused, and the error says why.
    with pytest.raises(SourceError, match=r"cannot connect to localhost:\d+: self-signed certificate"):
        await source.stream(Running(source).emit)
    # Trusted the way an own CA is added to the system's: read over TLS.
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_upstream.certificate))
    async with Running(source) as running:
        assert await running.count(1) == [7]


# --- in a running dashboard ---------------------------------------------------------------------


@pytest.mark.gen_test(timeout=20)
async def test_an_upstream_error_marks_the_widget_failing_then_it_recovers(servers, upstream):
    upstream.script = [
        respond(encode_retry(200), event(1)),  # then the stream ends: reopened after 200 ms
        respond(status=500),  # a failure: the scheduler backs off from 200 ms
        respond(event(2), hold=True),
    ]
    delays = []

    async def sleep(delay: float) -> None:
        delays.append(delay)
        await asyncio.sleep(0.01)

    server = await servers.start(
        config_text(f'{{ kind = "sse", url = "{upstream.url()}" }}', "number", every="30s"),
        port=0,
        scheduler_options={"sleep": sleep},
    )
    history = []

    async def seen():
        history[:] = [(s.value, s.status, s.message) for s in await server.runtime.store.history("s")]
        return len(history) >= 3

    await wait_until(seen, message="a value, the failure, the recovery")
    assert history[0] == (1, "ok", None)
    assert history[1][:2] == (1, "error") and history[1][2].startswith("HTTP 500 Internal Server Error from ")
    assert history[2] == (2, "ok", None)
    assert delays == [0.2]  # the upstream's retry, not the widget's 30 s


@pytest.mark.gen_test(timeout=40)
async def test_a_dashboard_fed_by_another_dashboards_stream(servers, tmp_path):
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir()
    second_dir.mkdir()
    first = await servers.start(BASE_CONFIG, directory=first_dir)
    second = await servers.start(
        config_text(
            f'{{ kind = "sse", url = "{first.url("/events/main")}", event = "a", path = "value" }}',
            "number",
            title="Mirror of a",
            on_change=False,
            every="100ms",
        ),
        directory=second_dir,
        port=0,
    )
    mirrored = second.runtime.scheduler.last

    await first.record("a", 1.5)
    await first.record("b", "not for the mirror")
    await wait_until(lambda: "s" in mirrored and mirrored["s"].value == 1.5, message="1.5 mirrored")
    await first.record("a", 2.5)
    await wait_until(lambda: mirrored["s"].value == 2.5, message="2.5 mirrored")

    # The first dashboard restarts: the mirror reconnects with Last-Event-ID and
    # gets what it missed, once.
    port = first.port
    await first.stop()
    first = await servers.start(BASE_CONFIG, directory=first_dir, port=port)
    # Once reconnected, a mirror without Last-Event-ID would get 2.5 again (the snapshot).
    await wait_until(lambda: len(first.runtime.streams) == 1, timeout=20, message="the mirror to reconnect")
    await first.record("a", 3.5)
    await wait_until(
        lambda: mirrored["s"].value == 3.5 and mirrored["s"].status == "ok",
        timeout=20,
        message="3.5 mirrored after the restart",
    )
    values = [s.value for s in await second.runtime.store.history("s") if s.status == "ok"]
    assert values == [1.5, 2.5, 3.5]  # on_change = false: a duplicate would be stored too


# --- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source, message",
    [
        ('{ kind = "sse" }', "widgets.s.source.url: missing"),
        ('{ kind = "sse", url = "ftp://host/x" }', "widgets.s.source.url: expected an http:// or https:// URL"),
        (
            '{ kind = "sse", url = "http://h/e", format = "xml" }',
            "widgets.s.source.format: expected one of: json, text",
        ),
        (
            '{ kind = "sse", url = "http://h/e", format = "text", path = "value" }',
            'widgets.s.source.path: a path reads into JSON: use format = "json"',
        ),
        (
            '{ kind = "sse", url = "http://h/e", path = "a..b" }',
            "widgets.s.source.path: a dotted path has no empty parts",
        ),
        ('{ kind = "sse", url = "http://h/e", event = "" }', "widgets.s.source.event: expected an event name"),
        (
            '{ kind = "sse", url = "http://h/e", headers = { "Last-Event-ID" = "5" } }',
            "widgets.s.source.headers.Last-Event-ID: this header is set by the source itself",
        ),
        (
            '{ kind = "sse", url = "http://h/e", headers = { X-Bad = "a\\nb" } }',
            "widgets.s.source.headers.X-Bad: a header value cannot contain line breaks",
        ),
        (
            '{ kind = "sse", url = "http://h/e", idle_timeout = "soon" }',
            "widgets.s.source.idle_timeout: expected a duration",
        ),
        ('{ kind = "sse", url = "http://h/e", retry = "1s" }', 'widgets.s.source: unknown key "retry"'),
        (
            '{ kind = "sse", url = "http://h/e", token = "short" }',
            "widgets.s.source.token: too short: a read token has at least 16 characters",
        ),
        (
            '{ kind = "sse", url = "http://h/e", token = "read-token-0123456789", headers = { Authorization = "x" } }',
            "widgets.s.source.token: expected either token or an Authorization header, got both",
        ),
    ],
)
def test_config_errors(tmp_path, source, message):
    with pytest.raises(ConfigError) as caught:
        build(tmp_path, source)
    assert message in str(caught.value)


def test_a_token_is_sent_as_a_bearer_authorization(tmp_path):
    source = build(tmp_path, '{ kind = "sse", url = "http://h/e", token = "read-token-0123456789" }')
    assert source.connection.headers == {"Authorization": "Bearer read-token-0123456789"}


def test_defaults(tmp_path):
    source = build(tmp_path, '{ kind = "sse", url = "https://example.org/events" }')
    connection = source.connection
    assert (source.event, source.format, source.path.keys, connection.headers, connection.idle_timeout) == (
        None,
        "json",
        (),
        {},
        60.0,
    )
    assert (connection.connect_timeout, source.reconnect_delay) == (5.0, 5.0)  # the widget's timeout and every
    silent = build(tmp_path, '{ kind = "sse", url = "http://h/e", idle_timeout = "0s" }')
    assert silent.connection.idle_timeout is None


# --- hostile upstreams -------------------------------------------------------------------------

SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"


async def endless_line(_head):
    yield SSE_HEAD + b'data: {"value": 1}\n\n'
    yield b"data: "
    while True:
        yield b"x" * 65536


async def endless_event(_head):
    yield SSE_HEAD + b'data: {"value": 1}\n\n'
    while True:
        yield b"data: " + b"x" * 1000 + b"\n"  # lines end, the event never does


@pytest.mark.parametrize("answer", [endless_line, endless_event], ids=["a line without end", "an event without end"])
@pytest.mark.gen_test(timeout=30)
async def test_an_event_without_end_is_refused_past_1_mib(tmp_path, answer):
    """Memory stays bounded: the source gives up on the event at 1 MiB, and says so
    (a quiet reconnect would only read the same again)."""
    async with RawPeer({"/events": answer}) as peer:
        source = build(tmp_path, f'{{ kind = "sse", url = "{peer.url("/events")}", format = "json" }}', "text")
        running = Running(source)
        with pytest.raises(SourceError) as caught:
            await asyncio.wait_for(source.stream(running.emit), 10)
        assert str(caught.value) == f"an event from {peer.url('/events')} is larger than 1 MiB"
        assert running.values == [{"value": 1}]
        await wait_until(lambda: peer.closed == 1, timeout=5, message="the connection closed")
