"""The http_json source against a real Tornado server on a loopback port: values
picked by path, every failure with its message, and a value (then a failure,
then the recovery) reaching an open stream through the real dashboard server."""

import asyncio
import gzip
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import tornado.web
from tornado.httpclient import AsyncHTTPClient

from dashboard.config import ConfigError, load_config
from dashboard.sources import SourceError, build_source
from dashboard.sources.http_json import MAX_BODY, JsonPath
from dashboard.sources.scheduler import Scheduler
from dashboard.storage.recorder import Recorder
from dashboard.storage.store import Store
from tests.configs import dashboard, loopback_server, one_widget, widget
from tests.helpers import StreamClient, build_widget_source, data, wait_until, write_config
from tests.peers import RawPeer, refused_url, serving

ROOT = Path(__file__).resolve().parent.parent

DOCUMENT = {
    "base": "USD",
    "rates": {"EUR": 0.92, "GBP": 0.79, "a/b": 1, "m~n": 2, "": 3},
    "items": [{"price": 3.5}, {"price": 4}],
    "flag": True,
    # Prometheus's shape: [time, "value as a string"]
    "sample": {"value": [1700000000.5, "0.25"], "state": "green"},
}


class DocumentHandler(tornado.web.RequestHandler):
    def get(self, name=""):
        self.settings["requests"].append(self.request.path)
        self.write(DOCUMENT)


class StatusHandler(tornado.web.RequestHandler):
    def get(self, code):
        self.set_status(int(code))
        self.write({"error": "nope"})


class TextHandler(tornado.web.RequestHandler):
    def get(self, text):
        self.write(text.encode())


class EchoHandler(tornado.web.RequestHandler):
    def post(self):
        self.write(
            {
                "method": self.request.method,
                "body": json.loads(self.request.body),
                "content_type": self.request.headers.get("Content-Type"),
                "key": self.request.headers.get("X-Key"),
                "accept": self.request.headers.get("Accept"),
            }
        )


class HangHandler(tornado.web.RequestHandler):
    async def get(self):
        await self.settings["release"].wait()  # set at teardown, so no handler is left pending


