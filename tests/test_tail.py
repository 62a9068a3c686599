"""`run.py tail`, driven as a subprocess against real servers: through a server
restart (every id once, in order, against the database), plain and coloured lines,
redirects, the server's `retry:`, `gap`, widget filters and read tokens."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time

import pytest
import tornado.web

from dashboard.core.views import accept
from dashboard.storage.store import Store
from tests.backends import free_port
from tests.configs import dashboard, loopback_server, push_widgets, table
from tests.helpers import BASE_CONFIG, TOKEN, store_sample, wait_until, write_config
from tests.peers import serving
from tests.process import ROOT, RUN_PY, ServerProcess
from tests.webclient import WebClient

HOSTILE = ["a\rb", "a\nb", "a\r\nb", "line\u2028separator", "nul\x00byte", "emoji 😀", "\x1b[31mred\x1b[0m"]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Tail:
    """`run.py tail ...` as a child process; its stdout and stderr lines as they come."""

    def __init__(self, process: asyncio.subprocess.Process):
        self.process = process
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            asyncio.ensure_future(self._read(process.stdout, self.out)),
            asyncio.ensure_future(self._read(process.stderr, self.err)),
        ]

    @classmethod
    async def start(cls, *args: str, env: dict | None = None, stdout=asyncio.subprocess.PIPE) -> Tail:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(RUN_PY),
            "tail",
            *args,
            cwd=ROOT,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=stdout,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **(env or {})},
            limit=1024 * 1024,
        )
        return cls(process)

    @staticmethod
    async def _read(stream, lines: list[str]) -> None:
        if stream is None:
            return
        while line := await stream.readline():
            lines.append(line.decode("utf-8").rstrip("\n"))

    async def lines(self, count: int, timeout: float = 20.0) -> list[str]:
        await wait_until(lambda: len(self.out) >= count, timeout, message=f"{count} lines (stderr: {self.err})")
        return self.out[:count]

    async def said(self, text: str, timeout: float = 20.0) -> str:
        found = await wait_until(
            lambda: next((line for line in self.err if text in line), None), timeout, message=f"{text!r} on stderr"
        )
        return found

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.out]

    async def exit_status(self, timeout: float = 20.0) -> int:
        code = await asyncio.wait_for(self.process.wait(), timeout)
        await asyncio.gather(*self._readers)
        return code

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        for reader in self._readers:
            reader.cancel()


@pytest.fixture
def tails(io_loop):
    started: list[Tail] = []

    async def start(*args: str, **kwargs) -> Tail:
        tail = await Tail.start(*args, **kwargs)
        started.append(tail)
        return tail

    yield start

    async def stop_all():
        for tail in started:
            await tail.stop()

    io_loop.run_sync(stop_all, timeout=30)


async def push(port: int, widget: str, value) -> int:
    reply = await WebClient(port).request(
        "POST",
        f"/api/widgets/{widget}",
        {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        json.dumps({"value": value}).encode(),
    )
    assert reply.status == 200, reply.text
    return reply.json()["id"]


# --- through a restart ----------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=120)
async def test_tail_follows_a_stream_through_a_server_restart_with_every_id_once_in_order(tmp_path, tails):
    port = free_port()
    text = BASE_CONFIG.replace("port = 0", f"port = {port}")
    server = ServerProcess(tmp_path, text)
    server.start()
    try:
        await server.ready()
        sent = [await push(port, "a", 1), await push(port, "b", HOSTILE[0]), await push(port, "c", 9)]
        tail = await tails(f"http://127.0.0.1:{port}/events/main", "--json", "--since", "0")
        await tail.lines(2)
        for value in HOSTILE[1:4]:
            sent.append(await push(port, "b", value))
        await tail.lines(5)

        server.send(signal.SIGTERM)
        assert await server.exit_status() == 0
        await tail.said("reconnecting in")
        # While it is away, samples keep arriving in its database (another process, say).
        store = Store(f"sqlite+aiosqlite:///{tmp_path}/data/test.db")
        await store.open(migrate=False)
        for value in HOSTILE[4:]:
            await store_sample(store, "b", value)
        await store_sample(store, "c", 10)  # not on main: never on this stream
        await store.close()

        server = ServerProcess(tmp_path, text)
        server.start()
        await server.ready()
        await tail.said("reconnected to")
        sent.append(await push(port, "a", 2))

        store = Store(f"sqlite+aiosqlite:///{tmp_path}/data/test.db")
        await store.open(migrate=False)
        expected = await store.since(["a", "b"], 0, limit=1000)
        await store.close()
        # One more, last: the stream is in order, so a duplicate of any of the above would
        # come before this one.
        sentinel = await push(port, "a", 3)
        await tail.lines(len(expected) + 1)
        *records, last = tail.records()
        assert last["id"] == sentinel
        assert [r["id"] for r in records] == [s.id for s in expected]  # none missing, none twice, in order
        assert [r["value"] for r in records] == [s.value for s in expected]
        # As every way in keeps them (core.views.accept): a NUL arrives as U+FFFD.
        assert [r["value"] for r in records if r["widget"] == "b"] == [accept("text", v) for v in HOSTILE]
        assert all(set(r) == {"id", "widget", "value", "ts", "status"} for r in records)
    finally:
        await server.stop()


# --- lines -----------------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_plain_lines_when_piped_one_per_event_with_nothing_a_terminal_would_act_on(servers, tails):
    server = await servers.start()
    await server.record("a", 1.5)
    await server.record("b", HOSTILE[2] + HOSTILE[6])
    tail = await tails(server.url("/events/main"))
    first, second = await tail.lines(2)
    await server.record("b", "down", "error", "upstream\nsaid no")
    (third,) = (await tail.lines(3))[2:]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z  a {13}1\.5  ok", first), first
    assert second.endswith("  b             a\\x0d\\x0ab\\x1b[31mred\\x1b[0m  ok"), second
    assert third.endswith("  b             down  error: upstream\\x0asaid no"), third
    assert not any(ANSI.search(line) for line in tail.out + tail.err)
    assert tail.err[0] == f"tail: following {server.url('/events/main')}"


@pytest.mark.gen_test(timeout=60)
async def test_coloured_lines_on_a_terminal(servers, tails):
    server = await servers.start()
    await server.record("a", 7)
    controller, terminal = os.openpty()
    try:
        await tails(server.url("/events/main"), stdout=terminal, env={"TERM": "xterm", "NO_COLOR": ""})
        os.close(terminal)
        terminal = None
        output = b""
        deadline = time.monotonic() + 20
        while b"ok" not in output and time.monotonic() < deadline:
            output += await asyncio.get_running_loop().run_in_executor(None, os.read, controller, 4096)
        line = output.decode()
        assert "\x1b[1ma" in line and "\x1b[32mok\x1b[0m" in line, line
    finally:
        os.close(controller)
        if terminal is not None:
            os.close(terminal)


# --- the connection ---------------------------------------------------------------------------------


class Redirect(tornado.web.RequestHandler):
    """/old/<code>: a redirect with that code to settings["target"]."""

    def get(self, code: str) -> None:
        self.redirect(self.settings["target"], status=int(code))


class Ending(tornado.web.RequestHandler):
    """A stream that asks for 250 ms between reconnects, sends one event and ends."""

    def get(self) -> None:
        self.set_header("Content-Type", "text/event-stream")
        self.finish(b'retry: 250\n\nid: 1\nevent: x\ndata: {"widget": "x", "value": 1}\n\n')


@pytest.fixture
def peer(io_loop):
    with serving(io_loop, [(r"/old/([0-9]+)", Redirect), (r"/ending", Ending)]) as peer:
        yield peer


@pytest.mark.parametrize("code", [301, 302, 307, 308])
@pytest.mark.gen_test(timeout=60)
async def test_redirects_are_followed(servers, tails, peer, code):
    server = await servers.start()
    first = await server.record("a", 3)
    peer.settings["target"] = server.url("/events/main")
    tail = await tails(peer.url(f"/old/{code}"), "--json")
    (record,) = [json.loads(line) for line in await tail.lines(1)]
    assert record["id"] == first.id
    assert tail.err[0] == f"tail: following {server.url('/events/main')}"


@pytest.mark.gen_test(timeout=60)
async def test_the_servers_retry_is_the_reconnect_delay(tails, peer):
    tail = await tails(peer.url("/ending"))
    line = await tail.said("reconnecting in")
    assert line == "tail: the stream ended; reconnecting in 0.25s after event 1"


@pytest.mark.gen_test(timeout=60)
async def test_a_gap_is_said_on_stderr(servers, tails):
    server = await servers.start()
    newest = await server.record("a", 4)
    tail = await tails(server.url("/events/main"), "--since", "999999", "--json")
    await tail.said("gap: the server could not replay what was missed (unknown id); current values follow")
    assert [json.loads(line)["id"] for line in await tail.lines(1)] == [newest.id]


@pytest.mark.gen_test(timeout=60)
async def test_a_dashboard_by_name_some_widgets_and_a_read_token(servers, tails, tmp_path):
    token = "read-token-tail-0123456789"
    text = (
        loopback_server(grace="2s")
        + table("auth", secret="s3cret-for-signing-sessions-0123456789abcdef", tokens={"k": "kiosk-token-0123456789"})
        + table("auth.readers.ops", token=token, dashboards=["ops"])
        + dashboard("ops", ["a", "b"], auth="token")
        + push_widgets(a="number", b="number")
    )
    server = await servers.start(text)
    config = write_config(tmp_path, text.replace("port = 0", f"port = {server.port}"), name="tail.toml")
    await server.record("a", 1)
    b = await server.record("b", 2)
    tail = await tails("ops", "--config", str(config), "--widget", "b", "--json", env={"DASHBOARD_READ_TOKEN": token})
    assert [json.loads(line)["id"] for line in await tail.lines(1)] == [b.id]
    live = [await server.record("a", 3), await server.record("b", 4)]
    assert [json.loads(line)["id"] for line in await tail.lines(2)][1:] == [live[1].id]
    assert tail.err[0] == f"tail: following http://127.0.0.1:{server.port}/events/ops?widgets=b"


@pytest.mark.gen_test(timeout=60)
async def test_what_tail_cannot_follow_ends_it_with_a_reason(servers, tails, tmp_path):
    server = await servers.start()
    missing = await tails(server.url("/events/nope"))
    assert await missing.exit_status() == 1
    assert missing.err[-1].startswith("tail: error: HTTP 404")
    config = write_config(tmp_path, BASE_CONFIG, name="tail.toml")
    unknown = await tails("nope", "--config", str(config))
    assert await unknown.exit_status() == 2
    assert unknown.err == [f"error: {config}: no dashboard 'nope' (there are: main, other)"]
    for url, problem in [
        ("http://[::1/events/main", "Invalid IPv6 URL"),
        ("http://127.0.0.1:99999/x", "Port out of range 0-65535"),
        ("http://127.0.0.1:abc/x", "Port could not be cast to integer value as 'abc'"),
        ("http:///events/main", "expected http(s)://HOST[:PORT]/PATH, with a host and no spaces"),
        ("http://a b/x", "expected http(s)://HOST[:PORT]/PATH, with a host and no spaces"),
        ("http://127.0.0.1:0/x", "expected a port from 1 to 65535, got 0"),
    ]:
        bad = await tails(url)
        assert await bad.exit_status() == 2
        assert bad.err == [f"error: URL {url!r}: {problem}"]
