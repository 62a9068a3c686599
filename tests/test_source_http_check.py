"""The http_check source against a real Tornado server on a loopback port: up, warn
and down with their reasons, and a check reaching an open stream."""

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tornado.web
from tornado.httpclient import AsyncHTTPClient

from dashboard.config import ConfigError
from dashboard.core.views import accept
from tests.backends import free_port
from tests.configs import loopback_server, one_widget
from tests.helpers import StreamClient, build_widget_source, data, wait_until
from tests.peers import refused_url, serving

ROOT = Path(__file__).resolve().parent.parent
SECRET = "s3cr3t-value"


class StatusHandler(tornado.web.RequestHandler):
    def get(self, code):
        self.settings["methods"].append(self.request.method)
        self.set_status(int(code))
        if int(code) in (301, 302):
            self.set_header("Location", "/status/500")  # followed, the check would say 500
        elif int(code) != 204:
            self.write("all systems healthy")

    head = get


class SlowHandler(tornado.web.RequestHandler):
    async def get(self):
        # Slower than the 1 ms warn threshold by construction, whatever the machine.
        await asyncio.sleep(0.05)
        self.write("ok")


class HangHandler(tornado.web.RequestHandler):
    async def get(self):
        await self.settings["release"].wait()


class SwitchHandler(tornado.web.RequestHandler):
    def get(self):
        self.set_status(200 if self.settings["switch"]["up"] else 503)


@pytest.fixture
def peer(io_loop):
    with serving(
        io_loop,
        [
            (r"/status/(\d+)", StatusHandler),
            (r"/slow", SlowHandler),
            (r"/hang", HangHandler),
            (r"/switch", SwitchHandler),
        ],
        switch={"up": True},
        methods=[],
    ) as peer:
        yield peer


def make_source(tmp_path, options: dict, *, view: str = "status", timeout: str = "2s"):
    return build_widget_source(tmp_path, one_widget("w", view, {"kind": "http_check", **options}, timeout=timeout), "w")


async def check(tmp_path, options: dict, **widget) -> dict:
    source = make_source(tmp_path, options, **widget)
    try:
        value = await source.fetch()
    finally:
        await source.close()
    assert accept("status", value) == value  # what the status view takes, unchanged
    return value


# (endpoint, options, widget timeout, expected value without latency_ms)
CASES = [
    ("/status/200", {}, "2s", {"state": "ok", "code": 200}),
    ("/status/204", {}, "2s", {"state": "ok", "code": 204}),
    ("/status/302", {}, "2s", {"state": "ok", "code": 302}),  # not followed
    ("/status/503", {}, "2s", {"state": "down", "code": 503, "detail": "HTTP 503 (expected 2xx or 3xx)"}),
    ("/status/404", {}, "2s", {"state": "down", "code": 404, "detail": "HTTP 404 (expected 2xx or 3xx)"}),
    ("/status/200", {"expect_status": 204}, "2s", {"state": "down", "code": 200, "detail": "HTTP 200 (expected 204)"}),
    ("/status/204", {"expect_status": [200, 204]}, "2s", {"state": "ok", "code": 204}),
    ("/status/503", {"expect_status": [503]}, "2s", {"state": "ok", "code": 503}),
    ("/status/302", {"expect_status": 200}, "2s", {"state": "down", "code": 302, "detail": "HTTP 302 (expected 200)"}),
    ("/status/200", {"expect_body": "healthy"}, "2s", {"state": "ok", "code": 200}),
    (
        "/status/200",
        {"expect_body": "on fire"},
        "2s",
        {"state": "down", "code": 200, "detail": "the response does not contain 'on fire'"},
    ),
    ("/status/200", {"method": "HEAD"}, "2s", {"state": "ok", "code": 200}),
    ("/status/200", {"warn_latency": "10s"}, "2s", {"state": "ok", "code": 200}),
    ("/hang", {}, "200ms", {"state": "down", "detail": "timed out after 0.18s waiting for {url}"}),
    ("refused", {}, "2s", {"state": "down", "detail": "connection refused by {url}"}),
]