class BigHandler(tornado.web.RequestHandler):
    async def get(self):
        chunk = b" " * (1024 * 1024)
        for _ in range(MAX_BODY // len(chunk) + 1):
            self.write(chunk)
            await self.flush()
        self.write(b"1")


class SwitchHandler(tornado.web.RequestHandler):
    """503 until the test flips settings["switch"]["up"], then a rate."""

    def get(self):
        if not self.settings["switch"]["up"]:
            self.set_status(503)
            return
        self.write({"rates": {"EUR": 0.9315}})


@pytest.fixture
def peer(io_loop):
    with serving(
        io_loop,
        [
            (r"/doc", DocumentHandler),
            (r"/doc/(\w+)", DocumentHandler),
            (r"/status/(\d+)", StatusHandler),
            (r"/text/(.*)", TextHandler),
            (r"/echo", EchoHandler),
            (r"/hang", HangHandler),
            (r"/big", BigHandler),
            (r"/switch", SwitchHandler),
        ],
        switch={"up": False},
        requests=[],
    ) as peer:
        yield peer


def make_source(tmp_path, options: dict, *, view: str = "number", timeout: str = "2s"):
    return build_widget_source(tmp_path, one_widget("w", view, {"kind": "http_json", **options}, timeout=timeout), "w")


async def fetch_once(tmp_path, options: dict, **widget):
    source = make_source(tmp_path, options, **widget)
    try:
        return await source.fetch()
    finally:
        await source.close()


# --- picking values ---------------------------------------------------------------


@pytest.mark.parametrize(
    "path, expected",
    [
        ("", DOCUMENT),
        ("base", "USD"),
        ("rates.EUR", 0.92),
        ("items.0.price", 3.5),
        ("items.1", {"price": 4}),
        ("flag", True),
        ("/rates/EUR", 0.92),
        ("/items/1/price", 4),
        ("/rates/a~1b", 1),
        ("/rates/m~0n", 2),
        ("/rates/", 3),  # the empty key, as RFC 6901 allows
    ],
)
def test_path_picks_a_value(path, expected):
    assert JsonPath(path).pick(DOCUMENT) == expected


@pytest.mark.parametrize(
    "path, message",
    [
        ("rates.CHF", 'no key "CHF" at rates.CHF'),
        ("/rates/CHF", 'no key "CHF" at /rates/CHF'),
        ("/rates/a~1c", 'no key "a/c" at /rates/a~1c'),
        ("items.2.price", "list index 2 out of range at items.2 (length 2)"),
        ("/items/-", 'expected a list index at /items/-, got "-"'),
        ("items.01", 'expected a list index at items.01, got "01"'),
        ("items.price", 'expected a list index at items.price, got "price"'),
        ("rates.EUR.x", 'cannot read "x" at rates.EUR.x: rates.EUR is a number, not an object or a list'),
        ("base.x", 'cannot read "x" at base.x: base is a string, not an object or a list'),
    ],
)
def test_path_failures_say_where(path, message):
    with pytest.raises(SourceError) as info:
        JsonPath(path).pick(DOCUMENT)
    assert str(info.value) == message


def test_a_document_that_is_not_a_table_says_so_at_the_top():
    with pytest.raises(SourceError, match=r'^cannot read "x" at x: the top is a number, not an object or a list$'):
        JsonPath("x").pick(42)


# --- fetching from the peer -------------------------------------------------------


@pytest.mark.gen_test(timeout=20)
async def test_fetch_picks_the_rate(peer, tmp_path):
    assert await fetch_once(tmp_path, {"url": peer.url("/doc"), "path": "rates.EUR"}) == 0.92
    assert await fetch_once(tmp_path, {"url": peer.url("/doc"), "path": "/rates/a~1b"}) == 1
    assert await fetch_once(tmp_path, {"url": peer.url("/doc"), "path": "items"}, view="list") == DOCUMENT["items"]


@pytest.mark.gen_test(timeout=20)
async def test_scale_and_offset_apply_to_numbers(peer, tmp_path):
    value = await fetch_once(tmp_path, {"url": peer.url("/doc"), "path": "items.0.price", "scale": 100, "offset": -50})
    assert value == 300
    assert await fetch_once(tmp_path, {"url": peer.url("/doc"), "path": "items.1.price", "offset": 0.5}) == 4.5
    assert await fetch_once(tmp_path, {"url": peer.url("/doc"), "path": "items.1.price", "scale": 2}) == 8


@pytest.mark.gen_test(timeout=20)
async def test_scale_and_offset_apply_to_a_number_written_as_a_string(peer, tmp_path):
    options = {"url": peer.url("/doc"), "path": "sample.value.1"}
    assert await fetch_once(tmp_path, {**options, "scale": 100}) == 25
    assert await fetch_once(tmp_path, {**options, "offset": 1}) == 1.25


@pytest.mark.gen_test(timeout=20)
async def test_post_sends_the_json_body_and_headers(peer, tmp_path):
    source = make_source(
        tmp_path,
        {
            "url": peer.url("/echo"),
            "body": {"query": "rate", "pairs": ["USD", "EUR"], "n": 2},
            "headers": {"X-Key": "k-123"},
        },
    )
    try:
        document = await source.fetch()  # no path: the whole document
    finally:
        await source.close()
    assert document == {
        "method": "POST",
        "body": {"query": "rate", "pairs": ["USD", "EUR"], "n": 2},
        "content_type": "application/json",
        "key": "k-123",
        "accept": "application/json",
    }


SECRET = "s3cr3t-value"

# (endpoint or a full URL, options, widget timeout, expected message with {url} for the shown URL)
FAILURES = [
    ("/status/503", {}, "2s", "HTTP 503 from {url}"),
    ("/status/404", {}, "2s", "HTTP 404 from {url}"),
    ("/status/301", {}, "2s", "HTTP 301 from {url}"),  # a redirect without a Location cannot be followed
    ("/hang", {}, "200ms", "timed out after 0.2s waiting for {url}"),
    ("refused", {}, "2s", "connection refused by {url}"),
    ("/text/not json", {}, "2s", "invalid JSON from {url}: Expecting value: line 1 column 1 (char 0)"),
    ("/text/", {}, "2s", "invalid JSON from {url}: Expecting value: line 1 column 1 (char 0)"),
    ('/text/{"a": 1', {}, "2s", "invalid JSON from {url}: Expecting ',' delimiter: line 1 column 8 (char 7)"),
    ("/doc", {"path": "rates.CHF"}, "2s", 'no key "CHF" at rates.CHF'),
    ("/doc", {"path": "items.9"}, "2s", "list index 9 out of range at items.9 (length 2)"),
    (
        "/doc",
        {"path": "rates.EUR.x"},
        "2s",
        'cannot read "x" at rates.EUR.x: rates.EUR is a number, not an object or a list',
    ),
    ("/doc", {"path": "base", "scale": 2}, "2s", "expected a number at base to scale, got a string"),
    ("/doc", {"path": "flag", "offset": 1}, "2s", "expected a number at flag to scale, got a boolean"),
    ("/doc", {"scale": 2}, "2s", "expected a number at the top to scale, got an object"),
    ("/big", {}, "10s", "response from {url} is too large (more than 8 MiB)"),
]


@pytest.mark.parametrize(
    "endpoint, options, timeout, message", FAILURES, ids=[f"{i}:{f[0]}" for i, f in enumerate(FAILURES)]
)
@pytest.mark.gen_test(timeout=30)
async def test_failures_have_clear_reasons_and_no_secrets(peer, tmp_path, endpoint, options, timeout, message):
    url = refused_url("/rates") if endpoint == "refused" else peer.url(endpoint.replace(" ", "%20"))
    options = {"url": f"{url}?api_key={SECRET}", "headers": {"Authorization": f"Bearer {SECRET}"}, **options}
    with pytest.raises(SourceError) as info:
        await fetch_once(tmp_path, options, timeout=timeout)
    assert str(info.value) == message.format(url=url)
    assert SECRET not in str(info.value)


@pytest.mark.gen_test(timeout=20)
async def test_user_info_in_the_url_is_not_shown(peer, tmp_path):
    url = peer.url("/status/500").replace("http://", f"http://user:{SECRET}@")
    with pytest.raises(SourceError) as info:
        await fetch_once(tmp_path, {"url": url})
    assert str(info.value) == f"HTTP 500 from {peer.url('/status/500')}"


# --- config errors ---------------------------------------------------------------

CONFIG_ERRORS = [
    ({}, "widgets.w.source.url: missing"),
    (
        {"url": "ftp://example.org/x?key=1"},
        'widgets.w.source.url: expected an http:// or https:// URL with a host, got "ftp://..."',
    ),
    (
        {"url": "example.org/rates"},
        "widgets.w.source.url: expected an http:// or https:// URL with a host, got no scheme",
    ),
    (
        {"url": "http://example.org:port/"},
        "widgets.w.source.url: expected an http:// or https:// URL, got one that does not parse",
    ),
    (
        {"url": "https://example.org/", "path": "rates..EUR"},
        'widgets.w.source.path: a dotted path has no empty parts ("rates.EUR", "items.0.price"), got "rates..EUR"',
    ),
    (
        {"url": "https://example.org/", "path": "/a~2b"},
        'widgets.w.source.path: in a JSON pointer "~" is written "~0" and "/" is written "~1", got "/a~2b"',
    ),
    (
        {"url": "https://example.org/", "headers": {"X-Key": 5}},
        "widgets.w.source.headers.X-Key: expected a string, got 5",
    ),
    (
        {"url": "https://example.org/", "headers": {"X Key": "v"}},
        'widgets.w.source.headers."X Key": expected a header name (letters, digits and -)',
    ),
    (
        {"url": "https://example.org/", "headers": {"X-Key": f"{SECRET}\nEvil: 1"}},
        "widgets.w.source.headers.X-Key: a header value cannot contain line breaks or NUL",
    ),
    (
        {"url": "https://example.org/", "headers": "X-Key: v"},
        'widgets.w.source.headers: expected a table, got "X-Key: v"',
    ),
    ({"url": "https://example.org/", "scale": "2"}, 'widgets.w.source.scale: expected a number, got "2"'),
    ({"url": "https://example.org/", "offset": True}, "widgets.w.source.offset: expected a number, got true"),
    (
        {"url": "https://example.org/", "method": "POST"},
        'widgets.w.source: unknown key "method" (expected one of: url, headers, body, path, scale, offset)',
    ),
]


@pytest.mark.parametrize(
    "options, message", CONFIG_ERRORS, ids=[m.split(":")[0] + str(i) for i, (o, m) in enumerate(CONFIG_ERRORS)]
)
def test_config_errors_name_the_key(tmp_path, options, message):
    with pytest.raises(ConfigError) as info:
        make_source(tmp_path, options)
    assert str(info.value) == f"{tmp_path / 'config.toml'}: {message}"
    assert SECRET not in str(info.value)


def test_a_body_json_cannot_carry_is_a_config_error(tmp_path):
    text = one_widget(
        "w", "number", '{ kind = "http_json", url = "https://example.org/", body = { day = 2026-01-02 } }'
    )
    with pytest.raises(ConfigError, match=r"widgets\.w\.source\.body: expected a value JSON can carry"):
        build_widget_source(tmp_path, text, "w")


# --- through the real server --------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_failure_then_recovery_reach_the_stream(peer, servers):
    server = await servers.start(
        loopback_server()
        + one_widget(
            "usd_eur",
            "number",
            {"kind": "http_json", "url": f"{peer.url('/switch')}?key={SECRET}", "path": "rates.EUR"},
            every="100ms",
            timeout="5s",
        )
    )  # a loaded machine must not turn the 503 into a timeout
    client = await StreamClient.open(server.url("/events/main"))
    try:
        failing = data(await client.next_widget_event(timeout=10))
        assert (failing["status"], failing["value"]) == ("error", None)
        assert failing["message"] == f"HTTP 503 from {peer.url('/switch')}"
        peer.settings["switch"]["up"] = True
        recovered = data(await client.next_widget_event(timeout=10))
        assert (recovered["status"], recovered["value"]) == ("ok", 0.9315)
        assert "message" not in recovered
    finally:
        client.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_number_as_a_string_and_a_mapped_state_reach_the_page_as_the_view_wants(peer, servers):
    server = await servers.start(
        loopback_server()
        + dashboard("main", ["share", "light"])
        + widget(
            "share",
            "meter",
            source={"kind": "http_json", "url": peer.url("/doc"), "path": "sample.value.1"},
            every="1h",
        )
        + widget(
            "light",
            "status",
            source={"kind": "http_json", "url": peer.url("/doc"), "path": "sample.state"},
            map={"green": "ok", "red": "down"},
            every="1h",
        )
    )
    client = await StreamClient.open(server.url("/events/main"))
    try:
        seen = {}
        while len(seen) < 2:
            event = await client.next_widget_event(timeout=10)
            if data(event)["status"] == "ok":
                seen[event.type] = data(event)["value"]
    finally:
        client.close()
    assert seen == {"share": 0.25, "light": {"state": "ok"}}
    page = await AsyncHTTPClient().fetch(server.url("/d/main"))
    assert b"0.25" in page.body


@pytest.mark.gen_test(timeout=30)
async def test_a_disabled_widget_neither_runs_nor_shows(peer, servers):
    server = await servers.start(
        loopback_server()
        + dashboard("main", ["shown_rate", "hidden_rate"])
        + widget(
            "shown_rate",
            "number",
            every="50ms",
            on_change=False,
            source={"kind": "http_json", "url": peer.url("/doc/shown"), "path": "rates.EUR"},
        )
        + widget(
            "hidden_rate",
            "number",
            title="Hidden rate",
            every="50ms",
            enabled=False,
            source={"kind": "http_json", "url": peer.url("/doc/hidden"), "path": "rates.EUR"},
        )
    )
    # both would have started together: three runs of one mean the other had its chance
    await wait_until(
        lambda: peer.settings["requests"].count("/doc/shown") >= 3,
        timeout=10,
        message="three fetches of the enabled widget",
    )
    assert "/doc/hidden" not in peer.settings["requests"]
    http = AsyncHTTPClient()
    listing = json.loads((await http.fetch(server.url("/api/widgets"))).body)
    assert [w["id"] for w in listing["widgets"]] == ["shown_rate"]
    page = (await http.fetch(server.url("/d/main"))).body.decode()
    assert "shown_rate" in page and "hidden_rate" not in page and "Hidden rate" not in page
    missing = await http.fetch(server.url("/api/widgets/hidden_rate"), raise_error=False)
    assert missing.code == 404


# --- the bundled config ----------------------------------------------------------


def test_the_bundled_live_rate_is_off_until_enabled(tmp_path, bundled_config):
    bundled = bundled_config.read_text()
    config = load_config(bundled_config, env={})
    live = config.disabled_widgets["usd_eur_live"]
    assert (live.source.kind, live.source.options["path"]) == ("http_json", "rates.EUR")
    assert "usd_eur_live" not in config.dashboard("main").widgets
    # the README's instructions: flip the one key, and it is on the dashboard it is listed on
    section = bundled[bundled.index("[widgets.usd_eur_live]") :]
    section = section[: section.index("\n\n")]
    enabled = bundled.replace(section, section.replace("enabled = false", "enabled = true"))
    assert enabled != bundled
    (tmp_path / "config.toml").write_text(enabled)
    config = load_config(tmp_path / "config.toml")
    assert config.widgets["usd_eur_live"].enabled
    assert config.dashboard("main").widgets[:2] == ("usd_eur", "usd_eur_live")


def test_the_bundled_config_checks_clean(bundled_config):
    # No --config: ./config.toml, as the README's quick start runs it.
    result = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "check"],
        cwd=bundled_config.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("config.toml: ok")


