"""Single pushes answered below the RequestHandler (web/fast_push.py) say, byte for
byte, what WidgetPushHandler says: the same request goes to two listeners on one
runtime, one app with the fast path and one without, and their answers (status
line, every header in order but the date, the body with its id and time aside)
and what each stored must be the same. Requests are generated (hypothesis) across
what a client controls: the path, the version, every header a push reads, the
body's bytes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import sqlite3
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dashboard.config import load_config
from dashboard.service.connections import ConnectionLimits, GuardedHTTPServer
from dashboard.storage.store import sqlite_file
from dashboard.web.app import make_app, own_body_limit
from tests.configs import dashboard, push_widgets, table, widget
from tests.helpers import BASE_CONFIG, TOKEN, wait_until
from tests.strategies import values

MAX_BODY = 4096
# Each listener has its own rate per token (as each server process does): so that the two
# answer alike whenever they are asked, no rate here but in SLOW_CONFIG.
CONFIG = (
    BASE_CONFIG.replace("[api]\n", f'[api]\nmax_body = "{MAX_BODY // 1024}KiB"\nrate = "1000000/s"\nburst = 1000000\n')
    + table("widgets.g", view="meter", source={"kind": "push"})
    + dashboard("extra", ["g", "s", "cpu", "clock", "l"])
    + push_widgets(s="status", l="list")
    + widget("cpu", "meter", source={"kind": "random_walk", "start": 50})
    + widget("clock", "clock")
)
# One token per three seconds, two at once: the third push in a row is refused (429).
SLOW_CONFIG = CONFIG.replace('rate = "1000000/s"\nburst = 1000000', 'rate = "20/m"\nburst = 2')
WIDGETS = ["a", "b", "c", "g", "s", "l", "cpu", "clock", "nope"]
PUSHES_ANSWERED_200 = ("dashboard_push_requests_total", {"status": "200"})
FIXTURES_OK = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


@dataclass
class Answer:
    status_line: bytes
    headers: list[tuple[str, str]]
    body: bytes

    def normalised(self):
        """What must be equal between the two paths: all but the date, and the id and
        time a successful push was given (each listener stores its own sample, so
        that its length may differ too)."""
        headers = [(name, "<date>" if name == "Date" else value) for name, value in self.headers]
        body: object = self.body
        if self.status_line.startswith(b"HTTP/1.1 200"):
            assert (("Content-Length", str(len(self.body)))) in headers
            headers = [(name, "<length>" if name == "Content-Length" else value) for name, value in headers]
            answer = json.loads(self.body)
            assert isinstance(answer["id"], int) and answer["ts"].endswith("Z")
            body = {**answer, "id": "<id>", "ts": "<ts>"}
        return self.status_line, headers, body


def exchange(port: int, request: bytes) -> Answer:
    """Send the request's bytes on a fresh connection and read one answer (past a
    "100 Continue"): its head, then Content-Length bytes (to the end of the stream
    without one)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while True:
            while b"\r\n\r\n" not in received and (chunk := sock.recv(65536)):
                received += chunk
            head, _, body = received.partition(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 100 "):
                break
            received = body
        status_line, *lines = head.split(b"\r\n")
        headers = [tuple(part.strip() for part in line.decode("latin-1").split(":", 1)) for line in lines]
        length = next((int(value) for name, value in headers if name == "Content-Length"), None)
        while (length is None or len(body) < length) and (chunk := sock.recv(65536)):
            body += chunk
    return Answer(status_line, headers, body)  # type: ignore[arg-type]


def push_request(
    path: str, headers: list[tuple[str, str]], body: bytes, *, version: str = "HTTP/1.1", length: bool = True
) -> bytes:
    lines = [f"POST {path} {version}", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    if version == "HTTP/1.1":
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Listeners:
    """The server's runtime behind two more listeners, as the server builds its own:
    `fast` with the fast path, `slow` without it."""

    def __init__(self, server):
        self.server = server
        self.apps = {"fast": make_app(server.runtime), "slow": make_app(server.runtime, fast_push=False)}
        self.http = {}
        self.ports = {}
        config = server.runtime.config
        for name, app in self.apps.items():
            http = GuardedHTTPServer(
                app,
                limits=ConnectionLimits.of(config.server),
                max_body_size=config.server.max_body,
                own_body_limit=own_body_limit,
            )
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sock.listen(128)
            sock.setblocking(False)
            http.add_sockets([sock])
            self.http[name] = http
            self.ports[name] = sock.getsockname()[1]

    async def both(self, request: bytes) -> tuple[Answer, Answer, bool, bool]:
        """Each listener's answer to the request, and whether each stored a sample."""
        store = self.server.runtime.store
        loop = asyncio.get_running_loop()
        results = []
        for name in ("fast", "slow"):
            before = await store.last_id()
            answer = await loop.run_in_executor(None, exchange, self.ports[name], request)
            await self.server.runtime.recorder.idle()
            results.append((answer, await store.last_id() > before))
        (fast, fast_stored), (slow, slow_stored) = results
        return fast, slow, fast_stored, slow_stored

    async def close(self) -> None:
        for http in self.http.values():
            http.stop()
            await http.close_all_connections()


@pytest.fixture
def listeners(servers, io_loop):
    started = []

    def start(config: str = CONFIG) -> Listeners:
        async def go():
            server = await servers.start(config, run_sources=False)
            return Listeners(server)

        started.append(io_loop.run_sync(go))
        return started[-1]

    yield start
    for each in started:
        io_loop.run_sync(each.close)


def assert_alike(fast: Answer, slow: Answer, fast_stored: bool, slow_stored: bool) -> None:
    assert fast.normalised() == slow.normalised(), (fast, slow)
    assert fast_stored == slow_stored == fast.status_line.startswith(b"HTTP/1.1 200")


AUTH = ("Authorization", f"Bearer {TOKEN}")
JSON = ("Content-Type", "application/json")

# -- generated requests -------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.sampled_from(["ok", "warn", "down", "error", "", "\ud800", "%s", "\x00"])
)
json_values = values(json_scalars, st.sampled_from(["state", "detail", "x", "value"]), size=3, leaves=6)
# Mostly pushes that may well succeed: a value (of any shape) and maybe a status and message.
good_bodies = st.fixed_dictionaries(
    {"value": json_values},
    optional={"status": st.sampled_from(["ok", "error", "warn"]), "message": st.text(max_size=8) | st.none()},
).map(lambda body: json.dumps(body).encode())
bodies = (
    good_bodies
    | good_bodies
    | st.dictionaries(st.sampled_from(["value", "status", "message", "colour", "Value"]), json_values, max_size=3).map(
        lambda body: json.dumps(body).encode()
    )
    | st.sampled_from(
        [
            b"",
            b"{",
            b"[1]",
            b"1.5",
            b'{"value": NaN}',
            b'{"value": 1e400}',
            b'{"value": "\xff"}',
            b'{"value": ' + b"[" * 3000 + b"]" * 3000 + b"}",
            b'{"value": "' + b"x" * MAX_BODY + b'"}',
            b'{"value": 1, "value": "twice"}',
            b'  {"value": 2}  \n',
            b'\xef\xbb\xbf{"value": 3}',
        ]
    )
)
paths = (
    st.sampled_from(WIDGETS).map(lambda w: f"/api/widgets/{w}")
    | st.sampled_from(WIDGETS).map(lambda w: f"/api/widgets/{w}")
    | st.sampled_from(
        [
            "/api/widgets/a?x=1",
            f"/api/widgets/a?access_token={TOKEN}",
            "/api/widgets/%61",
            "/api/widgets/a%2F",
            "/api/widgets/caf%C3%A9",
            "/api/widgets/%FF",
            "/api/widgets/a/",
            "/api/widgets//a",
            "/api/widgets",
        ]
    )
)
authorizations = st.just([AUTH]) | st.sampled_from(
    [
        [],
        [("Authorization", f"bearer   {TOKEN}  ")],
        [("Authorization", "Bearer wrong-token-0123456789")],
        [("Authorization", f"Basic {TOKEN}")],
        [("Authorization", "Bearer")],
        [AUTH, ("Authorization", "Bearer other")],
        [("Authorization", f"Bearer {TOKEN}\xe9")],
    ]
)
content_types = st.just([JSON]) | st.sampled_from(
    [
        [],
        [("Content-Type", "application/json; charset=utf-8")],
        [("Content-Type", 'APPLICATION/JSON;charset="UTF8"')],
        [("Content-Type", "application/json; charset=latin-1")],
        [("Content-Type", "text/plain")],
        [JSON, ("Content-Encoding", "gzip")],
        [JSON, ("Content-Encoding", " Identity ")],
        [JSON, JSON],
    ]
)
extras = st.lists(
    st.sampled_from(
        [
            ("X-Forwarded-For", "203.0.113.9"),
            ("Origin", "http://elsewhere.example"),
            ("Accept-Encoding", "gzip"),
            ("Cookie", "a=b"),
            ("Expect", "100-continue"),
            ("Connection", "keep-alive"),
        ]
    ),
    max_size=2,
    unique=True,
)


# Well-formed pushes to the push widgets, with values of their view's shape.
SHAPED = {
    "a": st.integers(-(10**6), 10**6) | st.floats(allow_nan=False, allow_infinity=False),
    "c": st.floats(allow_nan=False) | st.text(max_size=6),  # text that may read as a number
    "g": st.floats(-1e6, 1e6) | st.none(),
    "b": st.text(max_size=20),
    "s": st.fixed_dictionaries(
        {"state": st.sampled_from(["ok", "warn", "down", "gone"])}, optional={"detail": st.text(max_size=8)}
    ),
    "l": st.lists(st.tuples(st.text(max_size=5), st.integers() | st.text(max_size=5)).map(list), max_size=3),
}


@st.composite
def good_requests(draw) -> bytes:
    widget_id = draw(st.sampled_from(sorted(SHAPED)))
    body = {"value": draw(SHAPED[widget_id])}
    if draw(st.booleans()):
        body["status"] = "error"
        body["message"] = draw(st.text(max_size=10))
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0"]))
    return push_request(f"/api/widgets/{widget_id}", [AUTH, JSON], json.dumps(body).encode(), version=version)


@st.composite
def any_requests(draw) -> bytes:
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.1", "HTTP/1.0"]))
    headers = draw(authorizations) + draw(content_types) + draw(extras)
    if version == "HTTP/1.0":
        headers = [(name, value) for name, value in headers if name not in ("Connection", "Expect")]
    return push_request(draw(paths), headers, draw(bodies), version=version)


@pytest.fixture
def pair(listeners) -> Listeners:
    return listeners()


@settings(max_examples=300, deadline=None, suppress_health_check=FIXTURES_OK)
@given(request=good_requests() | any_requests())
def test_any_push_is_answered_and_stored_alike_with_and_without_the_fast_path(pair, io_loop, request):
    fast, slow, fast_stored, slow_stored = io_loop.run_sync(lambda: pair.both(request), timeout=30)
    event(fast.status_line.decode())
    assert_alike(fast, slow, fast_stored, slow_stored)


# -- what the fast path takes, and what it hands over ----------------------------------------


@pytest.mark.parametrize(
    "request_bytes, fast",
    [
        (push_request("/api/widgets/a", [AUTH, JSON], b'{"value": 1}'), True),
        (push_request("/api/widgets/b", [AUTH, JSON], b'{"value": "x"}', version="HTTP/1.0"), True),
        (push_request("/api/widgets/s", [AUTH, JSON], b'{"value": {"state": "down"}, "status": "error"}'), True),
        (push_request("/api/widgets/a", [AUTH, JSON], b'{"status": "error", "message": "m"}'), False),  # keeps last
        (push_request("/api/widgets/a?x=1", [AUTH, JSON], b'{"value": 1}'), False),
        (push_request("/api/widgets/%61", [AUTH, JSON], b'{"value": 1}'), False),
        (push_request("/api/widgets/a", [AUTH, JSON], b'{"value": "x"}'), False),  # a 400
        (push_request("/api/widgets/a", [JSON], b'{"value": 1}'), False),  # a 401
    ],
)
def test_plain_good_pushes_take_the_fast_path_and_the_rest_the_handler(listeners, io_loop, request_bytes, fast):
    pair = listeners()
    answered = pair.apps["fast"].fast_pushes
    fast_answer, slow_answer, fast_stored, slow_stored = io_loop.run_sync(lambda: pair.both(request_bytes))
    assert_alike(fast_answer, slow_answer, fast_stored, slow_stored)
    assert pair.apps["fast"].fast_pushes - answered == (1 if fast else 0)
    assert pair.apps["slow"].fast_pushes == 0


def test_a_chunked_push_goes_to_the_handler_and_is_answered_alike(listeners, io_loop):
    pair = listeners()
    body = b'{"value": 4}'
    chunked = push_request(
        "/api/widgets/a",
        [AUTH, JSON, ("Transfer-Encoding", "chunked")],
        b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body),
        length=False,
    )
    assert_alike(*io_loop.run_sync(lambda: pair.both(chunked)))
    assert pair.apps["fast"].fast_pushes == 0


