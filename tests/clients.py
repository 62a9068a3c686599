"""One scenario for event stream clients this project did not write (a browser's
EventSource, Node's `eventsource` package, Python's httpx-sse): read a dashboard's
stream through a server restart, with hostile values, and check every event id
against the database: none missing, none twice, in order, every value intact.

A client here is anything with `start(url)`, `connected()`, `received()` (the
widget events so far, as (type, id, data)) and `stop()`, all awaited (a browser's
page can only be read with an await)."""

from __future__ import annotations

import asyncio
import json
from typing import Protocol

from dashboard.core.views import accept
from dashboard.storage.store import Store
from tests.configs import dashboard, loopback_server, push_widget, push_widgets
from tests.helpers import store_sample, wait_until

WIDGETS = ("n", "t")  # the dashboard's widgets: a number and a text
CONFIG = (
    loopback_server(grace="1s")
    + dashboard("main", list(WIDGETS))
    + push_widget("n", "number")
    + push_widget("t", "text")
    + push_widgets(x="text")  # on no dashboard of the stream: never on it
)
HOSTILE = [
    "cr\rcr",
    "lf\nlf",
    "crlf\r\ncrlf",
    "\r\n\r\n",
    "line\u2028paragraph\u2029",
    "nul\x00nul",
    "emoji 😀 👩\u200d👩\u200d👧 \U0001f680",
    "x" * 100_000,
    "data: fake\nid: 1\nevent: n\n\n",
    "",
    '"quoted" \\ backslash </script>',
]


LINE_LIMIT = 1024 * 1024  # a client's output line: the 100 KB value, escaped, fits


class Client(Protocol):
    async def start(self, url: str) -> None: ...

    async def connected(self) -> bool: ...

    async def received(self) -> list[tuple[str, str, str]]: ...

    async def stop(self) -> None: ...


async def record_round(server, values: list[str], start: int) -> None:
    for offset, value in enumerate(values):
        await server.record("t", value)
        await server.record("n", start + offset)
        await server.record("x", "elsewhere")


async def read_through_restart(servers, client: Client, timeout: float = 60.0) -> None:
    server = await servers.start(CONFIG)
    port, url = server.port, server.server.config.storage.url
    await client.start(server.url("/events/main"))
    await wait_until(client.connected, timeout, message="the client to connect")
    await record_round(server, HOSTILE[:5], 0)

    async def received_at_least(count: int) -> bool:
        return len(await client.received()) >= count

    await wait_until(lambda: received_at_least(10), timeout, message="the first values")

    await server.stop()
    # While the server is away, samples keep arriving in its database (another process).
    store = Store(url)
    await store.open(migrate=False)
    for offset, value in enumerate(HOSTILE[5:]):
        await store_sample(store, "t", value)
        await store_sample(store, "n", 100 + offset)
    await store.close()

    server = await servers.start(CONFIG, port=port)
    await record_round(server, ["after the restart"], 200)
    # A last sample, once received, says that everything before it was delivered.
    last = await server.record("n", -1)

    async def got_last() -> bool:
        return any(event_id == str(last.id) for _, event_id, _ in await client.received())

    await wait_until(got_last, timeout, message=f"event {last.id} after the restart")
    expected = await server.runtime.store.since(WIDGETS, 0, limit=10_000)
    received = await client.received()
    assert [int(event_id) for _, event_id, _ in received] == [s.id for s in expected]  # none missing, none twice
    for (name, _, data), sample in zip(received, expected, strict=True):
        assert name == sample.widget
        assert json.loads(data) == sample.as_dict()
    texts = [json.loads(data)["value"] for name, _, data in received if name == "t"]
    # As every way in keeps them (core.views.accept): NUL and lone surrogates become U+FFFD.
    assert texts == [accept("text", value) for value in HOSTILE] + ["after the restart"]


# --- httpx-sse ------------------------------------------------------------------------------------


class HttpxSseClient:
    """httpx-sse reads events; reconnecting with Last-Event-ID after the stream ends (and
    waiting the server's retry) is the caller's part, as httpx-sse's README shows it."""

    def __init__(self, headers: dict[str, str] | None = None):
        self.headers = headers or {}
        self.events: list[tuple[str, str, str]] = []
        self.opened = False
        self.last_event_id = ""
        self.retry = 3.0
        self.task: asyncio.Task | None = None

    async def start(self, url: str) -> None:
        self.task = asyncio.ensure_future(self._run(url))

    async def connected(self) -> bool:
        return self.opened

    async def received(self) -> list[tuple[str, str, str]]:
        return [event for event in self.events if event[0] in WIDGETS]

    async def _run(self, url: str) -> None:
        import httpx
        from httpx_sse import aconnect_sse

        async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=60.0)) as http:
            while True:
                headers = dict(self.headers)
                if self.last_event_id:
                    headers["Last-Event-ID"] = self.last_event_id
                try:
                    async with aconnect_sse(http, "GET", url, headers=headers) as source:
                        source.response.raise_for_status()
                        self.opened = True
                        async for event in source.aiter_sse():
                            if event.retry is not None:
                                self.retry = event.retry / 1000
                            if event.id:
                                self.last_event_id = event.id
                            self.events.append((event.event, event.id, event.data))
                except httpx.TransportError:
                    pass  # the server is away: try again after the retry delay
                await asyncio.sleep(self.retry)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass


# --- Node's eventsource -----------------------------------------------------------------------------


class NodeEventSourceClient:
    """tests/clients/eventsource.mjs, run by node: the `eventsource` package from npm."""

    def __init__(self, script: str, cwd: str, env: dict[str, str] | None = None):
        self.script, self.cwd, self.env = script, cwd, env
        self.records: list[dict] = []
        self.process: asyncio.subprocess.Process | None = None
        self.reader: asyncio.Task | None = None

    async def start(self, url: str) -> None:
        self.process = await asyncio.create_subprocess_exec(
            "node",
            self.script,
            url,
            *WIDGETS,
            "hello",
            "gap",
            "reload",
            cwd=self.cwd,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            limit=LINE_LIMIT,
        )
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        while line := await self.process.stdout.readline():
            self.records.append(json.loads(line))

    async def connected(self) -> bool:
        return any(record["type"] == "open" for record in self.records)

    async def received(self) -> list[tuple[str, str, str]]:
        return [(r["type"], r["id"], r["data"]) for r in self.records if r["type"] in WIDGETS]

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()
        if self.reader is not None:
            self.reader.cancel()