# --- hostile upstreams -------------------------------------------------------------

BOMB = gzip.compress(bytes(256 * 1024 * 1024), 9)  # 256 MiB of zeros in about 250 KB
GOOD = b'{"rates": {"EUR": 0.92}}'


def answer(*pieces: bytes, hang: bool = False):
    async def write(_head):
        for piece in pieces:
            yield piece
        if hang:
            await asyncio.Event().wait()

    return write


async def endless_chunks(_head):
    yield b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    while True:
        yield b"10000\r\n" + b" " * 0x10000 + b"\r\n"


async def endless_headers(_head):
    yield b"HTTP/1.1 200 OK\r\n"
    while True:
        yield b"X-Padding: " + b"a" * 1000 + b"\r\n"


async def drip(_head):
    yield b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
    while True:
        yield b" "
        await asyncio.sleep(0.2)


HOSTILE = {
    "/good": answer(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(GOOD) + GOOD),
    "/announced": answer(b"HTTP/1.1 200 OK\r\nContent-Length: 104857600\r\n\r\n{", hang=True),
    "/endless": endless_chunks,
    "/bomb": answer(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(BOMB) + BOMB),
    "/headers": endless_headers,
    "/drip": drip,
    "/ftp": answer(b"HTTP/1.1 302 Found\r\nLocation: ftp://127.0.0.1/rates\r\nContent-Length: 0\r\n\r\n"),
    "/loop": answer(b"HTTP/1.1 302 Found\r\nLocation: /loop\r\nContent-Length: 0\r\n\r\n"),
    "/latin1": answer(b'HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n{"a": "caf\xe9"}'),
}

