"""Hostile values through every way in, on the real server: the push API (one widget,
several), and each source that carries text or numbers from outside (http_json,
command, python, sse, mqtt). Generated values include lone surrogates, NUL, huge and
non-finite numbers, deep nesting and long strings.

After each one: the push API answered 200 or a documented 4xx; the page renders 200;
the page, the stream and the database hold the same sample (value, status, message);
the database passes its own check; the tickers still run. Values are gated by
views.accept (core/values.py), and stored ones are read back through the same gate.
"""

from __future__ import annotations

import html
import json
import re
import sqlite3
import sys
import uuid

import aiomqtt
import pytest
import tornado.web
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dashboard.core.sse import encode_event
from dashboard.core.views import format_number
from tests.configs import dashboard, loopback_server, push_widgets, table, widget
from tests.helpers import TOKEN, StreamClient, wait_until
from tests.peers import serving
from tests.strategies import values
from tests.webclient import WebClient

FIXTURES_OK = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]
DOCUMENTED = {200, 400, 413}  # with a good token, the right type and a push widget
DB = "data/hostile.db"
MAX_BODY = 384 * 1024  # [api] max_body: larger than the largest value a widget takes
DECIMALS = 3  # of the number widgets, so that the page's formatting is tested too

# --- hostile values -------------------------------------------------------------------------

