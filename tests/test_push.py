"""The push API: POST /api/widgets/<id> and POST /api/widgets, against a real server.

Requests go through http.client (in a thread, so the server keeps running on the
test's loop): it sends exactly the headers a test names, and no Content-Type of
its own.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import tornado.httpserver
import tornado.netutil

from dashboard.core.auth import match_token
from dashboard.web.app import make_app
from dashboard.web.base import parse_bearer
from dashboard.web.push import HOW_TO_ENABLE, is_json_content_type
from tests.configs import dashboard, push_widgets, widget
from tests.helpers import BASE_CONFIG, TOKEN, StreamClient, data

ROOT = Path(__file__).resolve().parent.parent

AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"Content-Type": "application/json"}
AUTH_JSON = {**AUTH, **JSON}

# BASE_CONFIG (push widgets a: number, b: text, c: number) plus a small body limit
# and the widgets a push must not reach or must refuse a value for.
MAX_BODY = 8192
TABLE_CONFIG = (
    BASE_CONFIG.replace("[api]\n", f'[api]\nmax_body = "{MAX_BODY // 1024}KiB"\n')
    + dashboard("extra", ["gauge", "cpu", "clock"])
    + push_widgets(gauge="meter")
    + widget("cpu", "meter", source={"kind": "random_walk", "start": 50})
    + widget("clock", "clock")
)
NO_TOKENS_CONFIG = BASE_CONFIG.replace('tokens = { test = "test-token-0123456789" }\n', "")


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def json(self):
        return json.loads(self.body)


@dataclass(frozen=True)
class Declared:
    """A body that is announced in Content-Length but never sent."""

    length: int | str


@dataclass(frozen=True)
class Chunked:
    """A body sent with Transfer-Encoding: chunked, so no length is announced."""

    data: bytes


def _exchange(port: int, method: str, path: str, headers: dict, body) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        if isinstance(body, Declared):
            conn.putheader("Content-Length", str(body.length))
        elif isinstance(body, Chunked):
            conn.putheader("Transfer-Encoding", "chunked")
        elif body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        if isinstance(body, Chunked):
            conn.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body.data), body.data))
        elif isinstance(body, bytes):
            conn.send(body)
        response = conn.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        conn.close()


async def request(server, method: str, path: str, headers: dict | None = None, body=None) -> Reply:
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, _exchange, server.port, method, path, headers or {}, body)


async def push(server, widget: str, payload, headers=AUTH_JSON) -> Reply:
    return await request(server, "POST", f"/api/widgets/{widget}", headers, payload)


def event_id(event) -> int:
    return int(event.last_event_id)


async def stored_count(server, widgets=("a", "b", "c")) -> int:
    return sum([len(await server.runtime.store.history(w)) for w in widgets])


# -- the pure parts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header, token",
    [
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),
        ("BEARER   abc  ", "abc"),
        ("Bearer", None),
        ("Bearer ", None),
        ("Basic abc", None),
        ("abc", None),
        ("", None),
    ],
)
def test_bearer_token(header, token):
    assert parse_bearer(header) == token


def test_match_token_finds_the_matching_token_by_its_bytes():
    tokens = {"ci": "ci-token-123456", "cron": "cron-token-654321", "é": "clé-secrète"}
    assert match_token(tokens, b"cron-token-654321") == "cron"
    assert match_token(tokens, "clé-secrète".encode()) == "é"
    assert match_token(tokens, b"cron-token-65432") is None
    assert match_token(tokens, b"") is None
    assert match_token({}, b"anything") is None


@pytest.mark.parametrize(
    "header, ok",
    [
        ("application/json", True),
        ("Application/JSON", True),
        ("application/json; charset=utf-8", True),
        ('application/json;charset="UTF-8"', True),
        ("application/json; charset=latin-1", False),
        ("application/jsonx", False),
        ("text/plain", False),
        ("application/x-www-form-urlencoded", False),
        ("", False),
    ],
)
def test_is_json_content_type(header, ok):
    assert is_json_content_type(header) is ok


# -- every answer, as a table ---------------------------------------------------------------

WRONG = {"Authorization": "Bearer wrong-token-9876543210", **JSON}
NOT_FOUND = 'unknown widget "nope"'

CASES = [
    # (id, method, path, headers, body, status, error substring; None for a success)
    ("push", "POST", "/api/widgets/a", AUTH_JSON, {"value": 1.5}, 200, None),
    ("push text", "POST", "/api/widgets/b", AUTH_JSON, {"value": "deployed"}, 200, None),
    (
        "charset",
        "POST",
        "/api/widgets/a",
        {**AUTH, "Content-Type": "application/json; charset=utf-8"},
        {"value": 2},
        200,
        None,
    ),
    (
        "lower-case scheme",
        "POST",
        "/api/widgets/a",
        {"Authorization": f"bearer {TOKEN}", **JSON},
        {"value": 3},
        200,
        None,
    ),
    ("error status", "POST", "/api/widgets/a", AUTH_JSON, {"status": "error", "message": "down"}, 200, None),
    ("batch", "POST", "/api/widgets", AUTH_JSON, {"values": {"a": 1, "b": "x"}}, 200, None),
    ("get one still works", "GET", "/api/widgets/a", {}, None, 200, None),
    ("get all still works", "GET", "/api/widgets", {}, None, 200, None),
    ("get unknown", "GET", "/api/widgets/nope", {}, None, 404, "unknown widget"),
    # 401 comes first: a stranger learns nothing about widgets or bodies
    ("no token", "POST", "/api/widgets/a", JSON, {"value": 1}, 401, "missing token"),
    ("token in URL", "POST", f"/api/widgets/a?access_token={TOKEN}", JSON, {"value": 1}, 401, "not in the URL"),
    ("wrong token", "POST", "/api/widgets/a", WRONG, {"value": 1}, 401, "invalid token"),
    (
        "basic auth",
        "POST",
        "/api/widgets/a",
        {"Authorization": "Basic dGVzdDp0ZXN0", **JSON},
        {"value": 1},
        401,
        "invalid token",
    ),
    ("scheme only", "POST", "/api/widgets/a", {"Authorization": "Bearer", **JSON}, {"value": 1}, 401, "invalid token"),
    ("wrong token, unknown widget", "POST", "/api/widgets/nope", WRONG, {"value": 1}, 401, "invalid token"),
    ("wrong token, bad body", "POST", "/api/widgets/a", WRONG, b"{", 401, "invalid token"),
    ("wrong token, body too large", "POST", "/api/widgets/a", WRONG, Declared(10**6), 401, "invalid token"),
    ("batch, no token", "POST", "/api/widgets", JSON, {"values": {"a": 1}}, 401, "missing token"),
    # 415
    ("no content type", "POST", "/api/widgets/a", AUTH, {"value": 1}, 415, "got none"),
    (
        "form content type",
        "POST",
        "/api/widgets/a",
        {**AUTH, "Content-Type": "application/x-www-form-urlencoded"},
        {"value": 1},
        415,
        'expected Content-Type: application/json, got "application/x-www-form-urlencoded"',
    ),
    (
        "latin-1 JSON",
        "POST",
        "/api/widgets/a",
        {**AUTH, "Content-Type": "application/json; charset=latin-1"},
        {"value": 1},
        415,
        "expected Content-Type: application/json",
    ),
    ("415 before 404", "POST", "/api/widgets/nope", {**AUTH, "Content-Type": "text/plain"}, {"value": 1}, 415, ""),
    (
        "gzip content encoding",
        "POST",
        "/api/widgets/a",
        {**AUTH_JSON, "Content-Encoding": "gzip"},
        {"value": 1},
        415,
        'expected a body without Content-Encoding, got "gzip"',
    ),
    (
        "identity encoding",
        "POST",
        "/api/widgets/a",
        {**AUTH_JSON, "Content-Encoding": "Identity"},
        {"value": 1},
        200,
        None,
    ),
    # 413: by the announced length (the body is never sent), and by the bytes received
    (
        "declared too large",
        "POST",
        "/api/widgets/a",
        AUTH_JSON,
        Declared(MAX_BODY + 1),
        413,
        f"body too large: at most {MAX_BODY} bytes",
    ),
    (
        "chunked too large",
        "POST",
        "/api/widgets/a",
        AUTH_JSON,
        Chunked(b'{"value": "' + b"x" * MAX_BODY + b'"}'),
        413,
        "body too large",
    ),
    ("absurd length", "POST", "/api/widgets/a", AUTH_JSON, Declared("9" * 30), 413, "body too large"),
    ("413 before 404", "POST", "/api/widgets/nope", AUTH_JSON, Declared(MAX_BODY + 1), 413, "body too large"),
    ("chunked within the limit", "POST", "/api/widgets/a", AUTH_JSON, Chunked(b'{"value": 7}'), 200, None),
    # 400: the body
    ("invalid JSON", "POST", "/api/widgets/a", AUTH_JSON, b'{"value": ', 400, "invalid JSON"),
    ("empty body", "POST", "/api/widgets/a", AUTH_JSON, b"", 400, "invalid JSON"),
    ("not UTF-8", "POST", "/api/widgets/a", AUTH_JSON, b'{"value": "\xff"}', 400, "invalid JSON: not UTF-8"),
    ("NaN", "POST", "/api/widgets/a", AUTH_JSON, b'{"value": NaN}', 400, "NaN is not JSON"),
    ("past the doubles, to text", "POST", "/api/widgets/b", AUTH_JSON, b'{"value": 1e400}', 400, "finite number"),
    (
        "nested too deeply",
        "POST",
        "/api/widgets/b",
        AUTH_JSON,
        b'{"value": ' + b"[" * 4000 + b"]" * 4000 + b"}",
        400,
        "nested too deeply",
    ),
    (
        "array body",
        "POST",
        "/api/widgets/a",
        AUTH_JSON,
        [1],
        400,
        'expected a JSON object like {"value": ...}, got an array',
    ),
    ("bare value", "POST", "/api/widgets/a", AUTH_JSON, b"1.5", 400, "expected a JSON object"),
    ("missing value", "POST", "/api/widgets/a", AUTH_JSON, {}, 400, 'missing "value"'),
    (
        "unknown key",
        "POST",
        "/api/widgets/a",
        AUTH_JSON,
        {"value": 1, "colour": "red"},
        400,
        'unknown key "colour" (expected "value", "status", "message")',
    ),
    (
        "unknown status",
        "POST",
        "/api/widgets/a",
        AUTH_JSON,
        {"value": 1, "status": "warn"},
        400,
        'status: expected "ok" or "error", got "warn"',
    ),
    (
        "message without error",
        "POST",
        "/api/widgets/a",
        AUTH_JSON,
        {"value": 1, "message": "hi"},
        400,
        'message: expected a string, with "status": "error"',
    ),
    ("400 before 404", "POST", "/api/widgets/nope", AUTH_JSON, b"{", 400, "invalid JSON"),
    # 404, 409
    ("unknown widget", "POST", "/api/widgets/nope", AUTH_JSON, {"value": 1}, 404, NOT_FOUND),
    (
        "a ticker's widget",
        "POST",
        "/api/widgets/cpu",
        AUTH_JSON,
        {"value": 1},
        409,
        'widget "cpu" is fed by its "random_walk" source, not by pushes',
    ),
    (
        "a clock",
        "POST",
        "/api/widgets/clock",
        AUTH_JSON,
        {"value": 1},
        409,
        'widget "clock" is a clock and takes no values',
    ),
    ("409 before a bad value", "POST", "/api/widgets/cpu", AUTH_JSON, {"value": "hello"}, 409, "not by pushes"),
    # 400: the value
    (
        "text to a meter",
        "POST",
        "/api/widgets/gauge",
        AUTH_JSON,
        {"value": "hello"},
        400,
        "widget \"gauge\" (meter): expected a number, got text 'hello'",
    ),
    (
        "object to text",
        "POST",
        "/api/widgets/b",
        AUTH_JSON,
        {"value": {"x": 1}},
        400,
        'widget "b" (text): expected text',
    ),
    ("null to a number", "POST", "/api/widgets/a", AUTH_JSON, {"value": None}, 400, "expected a number, got null"),
    # the batch
    ("batch, unknown widget", "POST", "/api/widgets", AUTH_JSON, {"values": {"a": 1, "nope": 2}}, 404, NOT_FOUND),
    (
        "batch, a ticker's widget",
        "POST",
        "/api/widgets",
        AUTH_JSON,
        {"values": {"a": 1, "cpu": 2}},
        409,
        'widget "cpu" is fed by its "random_walk" source',
    ),
    (
        "batch, a bad value",
        "POST",
        "/api/widgets",
        AUTH_JSON,
        {"values": {"a": 1, "gauge": "high"}},
        400,
        'widget "gauge" (meter): expected a number',
    ),
    (
        "batch, 404 before a bad value",
        "POST",
        "/api/widgets",
        AUTH_JSON,
        {"values": {"gauge": "high", "nope": 1}},
        404,
        NOT_FOUND,
    ),
    ("batch, empty", "POST", "/api/widgets", AUTH_JSON, {"values": {}}, 400, "values: expected an object"),
    ("batch, an array", "POST", "/api/widgets", AUTH_JSON, {"values": [1]}, 400, "got an array"),
    ("batch, missing values", "POST", "/api/widgets", AUTH_JSON, {}, 400, "got nothing"),
    (
        "batch, single form",
        "POST",
        "/api/widgets",
        AUTH_JSON,
        {"value": 1},
        400,
        'unknown key "value" (expected "values")',
    ),
    # 405, as JSON
    ("PUT", "PUT", "/api/widgets/a", AUTH_JSON, {"value": 1}, 405, "Method Not Allowed"),
    ("DELETE", "DELETE", "/api/widgets", AUTH, None, 405, "Method Not Allowed"),
]


@pytest.mark.parametrize(
    "method, path, headers, body, status, error", [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
@pytest.mark.gen_test(timeout=30)
async def test_push_answers(servers, method, path, headers, body, status, error):
    server = await servers.start(TABLE_CONFIG, run_sources=False)
    reply = await request(server, method, path, headers, body)
    assert reply.status == status, reply.body
    assert reply.headers["Content-Type"] == "application/json; charset=utf-8"
    if error is not None:
        assert error in reply.json["error"]
        assert list(reply.json) == ["error"]
    if status == 401:
        assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    stored = await stored_count(server, ("a", "b", "c", "gauge"))
    if method == "POST" and status != 200:
        assert stored == 0
    elif method == "POST" and path == "/api/widgets":
        assert set(reply.json["ids"]) == set(body["values"]) and stored == len(body["values"])
    elif method == "POST":
        assert set(reply.json) == {"id", "widget", "ts"} and stored == 1
        assert reply.json["id"] == await server.runtime.store.last_id()


# -- what a push does --------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_a_pushed_value_reaches_an_open_stream_with_its_id(servers):
    server = await servers.start()
    client = await StreamClient.open(server.url("/events/main"))
    assert (await client.next_event()).type == "hello"

    reply = await push(server, "b", {"value": "line 1\nline 2 <script>alert(1)</script> \u2028 ok"})
    assert reply.status == 200
    event = await client.next_widget_event()
    assert event.type == "b"
    assert event.last_event_id == str(reply.json["id"])
    assert data(event) == {
        "widget": "b",
        "value": "line 1\nline 2 <script>alert(1)</script> \u2028 ok",
        "ts": reply.json["ts"],
        "status": "ok",
    }

    reply = await request(server, "GET", "/api/widgets/b")
    assert reply.json["sample"]["id"] == event_id(event)
    client.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_number_pushed_as_text_is_stored_as_a_number_and_a_map_applies(servers):
    server = await servers.start(
        BASE_CONFIG.replace('widgets = ["a", "b"]', 'widgets = ["a", "b", "light"]', 1)
        + widget("light", "status", source={"kind": "push"}, map={"green": "ok", "failed": "down"})
    )
    assert (await push(server, "a", {"value": "12.5"})).status == 200
    assert (await push(server, "light", {"value": "failed"})).status == 200
    latest = await server.runtime.store.latest(["a", "light"])
    assert (latest["a"].value, latest["light"].value) == (12.5, {"state": "down"})
    refused = await push(server, "light", {"value": "amber"})  # not in the map, and no state
    assert refused.status == 400 and "got text 'amber'" in refused.json["error"]


@pytest.mark.gen_test(timeout=30)
async def test_an_error_push_keeps_the_last_value_and_says_why(servers):
    server = await servers.start()
    client = await StreamClient.open(server.url("/events/main"))
    assert (await client.next_event()).type == "hello"
    assert (await push(server, "a", {"value": 42})).status == 200
    assert data(await client.next_widget_event())["value"] == 42

    reply = await push(server, "a", {"status": "error", "message": "backup failed"})
    assert reply.status == 200
    event = await client.next_widget_event()
    assert event.last_event_id == str(reply.json["id"])
    assert data(event) == {
        "widget": "a",
        "value": 42,
        "ts": reply.json["ts"],
        "status": "error",
        "message": "backup failed",
    }
    client.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_wrong_token_stores_nothing(servers):
    server = await servers.start()
    reply = await push(server, "a", {"value": 1}, headers=WRONG)
    assert reply.status == 401
    assert await stored_count(server) == 0
    assert await server.runtime.store.last_id() == 0
    # and the same push with the right token is stored
    assert (await push(server, "a", {"value": 1})).status == 200
    assert await stored_count(server) == 1


@pytest.mark.gen_test(timeout=30)
async def test_a_batch_is_all_or_nothing(servers):
    server = await servers.start()
    main = await StreamClient.open(server.url("/events/main"))
    other = await StreamClient.open(server.url("/events/other"))
    for client in (main, other):
        assert (await client.next_event()).type == "hello"

    # c is a number: the whole batch is refused, a and b included
    reply = await request(server, "POST", "/api/widgets", AUTH_JSON, {"values": {"a": 1, "b": "fine", "c": "oops"}})
    assert reply.status == 400
    assert 'widget "c" (number)' in reply.json["error"]
    assert await stored_count(server) == 0

    reply = await request(server, "POST", "/api/widgets", AUTH_JSON, {"values": {"a": 2, "b": "next", "c": 3}})
    assert reply.status == 200
    ids = reply.json["ids"]
    assert ids["a"] < ids["b"] < ids["c"]
    # Nothing of the refused batch was streamed: the next events are this batch's, in id order.
    got_main = [(e.type, event_id(e), data(e)["value"]) for e in await main.collect(2)]
    assert got_main == [("a", ids["a"], 2), ("b", ids["b"], "next")]
    got_other = [(e.type, event_id(e), data(e)["value"]) for e in await other.collect(2)]
    assert got_other == [("b", ids["b"], "next"), ("c", ids["c"], 3)]
    assert await stored_count(server) == 3
    main.close()
    other.close()


@pytest.mark.gen_test(timeout=30)
async def test_without_tokens_the_push_api_is_off_and_says_how_to_turn_it_on(servers):
    server = await servers.start(NO_TOKENS_CONFIG)
    for headers in (AUTH_JSON, JSON):
        reply = await push(server, "a", {"value": 1}, headers=headers)
        assert reply.status == 403
        assert reply.json == {"error": HOW_TO_ENABLE}
        assert 'add [api] tokens = { name = "${DASHBOARD_TOKEN}" } to config.toml' in reply.json["error"]
    reply = await request(server, "POST", "/api/widgets", AUTH_JSON, {"values": {"a": 1}})
    assert reply.status == 403
    assert await stored_count(server) == 0
    # reading is not affected
    assert (await request(server, "GET", "/api/widgets/a")).status == 200


@pytest.mark.gen_test(timeout=30)
async def test_no_token_ever_reaches_the_log(servers, caplog):
    caplog.set_level(logging.DEBUG)
    server = await servers.start()
    wrong = "wrong-token-that-is-also-secret"
    assert (await push(server, "a", {"value": 5})).status == 200
    assert (await push(server, "a", {"value": 6}, headers={"Authorization": f"Bearer {wrong}", **JSON})).status == 401
    assert (await request(server, "POST", "/api/widgets", AUTH_JSON, {"values": {"a": 7}})).status == 200
    assert (await push(server, "nope", {"value": 1})).status == 404

    access = [r.getMessage() for r in caplog.records if r.name == "tornado.access"]
    assert any("POST /api/widgets/a" in line for line in access)  # the lines are there, without tokens
    pushes = [r.getMessage() for r in caplog.records if r.name == "dashboard.push"]
    assert any("by token test" in line for line in pushes)  # the token's name, not its value
    for secret in (TOKEN, wrong):
        assert secret not in caplog.text
        assert all(secret not in str(r.args) for r in caplog.records)


@pytest.mark.gen_test(timeout=30)
async def test_pushes_need_no_xsrf_cookie_should_the_app_require_one(servers):
    server = await servers.start()
    # The same runtime behind a second listener whose app checks XSRF cookies.
    strict = tornado.httpserver.HTTPServer(make_app(server.runtime, xsrf_cookies=True))
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    strict.add_sockets(sockets)
    try:
        server_port = sockets[0].getsockname()[1]
        reply = await request(SimpleNamespace(port=server_port), "POST", "/api/widgets/a", AUTH_JSON, {"value": 1})
        assert reply.status == 200, reply.body
        reply = await request(
            SimpleNamespace(port=server_port), "POST", "/api/widgets", AUTH_JSON, {"values": {"a": 2}}
        )
        assert reply.status == 200, reply.body
    finally:
        strict.stop()
        await strict.close_all_connections()
    assert [s.value for s in await server.runtime.store.history("a")] == [1, 2]


# -- the README's commands, against the bundled config ----------------------------------------

README_BASE = "http://127.0.0.1:8888"
README_COMMANDS = [
    # (the command as the README shows it, its exit status, what its output holds)
    (
        [
            "curl",
            "-sS",
            "--fail-with-body",
            "http://127.0.0.1:8888/api/widgets/notice",
            "-H",
            "Authorization: Bearer demo-token-change-me",
            "-H",
            "Content-Type: application/json",
            "-d",
            '{"value": "Deploy of v1.4 finished"}',
        ],
        0,
        '"widget":"notice"',
    ),
    (
        [
            "curl",
            "-sS",
            "--fail-with-body",
            "http://127.0.0.1:8888/api/widgets/notice",
            "-H",
            "Authorization: Bearer demo-token-change-me",
            "-H",
            "Content-Type: application/json",
            "-d",
            '{"status": "error", "message": "Nightly backup failed"}',
        ],
        0,
        '"widget":"notice"',
    ),
    (
        [
            "curl",
            "-sS",
            "--fail-with-body",
            "http://127.0.0.1:8888/api/widgets",
            "-H",
            "Authorization: Bearer demo-token-change-me",
            "-H",
            "Content-Type: application/json",
            "-d",
            '{"values": {"notice": "All clear"}}',
        ],
        0,
        '"ids":{"notice":',
    ),
    (
        [
            "curl",
            "-sS",
            "--fail-with-body",
            "http://127.0.0.1:8888/api/widgets/cpu",
            "-H",
            "Authorization: Bearer demo-token-change-me",
            "-H",
            "Content-Type: application/json",
            "-d",
            '{"value": 50}',
        ],
        22,
        '{"error":"widget \\"cpu\\" is fed by its \\"system\\" source, not by pushes"}',
    ),
]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.gen_test(timeout=60)
async def test_the_readme_curl_commands_work_against_the_bundled_config(servers, monkeypatch):
    monkeypatch.delenv("DASHBOARD_TOKEN", raising=False)  # the bundled default token applies
    # The bundled file, copied as is into the temp dir: its relative database path lands there.
    server = await servers.start((ROOT / "config.toml").read_text(), port=0, run_sources=False)
    assert str(server.runtime.config.storage.url).startswith(f"sqlite+aiosqlite:///{servers.tmp_path}")
    client = await StreamClient.open(server.url("/events/main"))
    assert (await client.next_event()).type == "hello"
    for command, exit_status, output in README_COMMANDS:
        argv = [arg.replace(README_BASE, server.url("").rstrip("/")) for arg in command]
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), 20)
        assert process.returncode == exit_status, (command, stdout, stderr)
        assert output in stdout.decode(), stdout
        if exit_status == 0:
            event = await client.next_widget_event()
            assert event.type == "notice"
            ids = json.loads(stdout).get("ids", json.loads(stdout))
            assert event.last_event_id == str(ids.get("notice", ids.get("id")))
    history = await server.runtime.store.history("notice")
    assert [(s.value, s.status, s.message) for s in history] == [
        ("Deploy of v1.4 finished", "ok", None),
        ("Deploy of v1.4 finished", "error", "Nightly backup failed"),
        ("All clear", "ok", None),
    ]
    client.close()