def test_the_rate_is_taken_once_per_push_on_either_path(listeners, io_loop):
    pair = listeners(SLOW_CONFIG)
    request = push_request("/api/widgets/a", [AUTH, JSON], b'{"value": 1}')
    statuses = []
    for _ in range(3):
        fast, slow, fast_stored, slow_stored = io_loop.run_sync(lambda: pair.both(request))
        assert_alike(fast, slow, fast_stored, slow_stored)
        statuses.append(fast.status_line)
        if fast.status_line.startswith(b"HTTP/1.1 429"):
            assert ("Retry-After", "3") in fast.headers
    # Two tokens, then none: bad pushes in between (refused before the rate) take none.
    bad = push_request("/api/widgets/a", [AUTH, JSON], b'{"value": "text"}')
    assert statuses[:2] == [b"HTTP/1.1 200 OK"] * 2 and statuses[2].startswith(b"HTTP/1.1 429")
    assert io_loop.run_sync(lambda: pair.both(bad))[0].status_line.startswith(b"HTTP/1.1 429")


def test_a_fast_push_is_logged_and_counted_as_the_handler_does(listeners, io_loop, caplog):
    pair = listeners(CONFIG.replace("[server]\n", '[server]\ntrusted_proxies = ["127.0.0.1"]\n'))
    request = push_request("/api/widgets/a", [AUTH, JSON, ("X-Forwarded-For", "198.51.100.7")], b'{"value": 1}')
    metrics = pair.server.runtime.metrics
    before = metrics.registry.get_sample_value(*PUSHES_ANSWERED_200) or 0
    with caplog.at_level(logging.DEBUG):
        io_loop.run_sync(lambda: pair.both(request))
    assert pair.apps["fast"].fast_pushes == 1
    assert metrics.registry.get_sample_value(*PUSHES_ANSWERED_200) == before + 2
    lines = [r.getMessage() for r in caplog.records if r.name == "tornado.access"]
    assert len(lines) == 2
    fast_line, slow_line = (line.rsplit(" ", 1)[0] for line in lines)  # all but the time it took
    assert fast_line == slow_line == "200 POST /api/widgets/a (198.51.100.7)"
    pushed = [r.getMessage() for r in caplog.records if r.name == "dashboard.push"]
    assert len(pushed) == 2 and all("by token test: event" in line for line in pushed)
    assert TOKEN not in caplog.text


