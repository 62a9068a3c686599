"""Test helpers: write a config, run the real server on a loopback port, and read
its event stream over a raw socket with the project's spec-exact decoder."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import textwrap
import time
from pathlib import Path
from urllib.parse import urlsplit

from dashboard.config import load_config
from dashboard.core.sse import Decoder, Event
from dashboard.service.server import Server
from dashboard.sources import build_source
from dashboard.storage.store import Store
from tests.configs import dashboard, loopback_server, push_widgets, table, with_keys

TOKEN = "test-token-0123456789"

# A small config with no source that changes by itself: tests push or drive values.
BASE_CONFIG = (
    loopback_server(keepalive="15s", grace="2s")
    + table("api", tokens={"test": TOKEN})
    + dashboard("main", ["a", "b"], title="Main")
    + dashboard("other", ["b", "c"], title="Other")
    + push_widgets(a="number", b="text", c="number")
)


def config_with(hub: str = "", **server: str) -> str:
    """BASE_CONFIG with [server] keys set (TOML values as text) and/or a [hub] table."""
    return with_keys(BASE_CONFIG, hub=hub, **server)


def write_config(directory: Path, text: str = BASE_CONFIG, name: str = "config.toml") -> Path:
    path = Path(directory) / name
    path.write_text(textwrap.dedent(text))
    return path


def build_widget_source(directory: Path, text: str, widget_id: str):
    """The source that widget `widget_id` of config `text` gets, as the server would build it."""
    config = load_config(write_config(directory, text))
    return build_source(config, config.widgets[widget_id])


@contextlib.contextmanager
def opened_store(url: str, io_loop, **options):
    """A Store, migrated and open, for a fixture to yield; closed at exit."""
    store = Store(url, **options)
    io_loop.run_sync(store.open)
    try:
        yield store
    finally:
        io_loop.run_sync(store.close)


def head_revision() -> str:
    """The newest migration's revision: what a migrated database's alembic_version says."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from dashboard.core.resources import resource_dir

    config = Config()
    config.set_main_option("script_location", str(resource_dir("migrations")))
    return ScriptDirectory.from_config(config).get_current_head()


async def store_sample(store: Store, widget: str, value, status: str = "ok", message: str | None = None):
    """Write one sample straight to the store (nothing is published), as another process would."""
    (sample,) = await store.append_many([(widget, value, status, message)])
    return sample


async def health(server) -> tuple[int, dict]:
    """GET /healthz: the status code and the JSON body."""
    from tornado.httpclient import AsyncHTTPClient

    response = await AsyncHTTPClient().fetch(server.url("/healthz"), raise_error=False)
    return response.code, json.loads(response.body)


async def wait_until(predicate, timeout: float = 20.0, interval: float = 0.01, message: str = "condition"):
    """Poll `predicate` (sync or async) until true, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await asyncio.sleep(interval)


class RunningServer:
    def __init__(self, server: Server, config_path: Path):
        self.server = server
        self.config_path = config_path

    @property
    def runtime(self):
        return self.server.runtime

    @property
    def port(self) -> int:
        return self.server.port

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def record(self, widget: str, value, status: str = "ok", message: str | None = None):
        """Store and publish a sample as a ticker would."""
        return await self.runtime.recorder.record(widget, value, status, message)

    async def stop(self) -> None:
        await self.server.stop()

    async def stream_of(self, client: StreamClient):
        """The server's open stream for `client` (found by the client's port), once it
        left its opening and holds the socket."""
        port = client.writer.get_extra_info("sockname")[1]

        def live():
            found = [s for s in self.runtime.streams if s.socket is not None and s.socket.getpeername()[1] == port]
            return found[0] if found else None

        return await wait_until(live, message=f"the server's stream for client port {port}")


class ServerFactory:
    """Starts real servers on port 0 with a SQLite file in a temp dir; stops them all at teardown.

    `await servers.start()` uses BASE_CONFIG; `await servers.start(config_text)` another
    config; starting again with the same directory reuses the same database (a restart)."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.running: list[RunningServer] = []

    async def start(
        self,
        config_text: str = BASE_CONFIG,
        *,
        directory: Path | None = None,
        port: int | None = None,
        **server_options,
    ) -> RunningServer:
        directory = Path(directory or self.tmp_path)
        path = write_config(directory, config_text)
        config = load_config(path)
        if port is not None:
            import dataclasses

            config = dataclasses.replace(config, server=dataclasses.replace(config.server, port=port))
        server = Server(config, **server_options)
        await server.start()
        running = RunningServer(server, path)
        self.running.append(running)
        return running

    async def stop_all(self) -> None:
        for running in self.running:
            if running.server.runtime is not None:
                await running.server.stop()
        self.running.clear()


