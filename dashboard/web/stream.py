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
- Once the opening is sent, get() returns without finishing the answer, and
  events are written by the topic's fan-out pass calling push(), which sends
  the bytes (framed as an HTTP chunk) straight to the socket. Tornado's write
  path (a Future, a chunk header and a buffer per write) and a wake-up per
  reader per event cost several times the send itself at thousands of streams.
  Only when the kernel does not take everything does the rest go through
  Tornado's IOStream, and the stream counts as busy until that drained. Never
  on TLS: there the IOStream must do the writing.
"""

from __future__ import annotations

import json
import logging
import math
import random
import socket
import time
from time import monotonic

import tornado.web
from tornado import httputil
from tornado.iostream import IOStream, StreamClosedError

from .. import __version__, auth
from ..hub import Topic, encode_sample
from ..sse import encode_comment, encode_event, encode_retry
from .base import BaseHandler
from .sessions import renew

log = logging.getLogger("dashboard.stream")

RETRY_MS = 3000
REPLAY_LIMIT = 5000  # older gaps than this many events get the newest value of each widget
KEEPALIVE = encode_comment("keep-alive")
# For a viewer who may not (or no longer) see the dashboard: the page reloads, and the
# page handler sends it to the sign-in page or says why not.
SIGN_IN_NEEDED = encode_event(json.dumps({"reason": "sign-in needed"}), event="reload")
SESSION_ENDED = encode_event(json.dumps({"reason": "session ended"}), event="reload")
# TCP keepalive on stream sockets: a peer that vanished (a laptop lid, a dead Wi-Fi)
# while its stream was quiet is found within about idle + interval * count seconds.
TCP_KEEPALIVE_IDLE = 60
TCP_KEEPALIVE_INTERVAL = 10
TCP_KEEPALIVE_COUNT = 6
# The kernel's send buffer of a stream socket. Left alone, Linux grows it to 4 MB
# for a client that stopped reading; this bounds what a stalled stream holds in
# the kernel (Linux doubles the value for its bookkeeping). 64 KiB still carries
# a burst of hundreds of events, and at 300 ms round trip over 200 KB/s.
STREAM_SEND_BUFFER = 64 * 1024


def jittered_retry() -> bytes:
    """A retry delay spread over a few seconds, so that a thousand screens do not
    come back in the same millisecond."""
    return encode_retry(random.randint(1000, 5000))


def tune_stream_socket(sock: socket.socket) -> None:
    """A bounded send buffer, TCP keepalive, and no Nagle: each write is a whole
    batch of events, which Nagle's algorithm could only hold back until the peer's
    delayed ACK (40 ms)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SEND_BUFFER)
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return  # a Unix socket behind a proxy: no TCP options
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", TCP_KEEPALIVE_IDLE), ("TCP_KEEPINTVL", TCP_KEEPALIVE_INTERVAL),
                        ("TCP_KEEPCNT", TCP_KEEPALIVE_COUNT)):
        option = getattr(socket, name, None)  # Linux has all three; others may lack some
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


def direct_socket(request) -> tuple[socket.socket | None, bool]:
    """The socket that push() may send to itself, and whether to frame what it sends
    as HTTP chunks; None when Tornado must write (TLS, or chunking we did not expect)."""
    connection = request.connection
    stream = getattr(connection, "stream", None)
    if type(stream) is not IOStream:  # SSLIOStream encrypts in its own write path
        return None, False
    # Tornado chunks an HTTP/1.1 answer that has no Content-Length; HTTP/1.0 gets raw bytes.
    chunked = request.version == "HTTP/1.1"
    if getattr(connection, "_chunking_output", chunked) != chunked:
        return None, False
    return stream.socket, chunked