any_char = st.characters(codec=None, exclude_categories=())  # lone surrogates and NUL included
hostile_text = st.text(any_char, max_size=30) | st.sampled_from(
    ["\ud800", "a\udfffb", "\x00", "x\x00\r\n<script>", "\r", "😀\ud83d", "\u2028\u0085"]
)
long_text = st.integers(250_000, 275_000).map(lambda n: "é" * (n // 2))  # about 256 KiB as JSON: either side of it
hostile_numbers = (
    st.integers(-(10**400), 10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([2**53, 2**53 + 1, -(2**63), 10**308, 10**309, 1.7976931348623157e308, -0.0, 5e-324])
)
hostile_scalars = st.none() | st.booleans() | hostile_numbers | hostile_text | long_text
hostile_values = values(hostile_scalars, hostile_text, size=4, leaves=12)
# Shaped for a view, with hostile leaves: so that many get past the view and reach the gate.
shaped = {
    "text": hostile_text | long_text | hostile_numbers,
    "number": hostile_numbers,
    "list": st.lists(st.tuples(hostile_text, hostile_numbers | hostile_text).map(list), max_size=4),
    "status": st.fixed_dictionaries(
        {"state": st.sampled_from(["ok", "warn", "down"]), "detail": hostile_text, "code": hostile_numbers}
    ),
}
# JSON texts no json.dumps makes: numbers past the double range, integers past Python's
# 4300 digits, nesting past the recursion limit, bytes that are not UTF-8.
RAW_DOCUMENTS = [
    b"1e400",
    b"-1e999",
    b"1" * 5000,
    b"[" * 5000 + b"]" * 5000,
    b'{"a":' * 200 + b"1" + b"}" * 200,
    b'"\\ud800"',
    b'"a\\u0000b"',
    b'"\\udc00\\ud800"',
    b'"\xff\xfe"',
    b"NaN",
    b"-Infinity",
]


def as_json(value) -> bytes:
    """JSON text as a careless client writes it: NaN and Infinity too, surrogates escaped."""
    return json.dumps(value, ensure_ascii=True, allow_nan=True).encode()


def documents(view: str):
    return st.one_of(shaped[view].map(as_json), hostile_values.map(as_json), st.sampled_from(RAW_DOCUMENTS))


# --- what the page shows, the stream sends and the database holds -------------------------


def section_of(page: str, widget_id: str) -> str:
    match = re.search(rf'<section[^>]* id="w-{widget_id}".*?</section>', page, re.S)
    assert match, f"widget {widget_id} is on the page"
    return match[0]


def inner_text(section: str, pattern: str) -> str:
    """The text a browser shows of the element `pattern` matches (no markup inside it)."""
    match = re.search(pattern, section, re.S)
    assert match, pattern
    assert "\x00" not in match[1]  # a parser would drop it: the page and the stream would differ
    return html.unescape(match[1])


def text_of(value) -> str:
    return value if isinstance(value, str) else str(value)


def shown_by_page(view: str, section: str):
    if view == "text":
        return inner_text(section, r'<p class="text" data-role="value">(.*?)</p>')
    if view == "number":
        return inner_text(section, r'<span class="value" data-role="value">(.*?)</span>')
    if view == "list":
        return [
            (html.unescape(a), html.unescape(b))
            for a, b in re.findall(
                r'<li><span class="label">(.*?)</span><span class="cell">(.*?)</span></li>', section, re.S
            )
        ]
    return inner_text(section, r'<span class="state-word" data-role="state-word">(.*?)</span>')


def shown_of(view: str, value):
    """What the page should show of the value the stream sent."""
    if view == "text":
        return "—" if value is None else text_of(value)
    if view == "number":
        return "—" if value is None else format_number(value, DECIMALS)
    if view == "list":
        rows = value or []
        return [
            (
                row["label"],
                ""
                if "value" not in row
                else format_number(row["value"], DECIMALS)
                if isinstance(row["value"], (int, float))
                else text_of(row["value"]),
            )
            for row in rows
        ]
    return (value or {}).get("state") or "—"


class Follower:
    """The dashboard's stream, read as far as a test needs: events by id."""

    def __init__(self, client: StreamClient):
        self.client = client
        self.by_id: dict[int, dict] = {}

    async def sample(self, event_id: int) -> dict:
        while event_id not in self.by_id:
            event = await self.client.next_widget_event(timeout=10)
            self.by_id[int(event.last_event_id)] = json.loads(event.data)
        return self.by_id[event_id]


async def everything_agrees(server, follower: Follower, views: dict[str, str]) -> None:
    """Page 200; for each widget, the page shows what the stream sent for the page's event
    id, and the database row of that id holds the same; the database checks out."""
    reply = await WebClient(server.port).get("/d/main")
    assert reply.status == 200, reply.text[:500]
    page = reply.body.decode("utf-8")
    database = sqlite3.connect(server.config_path.parent / DB)
    try:
        assert database.execute("PRAGMA quick_check").fetchone() == ("ok",)
        for widget_id, view in views.items():
            section = section_of(page, widget_id)
            event_id = int(re.search(r'data-event-id="([0-9]+)"', section)[1])
            if event_id == 0:
                continue  # nothing stored yet
            sent = await follower.sample(event_id)
            value, status, message = database.execute(
                "SELECT value, status, message FROM samples WHERE id = ?", (event_id,)
            ).fetchone()
            stored = json.loads(value) if isinstance(value, str) else value  # a number, by the column's affinity
            assert (stored, status, message) == (sent["value"], sent["status"], sent.get("message"))
            assert shown_by_page(view, section) == shown_of(view, sent["value"]), (widget_id, sent)
            shown_message = inner_text(section, r'<p class="message" data-role="message">(.*?)</p>')
            assert shown_message == (sent.get("message") or ""), (widget_id, sent)
            assert ("is-error" in section.split(">", 1)[0]) == (sent["status"] != "ok")
    finally:
        database.close()


def base_config(api: bool = True) -> str:
    text = loopback_server(grace="2s", storage=f"sqlite+aiosqlite:///{DB}")
    if api:
        text += table("api", tokens={"test": TOKEN}, rate="10000/s", burst=10000, max_body=f"{MAX_BODY}B")
    return text


# --- the push API ---------------------------------------------------------------------------

PUSHED = {"p_text": "text", "p_number": "number", "p_list": "list", "p_status": "status"}
PUSH_CONFIG = (
    base_config()
    + dashboard("main", list(PUSHED))
    + push_widgets(p_text="text", p_status="status")
    + widget("p_number", "number", decimals=DECIMALS, source={"kind": "push"})
    + widget("p_list", "list", decimals=DECIMALS, source={"kind": "push"})
)
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


@st.composite
def pushes(draw) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["value", "message", "batch"]))
    widget_id = draw(st.sampled_from(sorted(PUSHED)))
    document = draw(documents(PUSHED[widget_id]))
    if kind == "value":
        return f"/api/widgets/{widget_id}", b'{"value": ' + document + b"}"
    if kind == "message":
        return f"/api/widgets/{widget_id}", b'{"status": "error", "message": ' + document + b"}"
    other = draw(st.sampled_from(sorted(PUSHED)))
    return "/api/widgets", b'{"values": {"%s": %s, "%s": %s}}' % (
        widget_id.encode(),
        document,
        other.encode(),
        draw(documents(PUSHED[other])),
    )


@pytest.fixture
def push_server(servers, io_loop):
    async def started():
        server = await servers.start(PUSH_CONFIG)
        return server, Follower(await StreamClient.open(server.url("/events/main")))

    return io_loop.run_sync(started)


@settings(max_examples=150, deadline=None, suppress_health_check=FIXTURES_OK)
@given(push=pushes())
def test_any_pushed_value_is_stored_shown_and_streamed_alike_or_refused(push_server, io_loop, push):
    server, follower = push_server
    path, body = push

    async def exchange():
        before = await server.runtime.store.last_id()
        try:
            reply = await WebClient(server.port).request("POST", path, HEADERS, body)
        except ConnectionError:
            # A body over [api] max_body is refused from its Content-Length and the connection
            # closed: a client still sending may see the reset before it reads the 413.
            assert len(body) > MAX_BODY
            status = 413
        else:
            status = reply.status
            assert status in DOCUMENTED, (status, reply.text)
            answer = reply.json()
            if status != 200:
                assert set(answer) == {"error"} and answer["error"] and "\n" not in answer["error"]
        after = await server.runtime.store.last_id()
        assert (after > before) == (status == 200), "a refused push stored something, or a 200 nothing"
        event(f"status {status}")
        await everything_agrees(server, follower, PUSHED)

    io_loop.run_sync(exchange, timeout=60)


# --- polled sources: http_json, command, python ---------------------------------------------

POLLED = {
    "h_text": "text",
    "h_number": "number",
    "c_text": "text",
    "c_number": "number",
    "y_text": "text",
    "y_number": "number",
    "y_list": "list",
}
HOSTILE_MODULE = "hostile_values_source"


class DocumentHandler(tornado.web.RequestHandler):
    def get(self):
        self.set_header("Content-Type", "application/json")
        self.finish(self.settings["document"][0])


def polled_config(peer_port: int) -> str:
    every = {"every": "1h", "timeout": "5s"}  # it runs once at start; the test runs it after that
    numbers = {**every, "decimals": DECIMALS}
    url = f"http://127.0.0.1:{peer_port}/document"
    return (
        base_config(api=False)
        + dashboard("main", list(POLLED))
        + widget("h_text", "text", **every, source={"kind": "http_json", "url": url})
        + widget("h_number", "number", **numbers, source={"kind": "http_json", "url": url})
        + widget("c_text", "text", **every, source={"kind": "command", "argv": ["cat", "document"], "parse": "auto"})
        + widget(
            "c_number", "number", **numbers, source={"kind": "command", "argv": ["cat", "document"], "parse": "json"}
        )
        + widget("y_text", "text", **every, source={"kind": "python", "function": f"{HOSTILE_MODULE}:current"})
        + widget("y_number", "number", **numbers, source={"kind": "python", "function": f"{HOSTILE_MODULE}:current"})
        + widget("y_list", "list", **numbers, source={"kind": "python", "function": f"{HOSTILE_MODULE}:current"})
    )


class Odd:
    """An object no JSON holds."""


# What a Python function may return beyond JSON: tuples, bytes, sets, objects, integers
# too long for str(), lists nested far past any limit.
python_values = st.one_of(
    hostile_values,
    shaped["list"],
    st.sampled_from([(1, 2), b"bytes", {1, 2}, Odd(), 10**5000, {1: "int key"}, float("nan")]),
    st.integers(1, 3000).map(lambda depth: nested(depth)),
)


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.fixture
def polled_server(servers, io_loop, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))  # the python source puts the config's directory first
    (tmp_path / f"{HOSTILE_MODULE}.py").write_text("VALUE = 0\n\n\ndef current():\n    return VALUE\n")
    (tmp_path / "document").write_bytes(b"0")
    document = [b"0"]
    with serving(io_loop, [(r"/document", DocumentHandler)], document=document) as peer:

        async def started():
            server = await servers.start(polled_config(peer.port))
            return server, Follower(await StreamClient.open(server.url("/events/main")))

        server, follower = io_loop.run_sync(started)
        yield server, follower, document
        io_loop.run_sync(servers.stop_all)
    sys.modules.pop(HOSTILE_MODULE, None)