def test_a_push_the_database_refuses_is_answered_by_the_handler_as_without_the_fast_path(pair, io_loop):
    other = sqlite3.connect(sqlite_file(pair.server.runtime.config.storage.url), isolation_level=None)
    request = push_request("/api/widgets/a", [AUTH, JSON], b'{"value": 1}')

    async def answers():
        loop = asyncio.get_running_loop()
        return [await loop.run_in_executor(None, exchange, pair.ports[name], request) for name in ("fast", "slow")]

    try:
        other.execute("ALTER TABLE samples RENAME TO samples_away")  # every insert now fails
        fast, slow = io_loop.run_sync(answers)
        assert fast.normalised() == slow.normalised()
        assert fast.status_line.startswith(b"HTTP/1.1 5")
        assert other.execute("SELECT count(*) FROM samples_away").fetchone() == (0,)
        assert pair.apps["fast"].fast_pushes == 0
    finally:
        other.execute("ALTER TABLE samples_away RENAME TO samples")
        other.close()
    assert_alike(*io_loop.run_sync(lambda: pair.both(request)))
    assert pair.apps["fast"].fast_pushes == 1


def test_a_client_gone_before_its_answer_leaves_its_push_stored_and_the_server_well(pair, io_loop):
    store = pair.server.runtime.store
    recorder = pair.server.runtime.recorder
    other = sqlite3.connect(sqlite_file(pair.server.runtime.config.storage.url))

    async def go():
        _, writer = await asyncio.open_connection("127.0.0.1", pair.ports["fast"])
        writer.write(push_request("/api/widgets/a", [AUTH, JSON], b'{"value": 9}'))
        await writer.drain()
        await wait_until(lambda: recorder._writer is not None)  # its commit waits for the lock
        writer.transport.abort()  # gone before the answer
        # The server sees it go (Tornado's server drops the connection) while the commit waits.
        await wait_until(lambda: not pair.http["fast"]._connections)
        other.execute("COMMIT")
        await recorder.idle()

    try:
        other.execute("BEGIN IMMEDIATE")  # the write lock, held until the client is gone
        before = io_loop.run_sync(store.last_id)
        io_loop.run_sync(go)
    finally:
        other.close()
    fast, slow, fast_stored, slow_stored = io_loop.run_sync(
        lambda: pair.both(push_request("/api/widgets/a", [AUTH, JSON], b'{"value": 10}'))
    )
    assert_alike(fast, slow, fast_stored, slow_stored)
    assert [s.value for s in io_loop.run_sync(lambda: store.history("a"))][-3:] == [9, 10, 10]
    assert io_loop.run_sync(store.last_id) == before + 3