@pytest.mark.parametrize(
    "endpoint, options, timeout, expected", CASES, ids=[f"{i}:{c[0]}" for i, c in enumerate(CASES)]
)
@pytest.mark.gen_test(timeout=20)
async def test_check_states(peer, tmp_path, endpoint, options, timeout, expected):
    url = refused_url("/health") if endpoint == "refused" else peer.url(endpoint)
    options = {"url": f"{url}?token={SECRET}", "headers": {"Authorization": SECRET}, **options}
    value = await check(tmp_path, options, timeout=timeout)
    if "code" in expected:
        assert isinstance(value.pop("latency_ms"), int)
    else:
        assert "latency_ms" not in value  # no response, no latency
    if "detail" in expected:
        expected["detail"] = expected["detail"].format(url=url)
    assert value == expected
    assert SECRET not in json.dumps(value)


@pytest.mark.gen_test(timeout=20)
async def test_head_is_sent_as_head(peer, tmp_path):
    await check(tmp_path, {"url": peer.url("/status/200"), "method": "HEAD"})
    await check(tmp_path, {"url": peer.url("/status/200")})
    assert peer.settings["methods"] == ["HEAD", "GET"]


@pytest.mark.gen_test(timeout=20)
async def test_a_slow_answer_is_a_warning(peer, tmp_path):
    value = await check(tmp_path, {"url": peer.url("/slow"), "warn_latency": "1ms"})
    assert (value["state"], value["code"]) == ("warn", 200)
    assert value["latency_ms"] >= 50
    assert re.fullmatch(r"slow: \d+ ms \(warn above 1 ms\)", value["detail"])


@pytest.mark.gen_test(timeout=20)
async def test_a_failed_check_that_is_also_slow_is_down(peer, tmp_path):
    value = await check(tmp_path, {"url": peer.url("/slow"), "warn_latency": "1ms", "expect_status": 204})
    assert (value["state"], value["detail"]) == ("down", "HTTP 200 (expected 204)")


CONFIG_ERRORS = [
    (
        {"url": "http://example.org/"},
        "number",
        'widgets.w.source.kind: http_check gives a status: use view = "status", not "number"',
    ),
    ({}, "status", "widgets.w.source.url: missing"),
    (
        {"url": "file:///etc/passwd"},
        "status",
        'widgets.w.source.url: expected an http:// or https:// URL with a host, got "file://..."',
    ),
    (
        {"url": "http://example.org/", "method": "POST"},
        "status",
        'widgets.w.source.method: expected one of: GET, HEAD, got "POST"',
    ),
    (
        {"url": "http://example.org/", "method": "HEAD", "expect_body": "ok"},
        "status",
        'widgets.w.source.expect_body: a HEAD response has no body: use method = "GET"',
    ),
    (
        {"url": "http://example.org/", "expect_status": "200"},
        "status",
        "widgets.w.source.expect_status: expected a status code from 100 to 599, or an array of them",
    ),
    (
        {"url": "http://example.org/", "expect_status": 99},
        "status",
        "widgets.w.source.expect_status: expected a status code from 100 to 599, or an array of them",
    ),
    (
        {"url": "http://example.org/", "expect_status": []},
        "status",
        "widgets.w.source.expect_status: expected a status code from 100 to 599, or an array of them",
    ),
    (
        {"url": "http://example.org/", "expect_status": [200, True]},
        "status",
        "widgets.w.source.expect_status: expected a status code from 100 to 599, or an array of them",
    ),
    (
        {"url": "http://example.org/", "warn_latency": 500},
        "status",
        'widgets.w.source.warn_latency: expected a duration like "5s", "2m" or "1h30m", got 500',
    ),
    (
        {"url": "http://example.org/", "warn_latency": "0s"},
        "status",
        'widgets.w.source.warn_latency: expected a duration greater than 0, got "0s"',
    ),
    (
        {"url": "self:healthz"},
        "status",
        'widgets.w.source.url: expected a path after "self:", like "self:/healthz"',
    ),
    (
        {"url": "http://example.org/", "expect": 200},
        "status",
        'widgets.w.source: unknown key "expect" '
        "(expected one of: url, method, headers, expect_status, expect_body, warn_latency)",
    ),
]