# (path, the message: {url} is the URL as shown)
HOSTILE_ANSWERS = [
    ("/announced", "response from {url} is too large (more than 8 MiB)"),
    ("/endless", "response from {url} is too large (more than 8 MiB)"),
    ("/bomb", "response from {url} is too large (more than 8 MiB)"),
    ("/headers", "response headers from {url} are larger than 64 KiB"),
    ("/drip", "timed out after 1s waiting for {url}"),
    ("/ftp", "{url} redirected to a URL that is not http:// or https://"),
    ("/loop", "HTTP 302 from {url}"),
    (
        "/latin1",
        "invalid JSON from {url}: 'utf-8' codec can't decode byte 0xe9 in position 10: invalid continuation byte",
    ),
]


NOT_CHECKED = ("/ftp", "/loop", "/latin1")  # a check follows no redirect and reads no JSON
HOSTILE_CASES = [
    (kind, path, message)
    for path, message in HOSTILE_ANSWERS
    for kind in ("http_json", "prometheus", "http_check")
    if not (kind == "http_check" and path in NOT_CHECKED)
]


@pytest.mark.parametrize("kind, path, message", HOSTILE_CASES, ids=[f"{k}:{p}" for k, p, _ in HOSTILE_CASES])
@pytest.mark.gen_test(timeout=30)
async def test_a_hostile_upstream_is_refused_in_time_with_its_reason_and_the_next_good_answer_is_read(
    tmp_path, kind, path, message
):
    """The upstream announces or streams more than any value, bombs gzip, sends headers
    without end, drips, redirects away or in circles, or sends bytes that are not UTF-8:
    the fetch ends within the widget's timeout with one clear reason, and the same
    source then reads a good answer."""
    async with RawPeer({**HOSTILE, **{f"{path}/api/v1/query": write for path, write in HOSTILE.items()}}) as peer:
        view, extra, good = {
            "http_json": ("number", {"path": "rates.EUR"}, 0.92),
            "prometheus": ("number", {"query": "up"}, None),
            "http_check": ("status", {}, {"state": "ok", "code": 200}),
        }[kind]
        suffix = "/api/v1/query" if kind == "prometheus" else ""
        if kind == "prometheus" and path in ("/latin1", "/loop"):
            message = f"HTTP {'200' if path == '/latin1' else '302'} from {{url}}, not Prometheus's JSON"
        if kind == "http_check":
            message = message.replace("after 1s", "after 0.9s")  # a check takes 90% of the widget's timeout

        def build(at: str):
            options = {"kind": kind, "url": peer.url(at), **extra}
            return build_widget_source(tmp_path, one_widget("w", view, options, timeout="1s"), "w")

        source = build(path)
        started = asyncio.get_running_loop().time()
        try:
            if kind == "http_check":
                result = await source.fetch()
                assert result == {"state": "down", "detail": message.format(url=peer.url(path))}
            else:
                with pytest.raises(SourceError) as info:
                    await source.fetch()
                assert str(info.value) == message.format(url=peer.url(path + suffix))
            assert asyncio.get_running_loop().time() - started < 1.0
            if good is not None:  # the same client, a sound upstream: a value again
                source.url = peer.url("/good")
                fetched = await source.fetch()
                assert fetched == good if kind != "http_check" else fetched.items() >= good.items()
        finally:
            await source.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_slow_upstream_times_out_through_the_scheduler_with_one_line_and_no_traceback(tmp_path, caplog):
    """Tornado's own timer ends the request before the scheduler gives up on it: had the
    scheduler cancelled the fetch first, Tornado would log a traceback on every run."""
    caplog.set_level(logging.INFO)
    async with RawPeer(HOSTILE) as peer:
        text = one_widget("w", "number", {"kind": "http_json", "url": peer.url("/drip")}, timeout="1s")
        text = '[storage]\nurl = "sqlite+aiosqlite:///data/test.db"\n\n' + text
        config = load_config(write_config(tmp_path, text))
        store = Store(config.storage.url)
        await store.open()
        source = build_source(config, config.widgets["w"])
        scheduler = Scheduler(config.widgets, {"w": source}, Recorder(store, lambda samples: None))
        try:
            for _ in range(2):
                await scheduler.run_once(config.widgets["w"], source)
            await wait_until(lambda: peer.closed == 2, timeout=5, message="both requests closed")
        finally:
            await scheduler.stop()
            await store.close()
    assert scheduler.states["w"].message == f"timed out after 1s waiting for {peer.url('/drip')}"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        f"widget w failing: timed out after 1s waiting for {peer.url('/drip')}"
    ]
    assert not [r for r in caplog.records if r.exc_info]