class StreamClient:
    """A raw HTTP/1.1 SSE client: status, headers, then events as they arrive.

    Reads chunked transfer encoding by hand so a test sees each flush as the
    server sent it, and can drop the connection at any moment."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.status = 0
        self.headers: dict[str, str] = {}
        self.decoder = Decoder()
        self.events: list[Event] = []
        self.raw = bytearray()
        self._chunked = False
        self._pending: list[Event] = []
        self.closed = False

    @classmethod
    async def open(
        cls, url: str, *, last_event_id: str | int | None = None, headers: dict | None = None
    ) -> StreamClient:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        return await cls._request(reader, writer, url, last_event_id, headers)

    @classmethod
    async def open_from(
        cls,
        url: str,
        *,
        local_host: str = "127.0.0.1",
        receive_buffer: int | None = None,
        last_event_id: str | int | None = None,
        headers: dict | None = None,
    ) -> StreamClient:
        """Like open(), from another loopback address (127.0.0.2 is another client IP
        to the server) and/or with a small socket receive buffer (so that a client
        that stops reading makes the server's writes wait soon)."""
        import socket

        parts = urlsplit(url)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)  # before connect: sets the window
        sock.bind((local_host, 0))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (parts.hostname, parts.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        return await cls._request(reader, writer, url, last_event_id, headers)

    @classmethod
    async def _request(cls, reader, writer, url: str, last_event_id, headers) -> StreamClient:
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}", "Accept: text/event-stream"]
        if last_event_id is not None:
            lines.append(f"Last-Event-ID: {last_event_id}")
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        client = cls(reader, writer)
        await client._read_head()
        return client

    async def _read_head(self) -> None:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        for line in header_lines:
            if ":" in line:
                name, value = line.split(":", 1)
                self.headers[name.strip().lower()] = value.strip()
        self._chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"

    async def _read_body_piece(self) -> bytes:
        if not self._chunked:
            return await self.reader.read(65536)
        size_line = await self.reader.readuntil(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            await self.reader.readuntil(b"\r\n")
            return b""
        data = await self.reader.readexactly(size + 2)
        return data[:-2]

    async def next_event(self, timeout: float = 5.0) -> Event:
        """The next dispatched event; raises EOFError when the server closed the stream."""
        deadline = time.monotonic() + timeout
        while not self._pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no event within {timeout}s")
            try:
                piece = await asyncio.wait_for(self._read_body_piece(), left)
            except asyncio.IncompleteReadError:
                piece = b""
            if not piece:
                self.closed = True
                raise EOFError("stream closed by the server")
            self.raw += piece
            self._pending.extend(self.decoder.feed(piece))
        event = self._pending.pop(0)
        self.events.append(event)
        return event

    async def next_widget_event(self, timeout: float = 5.0) -> Event:
        """The next event that is not a control event (hello)."""
        while True:
            event = await self.next_event(timeout)
            if event.type != "hello":
                return event

    async def read_raw_until(self, needle: bytes, timeout: float = 5.0) -> None:
        """Read until the raw body holds `needle` (a comment, say, which is no event)."""
        deadline = time.monotonic() + timeout
        while needle not in self.raw:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {needle!r} within {timeout}s")
            piece = await asyncio.wait_for(self._read_body_piece(), left)
            if not piece:
                self.closed = True
                raise EOFError("stream closed by the server")
            self.raw += piece
            self._pending.extend(self.decoder.feed(piece))

    async def read_until_closed(self, timeout: float = 5.0) -> list[Event]:
        out = []
        try:
            while True:
                out.append(await self.next_event(timeout))
        except EOFError:
            return out

    async def collect(self, count: int, timeout: float = 5.0) -> list[Event]:
        return [await self.next_widget_event(timeout) for _ in range(count)]

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        """Drop the connection with a TCP reset, as a dead client would."""
        sock = self.writer.get_extra_info("socket")
        import socket
        import struct

        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


def data(event: Event) -> dict:
    return json.loads(event.data)


def page_data(html: str) -> dict:
    """The JSON block a dashboard page carries for its script."""
    match = re.search(r'<script type="application/json" id="dashboard-data">(.*?)</script>', html, re.S)
    assert match, "the page carries its data block"
    return json.loads(match[1])


# --- reading streams -------------------------------------------------------------------------


def ids(events) -> list[int]:
    return [int(e.last_event_id) for e in events]


async def record_all(server, items) -> list:
    return [await server.record(widget, value) for widget, value in items]


def mixed(count: int, start: int = 0) -> list[tuple]:
    """Samples for widgets a, b and c in turn (b takes text): a on main, b on both, c on other."""
    return [("abc"[n % 3], f"text {n}" if n % 3 == 1 else n) for n in range(start, start + count)]


async def open_stream(server, path: str = "/events/main", **kwargs) -> StreamClient:
    """A stream, past its 200 and its `hello`."""
    client = await StreamClient.open(server.url(path), **kwargs)
    assert client.status == 200, client.headers
    assert (await client.next_event()).type == "hello"
    return client


async def read_through(client: StreamClient, last_id: int) -> list:
    """Widget events up to and including the one with id last_id."""
    out = []
    while not out or int(out[-1].last_event_id or 0) < last_id:
        out.append(await client.next_widget_event())
    return out