@pytest.mark.parametrize("options, view, message", CONFIG_ERRORS, ids=[str(i) for i in range(len(CONFIG_ERRORS))])
def test_config_errors_name_the_key(tmp_path, options, view, message):
    with pytest.raises(ConfigError) as info:
        make_source(tmp_path, options, view=view)
    assert str(info.value) == f"{tmp_path / 'config.toml'}: {message}"


@pytest.mark.gen_test(timeout=30)
async def test_up_then_down_reach_the_stream(peer, servers):
    server = await servers.start(
        loopback_server()
        + one_widget(
            "site", "status", {"kind": "http_check", "url": peer.url("/switch")}, every="100ms", on_change=False
        )
    )
    client = await StreamClient.open(server.url("/events/main"))
    try:
        up = data(await client.next_widget_event(timeout=10))
        assert (up["status"], up["value"]["state"], up["value"]["code"]) == ("ok", "ok", 200)
        peer.settings["switch"]["up"] = False
        while (event := data(await client.next_widget_event(timeout=10)))["value"]["state"] == "ok":
            pass
        # down is a value the widget shows, not a failing source
        assert event["status"] == "ok"
        assert event["value"] == {
            "state": "down",
            "code": 503,
            "latency_ms": event["value"]["latency_ms"],
            "detail": "HTTP 503 (expected 2xx or 3xx)",
        }
    finally:
        client.close()


# --- "self:": the server checking itself, wherever it listens ----------------------------------


SELF_CHECK = one_widget(
    "self_check", "status", {"kind": "http_check", "url": "self:/healthz", "expect_body": '"ready":true'}, every="100ms"
)


@pytest.mark.gen_test(timeout=30)
async def test_a_self_url_reaches_the_server_on_the_port_it_got(servers):
    server = await servers.start(loopback_server(port=0) + SELF_CHECK)
    assert server.runtime.config.listening == f"http://127.0.0.1:{server.port}"
    client = await StreamClient.open(server.url("/events/main"))
    try:
        while (event := data(await client.next_widget_event(timeout=10)))["value"] is None:
            pass
    finally:
        client.close()
    assert event["status"] == "ok"
    assert (event["value"]["state"], event["value"]["code"]) == ("ok", 200), event


def test_a_self_url_goes_to_the_configured_address_until_the_server_listens(tmp_path):
    # What `check` builds: nothing is fetched, but the URL is whole.
    listening_everywhere = loopback_server(port=9123).replace('host = "127.0.0.1"', 'host = "0.0.0.0"')
    assert make_source_from(tmp_path, listening_everywhere + SELF_CHECK).url == "http://127.0.0.1:9123/healthz"
    on_ipv6 = loopback_server(port=9124).replace('host = "127.0.0.1"', 'host = "::"')
    assert make_source_from(tmp_path, on_ipv6 + SELF_CHECK).url == "http://[::1]:9124/healthz"


def make_source_from(tmp_path, text: str):
    return build_widget_source(tmp_path, text, "self_check")


@pytest.mark.gen_test(timeout=60)
async def test_the_bundled_self_check_is_ok_on_any_port(bundled_config, tmp_path):
    """The first screen: the bundled config started with --port (not its 8888) shows
    "This dashboard" ok, where it used to show a big red DOWN."""
    port = free_port()
    log = tmp_path / "server.log"
    with open(log, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "run.py"), "serve", "--config", str(bundled_config), "--port", str(port)],
            cwd=bundled_config.parent,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        http = AsyncHTTPClient()

        async def self_check():
            try:
                response = await http.fetch(f"http://127.0.0.1:{port}/api/widgets/self_check", raise_error=False)
            except OSError:
                return None  # not listening yet
            assert process.poll() is None, log.read_text()
            sample = json.loads(response.body).get("sample") if response.code == 200 else None
            return sample if sample and sample["value"] else None

        sample = await wait_until(self_check, timeout=50, interval=0.1, message="the self check's first value")
        assert sample["status"] == "ok" and sample["value"]["code"] == 200, sample
        # Reached, so never down; on a loaded machine the answer may rightly take longer
        # than the bundled 500 ms and read "slow", which is a warning about time, not reach.
        state = sample["value"]["state"]
        assert state == "ok" or (state == "warn" and sample["value"]["detail"].startswith("slow: ")), sample
    finally:
        process.terminate()
        process.wait(timeout=20)