def test_pipelined_pushes_on_one_connection_are_answered_in_order_whichever_path_takes_them(pair, io_loop):
    keep = [AUTH, JSON]
    requests = [
        push_request("/api/widgets/a", keep, b'{"value": 1}', version="HTTP/1.0").replace(
            b"HTTP/1.0\r\n", b"HTTP/1.1\r\n"
        ),  # HTTP/1.1 without Connection: close
        push_request("/api/widgets/a", keep, b'{"value": "text"}', version="HTTP/1.0").replace(
            b"HTTP/1.0\r\n", b"HTTP/1.1\r\n"
        ),
        push_request("/api/widgets/a?q=1", keep, b'{"value": 3}'),  # the handler's, then closed
    ]

    def send_all(port) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"".join(requests))  # all at once, before any answer
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
        return received

    for port in (pair.ports["fast"], pair.ports["slow"]):
        received = io_loop.run_sync(lambda port=port: asyncio.get_running_loop().run_in_executor(None, send_all, port))
        statuses = re.findall(rb"HTTP/1\.1 \d{3} [A-Za-z ]+\r\n", received)  # each answer's status line
        assert statuses == [b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 400 Bad Request\r\n", b"HTTP/1.1 200 OK\r\n"]
    assert pair.apps["fast"].fast_pushes == 1
    history = io_loop.run_sync(lambda: pair.server.runtime.store.history("a"))
    assert [s.value for s in history] == [1, 3, 1, 3]


# -- connections that close -----------------------------------------------------------------


def sent_and_closed(port: int, request: bytes) -> None:
    """Send the request's bytes and close at once, as a script that fires and forgets."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)


def access_lines(caplog) -> list[str]:
    return [r.getMessage().rsplit(" ", 1)[0] for r in caplog.records if r.name == "tornado.access"]


@pytest.mark.parametrize(
    "body, status",
    [
        (b'{"status": "error", "message": "down"}', 200),  # keeps the last value: always the handler's
        (b'{"value": "text"}', 400),
    ],
)
def test_a_push_handed_over_after_its_client_closed_is_answered_stored_and_logged_as_by_the_handler(
    pair, io_loop, caplog, body, status
):
    # The body is whole when the client goes: the handler takes it, stores it if it is
    # good, and writes its access line (its answer goes nowhere), whichever path hands it.
    request = push_request("/api/widgets/a", [AUTH, JSON], body)
    store = pair.server.runtime.store
    stored = {"fast": 0, "slow": 0}
    with caplog.at_level(logging.INFO):
        for name in ["fast", "slow"] * 3:  # the close meets the handover at one moment or another
            before = io_loop.run_sync(store.last_id)
            caplog.clear()
            io_loop.run_sync(
                lambda name=name: asyncio.get_running_loop().run_in_executor(
                    None, sent_and_closed, pair.ports[name], request
                )
            )
            io_loop.run_sync(
                lambda name=name: wait_until(lambda: access_lines(caplog), timeout=5, message=f"the {name} access line")
            )
            io_loop.run_sync(pair.server.runtime.recorder.idle)
            assert access_lines(caplog) == [f"{status} POST /api/widgets/a (127.0.0.1)"], name
            assert not [r for r in caplog.records if r.levelno >= logging.WARNING], name
            stored[name] += io_loop.run_sync(store.last_id) - before
    assert stored == {"fast": 3 * (status == 200), "slow": 3 * (status == 200)}


def test_a_reload_while_pushes_wait_for_their_commit_leaves_both_answers_alike(pair, io_loop):
    # The handler's page headers are those of the config its request came in under.
    server = pair.server
    path = server.config_path
    server.server.config_loader = lambda: load_config(path)
    recorder = server.runtime.recorder
    other = sqlite3.connect(sqlite_file(server.runtime.config.storage.url), isolation_level=None)
    request = push_request("/api/widgets/a", [AUTH, JSON], b'{"value": 5}')

    async def go():
        loop = asyncio.get_running_loop()
        answers = [loop.run_in_executor(None, exchange, pair.ports[name], request) for name in ("fast", "slow")]
        # One push commits (and waits for the lock), the other waits for the next commit.
        await wait_until(lambda: recorder._writer is not None and len(recorder._waiting) == 1, timeout=5)
        path.write_text(CONFIG.replace("[server]\n", "[server]\nframe_ancestors = [\"'none'\"]\n"))
        assert await server.server.reload()
        other.execute("COMMIT")
        return await asyncio.gather(*answers)

    try:
        other.execute("BEGIN IMMEDIATE")  # the write lock, held until the config is reloaded
        fast, slow = io_loop.run_sync(go)
    finally:
        other.close()
    assert server.runtime.config.server.frame_ancestors == ("'none'",)
    assert ("X-Frame-Options", "SAMEORIGIN") in slow.headers  # the config the request came in under
    assert fast.normalised() == slow.normalised()
    assert pair.apps["fast"].fast_pushes == 1


def test_a_push_the_database_refuses_takes_one_token_of_its_rate_on_either_path(listeners, io_loop):
    pair = listeners(SLOW_CONFIG)  # two pushes at once, then one per three seconds
    other = sqlite3.connect(sqlite_file(pair.server.runtime.config.storage.url), isolation_level=None)
    request = push_request("/api/widgets/a", [AUTH, JSON], b'{"value": 1}')

    async def answers():
        loop = asyncio.get_running_loop()
        return [await loop.run_in_executor(None, exchange, pair.ports[name], request) for name in ("fast", "slow")]

    try:
        other.execute("ALTER TABLE samples RENAME TO samples_away")  # every insert now fails
        fast, slow = io_loop.run_sync(answers)
        assert fast.normalised() == slow.normalised()
        assert fast.status_line.startswith(b"HTTP/1.1 500")
    finally:
        other.execute("ALTER TABLE samples_away RENAME TO samples")
        other.close()
    # The refused push took one token on each path: one is left for the next push.
    fast, slow, fast_stored, slow_stored = io_loop.run_sync(lambda: pair.both(request))
    assert_alike(fast, slow, fast_stored, slow_stored)
    assert fast.status_line == b"HTTP/1.1 200 OK"


# -- heads and limits Tornado reads its own way ------------------------------------------------


@pytest.mark.parametrize(
    "lengths", [["12, 12"], ["12,12"], ["0012"], ["12", "12"], ["12", "13"], ["+12"], ["12 , 12"], ["0" * 30 + "12"]]
)
def test_odd_content_lengths_are_read_and_answered_alike(pair, io_loop, lengths):
    head = ["POST /api/widgets/a HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Bearer {TOKEN}"]
    head += ["Content-Type: application/json", *(f"Content-Length: {n}" for n in lengths), "Connection: close"]
    request = ("\r\n".join(head) + "\r\n\r\n").encode() + b'{"value": 1}'  # 12 bytes
    assert_alike(*io_loop.run_sync(lambda: pair.both(request)))


@pytest.mark.parametrize("api_limit, server_limit", [("4KiB", "2KiB"), ("2KiB", "4KiB")])
def test_bodies_about_either_limit_are_answered_alike(listeners, io_loop, api_limit, server_limit):
    config = CONFIG.replace(f'max_body = "{MAX_BODY // 1024}KiB"', f'max_body = "{api_limit}"')
    pair = listeners(config.replace("[server]\n", f'[server]\nmax_body = "{server_limit}"\n'))
    for size in (3000, 4096, 4097):
        body = b'{"value": "' + b"x" * (size - 13) + b'"}'
        for expect in ([], [("Expect", "100-continue")]):
            request = push_request("/api/widgets/b", [AUTH, JSON, *expect], body)
            assert_alike(*io_loop.run_sync(lambda request=request: pair.both(request)))
    assert pair.apps["fast"].fast_pushes == (4 if api_limit == "4KiB" else 0)