@st.composite
def polled_inputs(draw) -> tuple[str, object]:
    widget_id = draw(st.sampled_from(sorted(POLLED)))
    if widget_id.startswith("y_"):
        return widget_id, draw(python_values)
    return widget_id, draw(documents(POLLED[widget_id]))


@settings(max_examples=150, deadline=None, suppress_health_check=FIXTURES_OK)
@given(given_input=polled_inputs())
def test_any_value_a_polled_source_reads_is_stored_shown_and_streamed_alike_or_shown_as_its_error(
    polled_server, io_loop, given_input
):
    server, follower, document = polled_server
    widget_id, value = given_input
    kind = widget_id[0]
    if kind == "h":
        document[0] = value
    elif kind == "c":
        (server.config_path.parent / "document").write_bytes(value)
    else:
        sys.modules[HOSTILE_MODULE].VALUE = value

    async def run():
        scheduler = server.runtime.scheduler
        await scheduler.run_once(server.runtime.config.widgets[widget_id], scheduler.sources[widget_id])
        state = scheduler.states[widget_id]
        event(f"{kind} {state.status}")
        assert state.status == "ok" or state.message  # a refusal is the widget's error, with its reason
        assert scheduler.state == "running"
        await everything_agrees(server, follower, POLLED)

    io_loop.run_sync(run, timeout=60)


