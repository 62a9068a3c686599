"""GET /events/<dashboard>: one Server-Sent Events stream per open page.

Deliberate oddities, please read before "fixing":
- A stream writes again only after its previous flush finished. Tornado has no
  write timeout and an unbounded write buffer; while a slow client's flush is
  pending, new events just pile up in the hub's shared buffer, and the next
  write batches them (or, when the client fell off the buffer, a snapshot).
- Over a limit, or while the server stops, the answer is still 200 with a
  jittered `retry:`: a browser never reconnects after a non-200 answer.
- Compression is switched off for this handler: a gzip stream would hold events
  back in the compressor.
"""

from __future__ import annotations

import json
import logging
import random
import time

import tornado.web
from tornado.iostream import StreamClosedError

from .. import __version__
from ..hub import Topic, encode_sample
from ..sse import encode_comment, encode_event, encode_retry
from .base import BaseHandler

log = logging.getLogger("dashboard.stream")

RETRY_MS = 3000
REPLAY_LIMIT = 5000  # older gaps than this many events get the newest value of each widget
KEEPALIVE = encode_comment("keep-alive")


def jittered_retry() -> bytes:
    """A retry delay spread over a few seconds, so that a thousand screens do not
    come back in the same millisecond."""
    return encode_retry(random.randint(1000, 5000))


class StreamHandler(BaseHandler):
    _closed = False
    _waiter = None

    def prepare(self) -> None:
        self._transforms = []  # never gzip an event stream

    async def get(self, dashboard_id: str) -> None:
        dashboard = self.config.dashboard(dashboard_id)
        topic = self.runtime.hub.topic(dashboard_id)
        if dashboard is None or topic is None:
            raise tornado.web.HTTPError(404, f"There is no dashboard {dashboard_id!r}.")
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        if self._refused():
            self.finish(jittered_retry())
            return
        self.stream = topic
        self.events_sent = 0
        self.runtime.streams.add(self)
        topic.readers += 1
        try:
            cursor, chunks = await self._opening(topic, dashboard.widgets)
            hello = encode_event(json.dumps({"server": self.runtime.instance, "version": __version__}), event="hello")
            await self._send([encode_retry(RETRY_MS), hello, *chunks])
            await self._follow(topic, cursor)
        except StreamClosedError:
            pass
        finally:
            topic.readers -= 1
            self.runtime.streams.discard(self)
        if not self._closed:
            self.finish()

    def _refused(self) -> bool:
        server = self.config.server
        streams = self.runtime.streams
        if self.runtime.hub.closed or len(streams) >= server.max_streams:
            return True
        ip = self.request.remote_ip
        return sum(1 for s in streams if s.request.remote_ip == ip) >= server.max_streams_per_ip

    def _last_event_id(self) -> int | None:
        # The header (a browser's reconnect) wins over the query (the page's first connect).
        raw = self.request.headers.get("Last-Event-ID") or self.get_query_argument("last_event_id", "")
        raw = raw.strip()
        return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 19 else None

    async def _opening(self, topic: Topic, widgets) -> tuple[int, list[bytes]]:
        """Where this stream starts: the cursor and what to send first."""
        last = self._last_event_id()
        if last is None or last > self.runtime.hub.last_id:
            return topic.last_id, topic.snapshot()  # a fresh page, or an id we never issued
        chunks = topic.since(last)
        if chunks is not None:
            return topic.last_id, chunks
        # Older than the buffer: replay from the database, which holds every id <= upto.
        upto = topic.last_id
        samples = await self.runtime.store.since(widgets, last, upto=upto, limit=REPLAY_LIMIT)
        if len(samples) > REPLAY_LIMIT:
            return topic.last_id, topic.snapshot(last)
        return upto, [encode_sample(sample) for sample in samples]

    async def _follow(self, topic: Topic, cursor: int) -> None:
        server = self.config.server
        hub = self.runtime.hub
        deadline = time.monotonic() + server.max_stream_lifetime * random.uniform(0.85, 1.0)
        while not self._closed:
            if hub.closed:
                await self._send([jittered_retry()])
                return
            left = deadline - time.monotonic()
            if left <= 0:
                return  # the browser reconnects and resumes with Last-Event-ID
            self._waiter = hub.wait(topic, cursor, min(server.keepalive, left))
            if self._waiter is not None:
                await self._waiter
                self._waiter = None
            if self._closed or hub.closed:
                continue
            if topic.last_id <= cursor:
                await self._send([KEEPALIVE])
                continue
            if server.batch:
                await tornado.gen.sleep(server.batch)
            chunks = topic.since(cursor)
            if chunks is None:  # fell behind the buffer: the newest value of each widget instead
                chunks = topic.snapshot(cursor)
            cursor = topic.last_id
            await self._send(chunks)

    async def _send(self, chunks: list[bytes]) -> None:
        self.write(b"".join(chunks))
        self.events_sent += len(chunks)
        await self.flush()

    def on_connection_close(self) -> None:
        # Also called when a proxy closes on the client's behalf; either way, stop now.
        self._closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(False)