class StreamHandler(BaseHandler):
    _closed = False  # the client left
    _ended = False  # end() ran
    _topic = None  # set while the stream counts as open (limits, readers)
    busy = False  # a write is pending in Tornado's buffer: no push until it drained
    cursor = 0
    _viewer = None  # who the stream is for, on a dashboard that is not public
    _session_end = math.inf  # monotonic time
    _access_config = None  # the config the viewer was last checked against
    events_sent = 0
    bytes_sent = 0  # keep-alives included

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
        if not auth.may_see(dashboard, self.viewers):
            # Never a 401 here: an EventSource stops for good after one. A `reload` takes the
            # page to its own answer (the sign-in page, or why not); the long retry keeps a
            # page that does not reload from asking often.
            self.set_header("Connection", "close")
            await self.finish(encode_retry(random.randint(10_000, 20_000)) + SIGN_IN_NEEDED)
            self.request.connection.close()
            return
        self._watch_access(dashboard)
        if self._refused():
            # Close the connection too: a keep-alive connection kept open by a client
            # we turned away would still cost what the limit is there to save.
            self.set_header("Connection", "close")
            await self.finish(jittered_retry())
            self.request.connection.close()
            return
        self.stream = topic
        self.events_sent = 0
        self._enter(topic)
        try:
            cursor, chunks = await self._opening(topic, dashboard.widgets)
            hello = encode_event(json.dumps({"server": self.runtime.instance, "version": __version__}), event="hello")
            await self._send([encode_retry(RETRY_MS), hello, *chunks])
        except StreamClosedError:
            self._closed = True
            self.end()
            return
        except BaseException:
            self._leave()
            raise
        self._follow(topic, cursor)

    def _watch_access(self, dashboard) -> None:
        """Remember who this stream is for, so that tick() can end it with the session."""
        viewer = self.viewers.get(dashboard.auth)
        if viewer is None:
            return
        viewer = renew(self, viewer)  # before the headers go out: the cookie travels with them
        self._viewer = viewer
        self._access_config = self.config
        if viewer.expires is not None:
            self._session_end = monotonic() + (viewer.expires - time.time())

    def _still_allowed(self, now: float) -> bool:
        if now >= self._session_end:
            return False
        config = self.runtime.config
        if config is self._access_config:
            return True
        # A reload: the user, the token, the secret or the dashboard's rule may have changed.
        viewer = self._viewer
        dashboard = config.dashboard(self._topic.name)
        if dashboard is None:
            return True  # a removed dashboard's streams get `reload` from the reload itself
        if viewer.kind == auth.PROXY:
            valid = auth.is_trusted(self.request.remote_ip, config.server.trusted_proxies)
        else:
            valid = auth.session_valid(config.auth, viewer, time.time())
        if not (valid and auth.may_see(dashboard, {viewer.kind: viewer})):
            return False
        self._access_config = config
        return True

    def _revoke(self) -> None:
        log.info("stream of %s on %s ended: session expired or revoked", self._viewer.name, self._topic.name)
        if not self.busy:  # else Tornado still holds bytes of ours: the browser reconnects and learns then
            self._write_now(SESSION_ENDED)
        self.end()

    def _enter(self, topic: Topic) -> None:
        self._topic = topic
        self._ip = self.client_ip
        self.runtime.streams.add(self)
        self.runtime.streams_per_ip[self._ip] += 1
        topic.readers += 1

    def _leave(self) -> None:
        topic, self._topic = self._topic, None
        if topic is None:
            return
        topic.unsubscribe(self)
        topic.readers -= 1
        self.runtime.streams.discard(self)
        per_ip = self.runtime.streams_per_ip
        per_ip[self._ip] -= 1
        if per_ip[self._ip] <= 0:
            del per_ip[self._ip]

    def _refused(self) -> bool:
        server = self.config.server
        if self.runtime.hub.closed or len(self.runtime.streams) >= server.max_streams:
            return True
        return self.runtime.streams_per_ip[self.client_ip] >= server.max_streams_per_ip

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
        # Older than the buffer: replay from the database, which holds every sample id up to
        # the topic's newest. The cursor is the topic's position, which a control event may
        # have moved a fraction past that id; the database is asked in whole ids.
        upto, newest_sample = topic.last_id, topic.event_id
        try:
            samples = await self.runtime.store.since(widgets, last, upto=newest_sample, limit=REPLAY_LIMIT)
        except Exception:
            # A 500 would stop the browser's EventSource for good: open with the
            # newest values instead (graphs fetch their gaps when the database is back).
            log.warning("replay after event %d failed, sending the newest values", last, exc_info=True)
            return topic.last_id, topic.snapshot(last)
        if len(samples) > REPLAY_LIMIT:
            return topic.last_id, topic.snapshot(last)
        return upto, [encode_sample(sample) for sample in samples]

    def _follow(self, topic: Topic, cursor) -> None:
        """Hand the stream to the topic's fan-out. get() then returns: an open stream
        holds no coroutine, task, future or timer of its own (at 10,000 streams those
        were a good part of the memory), and end() finishes it."""
        server = self.config.server
        if self._closed or self.runtime.hub.closed:
            self.end()
            return
        # Tornado's own switch (RequestHandler._execute): do not finish when get() returns.
        self._auto_finish = False
        self._forget_headers()
        self._socket, self._chunked = direct_socket(self.request)
        tune_stream_socket(self.request.connection.stream.socket)
        self.cursor = cursor
        self.busy = False  # in the instance, not the class: the fan-out reads it per event
        self._keepalive = server.keepalive
        self._last_write = monotonic()  # as tick() last noticed it: no clock read per write
        self._bytes_noticed = self.bytes_sent
        self._deadline = self._last_write + server.max_stream_lifetime * random.uniform(0.85, 1.0)
        # Read per stream, so that a reloaded config takes effect.
        topic.batch = server.batch
        topic.tick_every = min(1.0, server.keepalive / 4, server.max_stream_lifetime / 4)
        topic.on_sent = self.runtime.metrics.stream_wrote
        topic.subscribe(self)

    def _forget_headers(self) -> None:
        """Tornado keeps the answer's headers after writing them, some 1 KB per open
        stream that nothing reads again (the access line does not). The request's stay:
        the connection holds them too."""
        self._headers = httputil.HTTPHeaders()
        self.ui = None  # template helpers: a stream renders no template

    def push(self, payload: bytes, upto, count: int) -> None:
        """Called by the topic's fan-out: send the events up to `upto`, now."""
        if self.cursor < self._topic.floor:  # fell behind the buffer: the payload is a snapshot
            self.runtime.metrics.snapshots_sent.inc()
        self.cursor = upto
        self.events_sent += count  # the topic counts for the metrics, once per pass
        self._write_now(payload)

    def tick(self, now: float) -> None:
        """Called by the topic every tick_every seconds: a keep-alive comment on a quiet
        stream, and the end of the stream's lifetime (the browser then reconnects and
        resumes with Last-Event-ID); and of its viewer's session."""
        if self._viewer is not None and not self._still_allowed(now):
            self._revoke()
        elif now >= self._deadline:
            self.end()
        elif self.bytes_sent != self._bytes_noticed:
            self._bytes_noticed = self.bytes_sent
            self._last_write = now
        elif now - self._last_write >= self._keepalive and not self.busy:
            self._write_now(KEEPALIVE)

    def end(self) -> None:
        """Finish the stream, once: its lifetime passed, the hub closed (a jittered
        retry first), a write failed, or the client left."""
        if self._ended:
            return
        self._ended = True
        self._leave()
        if self._closed:
            if not self._auto_finish:  # handed to the fan-out: no finish(), so log the access line here
                self.application.log_request(self)
            return
        if self.runtime.hub.closed:
            self.write(jittered_retry())
        self.finish()

    def _write_now(self, payload: bytes) -> None:
        self.bytes_sent += len(payload)
        sock = self._socket
        if sock is None:
            future = self.request.connection.write(payload)
        else:
            data = b"%x\r\n%b\r\n" % (len(payload), payload) if self._chunked else payload
            try:
                sent = sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:  # reset by the peer, a broken pipe: the client is gone
                self._lost()
                return
            if sent == len(data):
                return
            try:
                future = self.request.connection.stream.write(memoryview(data)[sent:])
            except StreamClosedError:
                self._lost()
                return
        # The kernel's buffer is full: Tornado's IOStream holds the rest until the
        # client reads; meanwhile new events wait in the topic's shared buffer.
        self.busy = True
        future.add_done_callback(self._drained)

    def _drained(self, future) -> None:
        self.busy = False
        if future.cancelled() or future.exception() is not None:
            self._lost()
        else:
            self._topic.feed(self)

    def _lost(self) -> None:
        self._closed = True
        self.request.connection.stream.close()  # Tornado then calls on_connection_close
        self.end()

    async def _send(self, chunks: list[bytes]) -> None:
        data = b"".join(chunks)
        self.write(data)
        self.events_sent += len(chunks)
        self.bytes_sent += len(data)
        self.runtime.metrics.stream_wrote(len(chunks), len(data))
        await self.flush()

    def access_details(self) -> str:
        """Added to the access line, which for a stream is written when it closes."""
        return f"stream: {self.events_sent} events, {self.bytes_sent} bytes"

    def on_connection_close(self) -> None:
        # Also called when a proxy closes on the client's behalf; either way, stop now.
        self._closed = True
        self.end()
