"""GET /events/<dashboard>: one Server-Sent Events stream per open page; with
?widgets=a,b only those widgets of it; GET /events?widgets=a,b: widgets of any
dashboards on one connection (a summary screen, a single-widget page, a script).
A stream of some widgets reads the hub's subset topic of exactly those widgets
(hub/memory.py), so the whole-dashboard streams' fan-out does not change for it.

Deliberate oddities, please read before "fixing":
- Over a limit, or while the server stops, the answer is still 200 with a
  jittered `retry:`: a browser never reconnects after a non-200 answer.
- Compression is switched off for this handler: a gzip stream would hold events
  back in the compressor.
- Tornado serves the opening (headers, retry, hello, current values or what a
  resuming page missed); then the handler detaches the connection from
  Tornado's HTTP machinery and hands its socket to a LiveStream, which the
  topic's fan-out feeds. An open stream is then that small object and its
  socket: no RequestHandler, request, HTTP connection, IOStream, coroutine,
  task, future or timer per stream (at 10,000 streams those were most of the
  memory, and Tornado's write path cost several times the send itself).
- A LiveStream writes again only after its previous write went out whole. A
  slow client's leftover bytes wait in the stream (one payload at most) until
  its socket is writable; meanwhile new events pile up in the hub's shared
  buffer, and the next write batches them (or, when the client fell off the
  buffer, a snapshot).
- The server speaks plain HTTP (TLS ends at a proxy), so the socket takes the
  bytes as they are; an HTTP/1.1 answer is framed as chunks by hand.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from time import monotonic

import tornado.web
from tornado import gen
from tornado.http1connection import HTTP1Connection
from tornado.ioloop import IOLoop
from tornado.iostream import StreamClosedError

from .. import __version__
from ..config import Config, ServerConfig
from ..core import auth
from ..core.auth import Viewer
from ..core.events import SIGN_IN_NEEDED as SIGN_IN_REASON
from ..core.events import Gap, Hello, Reload
from ..core.sse import encode_comment, encode_retry
from ..hub.memory import BACKLOG_BYTES, Topic, TopicSettings, encode_sample
from .base import BaseHandler, log_access
from .cors import CorsMixin
from .runtime import Runtime
from .sessions import renew, still_valid

log = logging.getLogger("dashboard.stream")
Socket = socket.socket

RETRY_MS = 3000
REPLAY_LIMIT = 5000  # older gaps than this many events get the newest value of each widget
REPLAY_PAGE = 500  # samples read from the database at a time for a replay
MAX_WIDGETS = 64  # widgets one stream may ask for with ?widgets=
KEEPALIVE = encode_comment("keep-alive")
# For a viewer who may not (or no longer) see the dashboard: the page reloads, and the
# page handler sends it to the sign-in page or says why not.
SIGN_IN_NEEDED = Reload(SIGN_IN_REASON).encode()
SESSION_ENDED = Reload("session ended").encode()
LAST_CHUNK = b"0\r\n\r\n"
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
    for name, value in (
        ("TCP_KEEPIDLE", TCP_KEEPALIVE_IDLE),
        ("TCP_KEEPINTVL", TCP_KEEPALIVE_INTERVAL),
        ("TCP_KEEPCNT", TCP_KEEPALIVE_COUNT),
    ):
        option = getattr(socket, name, None)  # Linux has all three; others may lack some
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


def topic_settings(server: ServerConfig, on_sent: Callable[[int, int, int], None]) -> TopicSettings:
    """How the hub's topics feed streams: payloads framed as HTTP chunks, a tick often
    enough for keep-alives and lifetimes, `[server] batch`; given to the hub when it is
    built and again on reload."""
    tick_every = min(1.0, server.keepalive / 4, server.max_stream_lifetime / 4)
    return TopicSettings(batch=server.batch, tick_every=tick_every, frame=chunk, on_sent=on_sent)


def chunk(payload: bytes) -> bytes:
    """One HTTP/1.1 chunk (never an empty one: that would end the answer)."""
    return b"%x\r\n%b\r\n" % (len(payload), payload) if payload else b""


UNUSABLE = -1  # a Last-Event-ID that is no id of ours (sample ids are above zero)


@dataclass(frozen=True)
class Scope:
    """What a stream shows: a dashboard (`widgets` None: all of it, else some of its
    widgets), or (`dashboard` None) widgets of any dashboards."""

    dashboard: str | None
    widgets: tuple[str, ...] | None

    def allowed(self, config, viewers: Mapping[str, Viewer]) -> bool:
        """Whether these viewers may see it under `config`. A dashboard or widget that is
        gone counts as allowed: its streams are told to reload by the reload itself."""
        if self.dashboard is not None:
            dashboard = config.dashboard(self.dashboard)
            return dashboard is None or auth.may_see(dashboard, viewers)
        return all(auth.widget_visible(config, w, viewers) for w in self.widgets or () if w in config.widgets)


def requested_widgets(handler: tornado.web.RequestHandler) -> tuple[str, ...] | None:
    """The widgets of ?widgets=a,b (also repeated: ?widgets=a&widgets=b), in the order
    given, each once; None without the parameter. 400 for an empty or overlong list."""
    given = handler.get_query_arguments("widgets")
    if not given:
        return None
    widgets = tuple(dict.fromkeys(w.strip() for part in given for w in part.split(",") if w.strip()))
    if not widgets:
        raise tornado.web.HTTPError(400, "widgets: expected widget ids separated by commas, got none")
    if len(widgets) > MAX_WIDGETS:
        raise tornado.web.HTTPError(400, f"widgets: at most {MAX_WIDGETS} on one stream, got {len(widgets)}")
    return widgets


async def subset_topic(runtime, widgets: tuple[str, ...]) -> Topic | None:
    """The hub's topic of exactly these widgets, with the newest value of each: those on
    no dashboard (none of the hub's topics saw them) are read from the database. None
    when the hub has as many subset topics as it keeps."""
    topic = runtime.hub.subset(widgets)
    if topic is None:
        return None
    unplaced = [w for w in widgets if w not in topic.latest and not runtime.config.dashboards_of(w)]
    if unplaced:
        found = await runtime.store.shown(runtime.config.widgets[w] for w in unplaced)
        for widget, sample in found.items():
            # Newer ones arrive through the hub (and a sample committed but not yet
            # published will be): only what the hub has already passed on is filled in.
            if sample.id <= runtime.hub.last_id:
                topic.latest.setdefault(widget, (sample.id, encode_sample(sample), sample))
    return topic


class StreamHandler(CorsMixin, BaseHandler):
    """Serves a stream's opening through Tornado, then hands it to a LiveStream."""

    bearer_realm = "dashboard"  # scripts read with a read token

    _closed = False  # the client left before the hand-over

    def prepare(self) -> None:
        self._transforms = []  # never gzip an event stream

    def _scope(self, dashboard_id: str | None) -> Scope:
        """What was asked for; 404 for a dashboard or widget that does not exist (an
        EventSource stops for good: nothing will ever come), 400 for a bad request."""
        widgets = requested_widgets(self)
        if dashboard_id is not None:
            dashboard = self.config.dashboard(dashboard_id)
            if dashboard is None or self.runtime.hub.topic(dashboard_id) is None:
                raise tornado.web.HTTPError(404, f"There is no dashboard {dashboard_id!r}.")
            for widget in widgets or ():
                if widget not in dashboard.widgets:
                    raise tornado.web.HTTPError(404, f"Dashboard {dashboard_id!r} has no widget {widget!r}.")
            return Scope(dashboard_id, widgets)
        if widgets is None:
            raise tornado.web.HTTPError(400, "widgets: expected ?widgets=<id>,<id>... (or /events/<dashboard>)")
        for widget in widgets:
            if widget not in self.config.widgets:
                raise tornado.web.HTTPError(404, f"There is no widget {widget!r}.")
        return Scope(None, widgets)

    async def get(self, dashboard_id: str | None = None) -> None:
        scope = self._scope(dashboard_id)
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        if not scope.allowed(self.config, self.viewers):
            if self.request.headers.get("Authorization") is not None:
                # A script (an EventSource cannot send this header): a plain answer it can act on.
                raise self._script_denied()
            # Never a 401 here: an EventSource stops for good after one. A `reload` takes the
            # page to its own answer (the sign-in page, or why not); the long retry keeps a
            # page that does not reload from asking often.
            await self._turn_away(encode_retry(random.randint(10_000, 20_000)) + SIGN_IN_NEEDED)
            return
        if self._refused():
            await self._turn_away(jittered_retry())
            return
        if scope.widgets is not None:
            topic = await subset_topic(self.runtime, scope.widgets)
        else:  # a whole dashboard (_scope made sure it has a topic)
            topic = self.runtime.hub.topic(scope.dashboard or "")
        if topic is None or self.runtime.hub.closed:  # as many subsets as the hub keeps, or stopping
            await self._turn_away(jittered_retry())
            return
        stream = LiveStream(self.runtime, topic, self.client_ip)
        try:
            self._watch_access(scope, stream)
            cursor, chunks = await self._opening(topic, topic.widgets)
            hello = Hello(server=self.runtime.instance, version=__version__)
            # Last, the alerts open now: whatever a replay said of them before is older.
            engine = self.runtime.alerts
            dashboard = self.config.dashboard(scope.dashboard) if scope.dashboard else None
            alerts = engine.opening(dashboard) if engine is not None and dashboard is not None else []
            await self._send(stream, [encode_retry(RETRY_MS), hello.encode(), *chunks, *alerts])
        except StreamClosedError:
            self._closed = True
        except BaseException:
            stream.leave()
            raise
        if self._closed:
            stream.leave()
            return
        if self.runtime.hub.closed:  # the server stops: come back soon, elsewhere
            stream.leave()
            await self.finish(jittered_retry())
            return
        self._hand_over(stream, cursor)

    async def _turn_away(self, answer: bytes) -> None:
        # Close the connection too: a keep-alive connection kept open by a client
        # we turned away would still cost what the limit is there to save.
        self.set_header("Connection", "close")
        await self.finish(answer)
        connection = self.request.connection
        assert isinstance(connection, HTTP1Connection)  # the server speaks HTTP/1.x only
        connection.close()

    def _script_denied(self) -> tornado.web.HTTPError:
        if auth.READER not in self.viewers:
            return tornado.web.HTTPError(
                401, "invalid read token: expected Authorization: Bearer <token> of [auth] readers"
            )
        return tornado.web.HTTPError(403, "this read token may not read this")

    def _watch_access(self, scope: Scope, stream: LiveStream) -> None:
        """Remember who this stream is for, so that the stream can end with the session
        (or the read token, or the proxy's trust) that let it in."""
        if scope.allowed(self.config, {}):
            return  # public: nobody's to lose
        viewers = {kind: renew(self, viewer) for kind, viewer in self.viewers.items()}  # before the headers go out
        stream.viewers = viewers
        stream.scope = scope
        stream.remote_ip = self.request.remote_ip or ""
        stream.access_config = self.config
        stream.session_end = _first_expiry(viewers)

    def _refused(self) -> bool:
        server = self.config.server
        if self.runtime.hub.closed or len(self.runtime.streams) >= server.max_streams:
            return True
        return self.runtime.streams_per_ip[self.client_ip] >= server.max_streams_per_ip

    def _last_event_id(self) -> int | None:
        """The id the client resumes from; None for a fresh start; UNUSABLE for an id no
        event ever had (not a number of up to 18 digits: ours are sample ids)."""
        # The header (a browser's reconnect) wins over the query (the page's first connect).
        raw = self.request.headers.get("Last-Event-ID") or self.get_query_argument("last_event_id", "")
        raw = raw.strip()
        if not raw:
            return None
        return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 19 else UNUSABLE

    async def _opening(self, topic: Topic, widgets) -> tuple[float, list[bytes]]:
        """Where this stream starts: the cursor and what to send first."""
        last = self._last_event_id()
        if last is None:
            return topic.position, topic.snapshot()  # a fresh page
        if last == UNUSABLE:  # told, as for an id never issued: it missed what it had not seen
            return topic.position, [Gap("unknown id").encode(), *topic.snapshot()]
        if last > self.runtime.hub.last_id:
            if await self._issued(last):
                # Another process sent it, and this one's hub has not heard of it yet (its
                # link to Redis is catching up): wait there, and go on from it.
                return last, []
            # An id never issued (a database started afresh)
            return topic.position, [Gap("unknown id", last).encode(), *topic.snapshot()]
        chunks = topic.since(last)
        if chunks is not None:
            if sum(map(len, chunks)) > BACKLOG_BYTES:
                return topic.position, [Gap("too old", last).encode(), *topic.snapshot(last)]
            return topic.position, chunks
        # Older than the buffer: replay from the database, which holds every sample id up to
        # the topic's newest. The cursor is the topic's position, which a control event may
        # have moved a fraction past that id; the database is asked in whole ids.
        upto, newest_sample = topic.position, topic.last_id
        try:
            replay = await self._replay(widgets, last, newest_sample)
        except Exception:
            # A 500 would stop the browser's EventSource for good: open with the
            # newest values instead (graphs fetch their gaps when the database is back).
            log.warning("replay after event %d failed, sending the newest values", last, exc_info=True)
            return topic.position, [Gap("database unavailable", last).encode(), *topic.snapshot(last)]
        if replay is None:
            return topic.position, [Gap("too old", last).encode(), *topic.snapshot(last)]
        return upto, replay

    async def _replay(self, widgets, after: int, upto: int) -> list[bytes] | None:
        """The events after `after` up to `upto`, from the database, a page at a time; None
        when they are more than REPLAY_LIMIT events or BACKLOG_BYTES (then a gap and the
        newest values are sent instead: what a stream holds for a client that may never
        read it stays bounded)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            samples = await self.runtime.store.since(widgets, after, upto=upto, limit=REPLAY_PAGE)
            for sample in samples[:REPLAY_PAGE]:
                chunks.append(encoded := encode_sample(sample))
                size += len(encoded)
            if len(chunks) > REPLAY_LIMIT or size > BACKLOG_BYTES:
                return None
            if len(samples) <= REPLAY_PAGE:
                return chunks
            after = samples[REPLAY_PAGE - 1].id

    async def _issued(self, event_id: int) -> bool:
        try:
            return await self.runtime.store.last_id() >= event_id
        except Exception:
            log.warning("cannot tell whether event %d was issued, sending the newest values", event_id, exc_info=True)
            return False

    async def _send(self, stream: LiveStream, chunks: list[bytes]) -> None:
        """The opening, which the client must take within [server] body_timeout: a client
        that never reads it is closed, not kept (with it) until it leaves. The socket is
        tuned first: with the kernel's own send buffer (up to 4 MiB) a whole replay would
        fit in it, the flush would end at once, and the limit would hold nothing."""
        connection = self.request.connection
        assert isinstance(connection, HTTP1Connection)  # the server speaks HTTP/1.x only
        if connection.stream is not None and connection.stream.socket is not None:
            tune_stream_socket(connection.stream.socket)
        data = b"".join(chunks)
        self.write(data)
        stream.events_sent += len(chunks)
        stream.bytes_sent += len(data)
        self.runtime.metrics.stream_wrote(len(chunks), len(data))
        del data, chunks
        limit = timedelta(seconds=self.config.server.body_timeout)
        try:
            await gen.with_timeout(limit, self.flush(), quiet_exceptions=StreamClosedError)
        except TimeoutError:
            log.info("stream from %s closed: its opening was not read within body_timeout", self.client_ip)
            self.request.connection.close()  # type: ignore[union-attr]
            raise StreamClosedError() from None

    def _hand_over(self, stream: LiveStream, cursor) -> None:
        """Tornado's part ends here; get() returns and the handler, the request and the
        HTTP connection go. The stream keeps the socket and what its access line needs."""
        request = self.request
        # Tornado chunks an HTTP/1.1 answer without a Content-Length (this one); an HTTP/1.0
        # answer is the bytes as they are, and its end is the end of the connection.
        chunked = request.version == "HTTP/1.1"
        stream.access = (request.method, request.path, request.uri, time.time() - request.request_time())
        iostream = self.detach()  # its write buffer is empty: flush() waited for it
        if iostream.closed():
            stream.leave()
            return
        sock = iostream.socket
        IOLoop.current().remove_handler(sock.fileno())  # the IOStream's, watching for a close
        stream.follow(sock, chunked, cursor)

    def on_connection_close(self) -> None:
        # Before the hand-over only: the client left during the opening.
        self._closed = True


def _first_expiry(viewers: Mapping[str, Viewer]) -> float:
    """When the first of these sessions ends, in monotonic time (inf: none does)."""
    expiries = [viewer.expires for viewer in viewers.values() if viewer.expires is not None]
    return monotonic() + (min(expiries) - time.time()) if expiries else math.inf


class LiveStream:
    """An open event stream after its opening: a socket, a cursor in its topic's
    buffer, and a few counters. The topic's fan-out calls push(); its timer calls
    tick() (keep-alives, the stream's lifetime, its viewer's session)."""

    __slots__ = (
        "access",
        "access_config",
        "busy",
        "bytes_sent",
        "chunked",
        "cursor",
        "cursor_noticed",
        "deadline",
        "direct",
        "ended",
        "events_sent",
        "fd",
        "ip",
        "keepalive",
        "last_write",
        "pending",
        "remote_ip",
        "runtime",
        "scope",
        "send",
        "session_end",
        "socket",
        "topic",
        "viewers",
    )

    runtime: Runtime
    topic: Topic | None
    socket: Socket | None
    send: Callable[[bytes], int]
    pending: memoryview | None
    viewer: Viewer | None
    remote_ip: str
    access_config: Config | None
    access: tuple[str, str, str, float] | None
    cursor: float
    cursor_noticed: float

    def __init__(self, runtime: Runtime, topic: Topic, ip: str):
        self.runtime = runtime
        self.topic = topic  # None once the stream no longer counts as open
        self.ip = ip
        self.cursor = 0
        self.busy = False  # bytes of the last write wait for the socket: no push until they went
        self.direct = False  # the topic's fan-out may send() chunks to the socket itself
        self.socket = None
        self.pending = None
        self.ended = False
        self.events_sent = 0
        self.bytes_sent = 0  # keep-alives included
        self.viewers: dict[str, Viewer] | None = None  # who the stream is for, when it is not public
        self.scope: Scope | None = None  # what it shows, for checking them again
        self.remote_ip = ""
        self.access_config = None
        self.session_end = math.inf  # monotonic time the first of their sessions ends
        self.access = None
        runtime.streams.add(self)
        runtime.streams_per_ip[ip] += 1
        topic.readers += 1

    def leave(self) -> None:
        """No longer open: out of the topic and of the counts behind the limits."""
        topic, self.topic = self.topic, None
        if topic is None:
            return
        topic.unsubscribe(self)
        topic.readers -= 1
        self.runtime.streams.discard(self)
        per_ip = self.runtime.streams_per_ip
        per_ip[self.ip] -= 1
        if per_ip[self.ip] <= 0:
            del per_ip[self.ip]

    def follow(self, sock: Socket, chunked: bool, cursor: float) -> None:
        """Take over the socket, and be fed by the topic from `cursor` on."""
        server = self.runtime.config.server
        topic = self.topic
        assert topic is not None, "follow() comes before leave()"
        self.socket = sock
        self.send = sock.send
        self.fd = sock.fileno()
        self.chunked = self.direct = chunked  # the socket was tuned for the opening (_send)
        asyncio.get_running_loop().add_reader(self.fd, self._readable)
        self.cursor = cursor
        self.keepalive = server.keepalive
        self.last_write = monotonic()  # as tick() last noticed it: no clock read per write
        self.cursor_noticed = cursor
        self.deadline = self.last_write + server.max_stream_lifetime * random.uniform(0.85, 1.0)
        topic.subscribe(self)

    def push(self, payload: bytes, upto, count: int) -> None:
        """Called by the topic: send the events up to `upto`, now. (A stream in the topic's
        caught-up group is sent to by the fan-out's own loop instead.)"""
        self.cursor = upto
        self.events_sent += count  # the topic counts for the metrics, once per pass
        self.bytes_sent += len(payload)
        self._write(chunk(payload) if self.chunked else payload)

    def tick(self, now: float) -> None:
        """Called by the topic every tick_every seconds: a keep-alive comment on a quiet
        stream, and the end of the stream's lifetime (the browser then reconnects and
        resumes with Last-Event-ID); and of its viewer's session."""
        topic = self.topic
        assert topic is not None, "a topic ticks its subscribers only"
        if self.viewers is not None and not self._still_allowed(now):
            names = ", ".join(viewer.name for viewer in self.viewers.values()) or "nobody"
            log.info("stream of %s on %s ended: session expired or revoked", names, topic.name)
            self.end(SESSION_ENDED)
        elif now >= self.deadline:
            self.end()
        else:
            cursor = topic.cursor_of(self)
            if cursor != self.cursor_noticed:  # events went out since the last tick
                self.cursor_noticed = cursor
                self.last_write = now
            elif now - self.last_write >= self.keepalive and not self.busy:
                self.bytes_sent += len(KEEPALIVE)
                self.last_write = now
                self._write(chunk(KEEPALIVE) if self.chunked else KEEPALIVE)

    def _still_allowed(self, now: float) -> bool:
        config = self.runtime.config
        if now < self.session_end and config is self.access_config:
            return True
        # A session ended, or a reload: the user, the token, the secret or the rule may have changed.
        reloaded = config is not self.access_config
        wall = time.time()
        valid = {}
        for kind, viewer in (self.viewers or {}).items():
            if viewer.expires is not None and wall >= viewer.expires:
                continue
            current = still_valid(config, viewer, self.remote_ip) if reloaded else viewer
            if current is not None:
                valid[kind] = current
        if self.scope is None or not self.scope.allowed(config, valid):
            return False
        self.viewers = valid
        self.access_config = config
        self.session_end = _first_expiry(valid)
        return True

    def end(self, last: bytes = b"") -> None:
        """Finish the stream, once: its lifetime passed, its session ended, the hub closed
        (a jittered retry first), or a write failed. What is said last goes out with one
        send, if the socket takes it; a client that is not reading is simply closed (it
        reconnects and resumes from its last event id)."""
        if self.ended:
            return
        self.ended = True
        self.leave()
        if self.runtime.hub.closed:
            last += jittered_retry()
        if not self.busy and self.socket is not None:
            if self.chunked:
                last = chunk(last) + LAST_CHUNK
            try:
                self.socket.send(last)
            except OSError:
                pass  # gone already
        self._close()

    def _write(self, data: bytes) -> None:
        try:
            sent = self.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:  # reset by the peer, a broken pipe: the client is gone
            self.lost()
            return
        if sent != len(data):
            self.stalled(data, sent)

    def stalled(self, data: bytes, sent: int) -> None:
        """The kernel's buffer is full: the rest waits here until the client reads;
        meanwhile new events wait in the topic's shared buffer."""
        self.pending = memoryview(data)[sent:]
        self.busy = True
        self.direct = False
        if self.topic is not None:
            self.topic.fell_behind(self)
        asyncio.get_running_loop().add_writer(self.fd, self._writable)

    def _writable(self) -> None:
        assert self.socket is not None and self.pending is not None, "watched for writing while open and stalled"
        try:
            sent = self.socket.send(self.pending)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.lost()
            return
        self.pending = self.pending[sent:]
        if self.pending:
            return
        self.pending = None
        self.busy = False
        self.direct = self.chunked
        asyncio.get_running_loop().remove_writer(self.fd)
        if self.topic is not None:
            self.topic.feed(self)

    def _readable(self) -> None:
        """The client sends nothing after its request: what comes is its goodbye."""
        assert self.socket is not None, "watched for reading while open"
        try:
            data = self.socket.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.lost()

    def lost(self) -> None:
        """The client is gone: nothing more to say."""
        if not self.ended:
            self.ended = True
            self.leave()
        self._close()

    def _close(self) -> None:
        if self.socket is None:
            return
        loop = asyncio.get_running_loop()
        loop.remove_reader(self.fd)
        self.direct = False
        if self.busy:
            loop.remove_writer(self.fd)
            self.busy = False
            self.pending = None
        self.socket.close()
        self.socket = None
        assert self.access is not None, "set at the hand-over, before the socket is ours"
        method, path, uri, started = self.access
        events, size = self.sent()
        log_access(200, method, path, uri, self.ip, time.time() - started, f"stream: {events} events, {size} bytes")

    def sent(self) -> tuple[int, int]:
        """The events and bytes this stream was sent so far, keep-alives included."""
        return self.topic.counts(self) if self.topic is not None else (self.events_sent, self.bytes_sent)