# --- streaming sources: sse, mqtt -----------------------------------------------------------

STREAMED = {"s_text": "text", "s_number": "number", "m_text": "text", "m_number": "number"}


class EventsHandler(tornado.web.RequestHandler):
    """An upstream event stream that sends whatever the test hands its `outbox`."""

    async def get(self):
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        await self.flush()
        self.settings["streams"].add(self)
        await self.settings["release"].wait()

    def on_connection_close(self):
        self.settings["streams"].discard(self)


async def send_event(streams: set, name: str, data: bytes) -> None:
    chunk = encode_event(data.decode("utf-8", "replace"), event=name)
    for stream in list(streams):
        stream.write(chunk)
        await stream.flush()


def streamed_config(sse_port: int, mqtt_port: int, topic: str) -> str:
    every = {"every": "100ms", "timeout": "5s", "on_change": False}
    url = f"http://127.0.0.1:{sse_port}/events"
    return (
        base_config(api=False)
        + dashboard("main", list(STREAMED))
        + widget("s_text", "text", **every, source={"kind": "sse", "url": url, "event": "text"})
        + widget(
            "s_number", "number", **every, decimals=DECIMALS, source={"kind": "sse", "url": url, "event": "number"}
        )
        + widget("m_text", "text", **every, source={"kind": "mqtt", "port": mqtt_port, "topic": f"{topic}/text"})
        + widget(
            "m_number",
            "number",
            **every,
            decimals=DECIMALS,
            source={"kind": "mqtt", "port": mqtt_port, "topic": f"{topic}/number", "format": "json"},
        )
    )


async def publish(port: int, topic: str, payload: bytes) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.publish(topic, payload, qos=1)


@pytest.fixture
def streamed_server(mosquitto, servers, io_loop):
    mosquitto.start()
    streams: set = set()
    topic = f"hostile/{uuid.uuid4().hex}"
    with serving(io_loop, [(r"/events", EventsHandler)], streams=streams) as peer:

        async def started():
            server = await servers.start(streamed_config(peer.port, mosquitto.port, topic))
            await wait_until(lambda: len(streams) == 2, timeout=10, message="both sse widgets connected")
            send = StreamedSender(server, streams, mosquitto.port, topic)
            for widget_id in STREAMED:  # each subscribed and taking values before the examples
                await wait_until(lambda w=widget_id: send(w, b"0"), timeout=20, message=f"{widget_id} running")
            return server, Follower(await StreamClient.open(server.url("/events/main"))), send

        yield io_loop.run_sync(started)
        io_loop.run_sync(servers.stop_all)


class StreamedSender:
    """Sends a payload to a streaming widget's upstream; true once the widget took it."""

    def __init__(self, server, streams: set, mqtt_port: int, topic: str):
        self.server, self.streams, self.mqtt_port, self.topic = server, streams, mqtt_port, topic

    async def __call__(self, widget_id: str, payload: bytes, timeout: float = 2.0) -> bool:
        state = self.server.runtime.scheduler.states[widget_id]
        runs = state.runs
        if widget_id.startswith("s_"):
            await send_event(self.streams, widget_id[2:], payload)
        else:
            await publish(self.mqtt_port, f"{self.topic}/{widget_id[2:]}", payload)
        try:
            await wait_until(lambda: state.runs > runs, timeout=timeout)
        except AssertionError:
            return False
        return True


@st.composite
def streamed_inputs(draw) -> tuple[str, bytes]:
    widget_id = draw(st.sampled_from(sorted(STREAMED)))
    return widget_id, draw(documents(STREAMED[widget_id]).filter(bool))  # an empty MQTT payload is skipped


@pytest.mark.skipif(sys.platform != "linux", reason="a private mosquitto")
@settings(max_examples=80, deadline=None, suppress_health_check=FIXTURES_OK)
@given(given_input=streamed_inputs())
def test_any_value_a_streaming_source_receives_is_stored_shown_and_streamed_alike_or_shown_as_its_error(
    streamed_server, io_loop, given_input
):
    server, follower, send = streamed_server
    widget_id, payload = given_input

    async def run():
        assert await send(widget_id, payload, timeout=10), f"{widget_id} did not take the payload"
        scheduler = server.runtime.scheduler
        event(f"{widget_id[0]} {scheduler.states[widget_id].status}")
        assert scheduler.state == "running"
        await everything_agrees(server, follower, STREAMED)

    io_loop.run_sync(run, timeout=60)
