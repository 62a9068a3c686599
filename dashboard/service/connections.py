"""The listening side: Tornado's HTTPServer with limits on what a connection may
cost before its request has arrived, and an accept loop that survives running
out of file descriptors.

- A request's head must arrive within [server] header_timeout (which is also how
  long an idle keep-alive connection waits for its next request), its body within
  body_timeout. One sweep enforces both for every connection (see below).
- At most [server] max_incomplete_requests connections may be waiting for (the
  rest of) a request, and never more than half the process's descriptor limit
  (RLIMIT_NOFILE): the other half stays for open streams, the database and the
  sources. Past it a new connection closes the one that has waited longest.
  Open event streams are not requests: they leave the count once their request
  is read, and none of these limits applies to them.
- A request head over [server] max_header is answered 431 (Tornado's IOStream
  closes such a connection without a word: its read_until_regex(max_bytes=...)
  raises UnsatisfiableReadError and closes the stream; RequestStream answers first).
- A body announced over [server] max_body is answered 413 from the head, the body
  unread (Tornado would answer a bare 400 and reset the connection while the body
  still comes); the push routes keep their own limit and answer it themselves. A
  request whose framing Tornado cannot read gets, instead of its bare
  "400 Bad Request", the same whole and in JSON (RequestStream.write); those are
  counted in the log, not logged one by one with what the client sent.
- accept() failing with EMFILE/ENFILE: Tornado's accept handler lets the error
  out, the listening socket stays readable, and the loop spins at 100% CPU writing
  a traceback per turn, while every connection in the backlog waits for ever. Here
  one descriptor is kept in reserve: it is freed to accept the waiting connection,
  the oldest unfinished request is closed to make room for it (or, with none, the
  new connection is closed), and the reserve is taken again. So the server keeps
  serving what is open, a probe of /healthz still gets in, and the log gets one
  line per interval with counts.

Deliberate oddities, please read before "fixing":
- The time limits are not Tornado's (idle_connection_timeout, body_timeout),
  which wrap every request's head and body in a timer of their own: two timers,
  a task and a dozen callbacks per request, measured at about a tenth of a
  push's CPU (bench/README.md). Here the connections waiting for a request are
  kept oldest first anyway (for max_incomplete_requests), so one timer sweeps
  them a few times per limit and stops at the first that has not waited long
  enough to be over any. A limit is thus kept to within a quarter of itself (at
  most SWEEP_MAX later), never early.
- The limits' closings are logged as counts, once per LOG_EVERY seconds, and
  Tornado's own per-connection lines for them are filtered out (QuietTimeouts): a
  few hundred stalled clients must not become a few hundred log lines each time.
- The server speaks plain HTTP (TLS ends at a proxy): connections are wrapped in
  RequestStream directly, as TCPServer would wrap them in an IOStream.
"""

from __future__ import annotations

import collections
import dataclasses
import errno
import json
import logging
import os
import resource
import socket
import sys
from collections.abc import Callable, Iterable
from typing import Any, Literal

import tornado.httpserver
import tornado.httputil
from tornado.ioloop import IOLoop
from tornado.iostream import IOStream, UnsatisfiableReadError
from tornado.log import app_log

from ..web.push import declared_length

log = logging.getLogger("dashboard.connections")

ACCEPT_BATCH = 128  # connections taken per wake-up (Tornado's figure), so that other work gets a turn
ACCEPT_PAUSE = 0.5  # seconds the accept loop rests when not even the reserve descriptor can be had
SWEEPS_PER_LIMIT = 4  # the time limits are checked this often within the shorter of them ...
SWEEP_MAX = 1.0  # ... and at least once a second
LOG_EVERY = 10.0  # seconds between two lines about the same kind of trouble
NO_DESCRIPTOR = (errno.EMFILE, errno.ENFILE)


@dataclasses.dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float  # seconds for a request's head (and an idle keep-alive connection)
    body_timeout: float  # seconds for a request's body
    max_incomplete: int  # connections waiting for (the rest of) a request, at most
    max_header: int  # bytes of a request head

    @classmethod
    def of(cls, server) -> ConnectionLimits:
        """The limits of a [server] config (ServerConfig)."""
        return cls(server.header_timeout, server.body_timeout, server.max_incomplete_requests, server.max_header)


class Tally:
    """Events counted and logged at most once per `every` seconds: the first at once,
    then what happened during each interval, in one line."""

    def __init__(self, level: int, subject: Callable[[], str], every: float = LOG_EVERY):
        self.level = level
        self.subject = subject  # what the line is about, e.g. "file descriptors exhausted (limit 256)"
        self.every = every
        self.counts: collections.Counter[str] = collections.Counter()
        self.total = 0
        self._timer: object | None = None
        self._closed = False

    def note(self, what: str) -> None:
        self.counts[what] += 1
        self.total += 1
        if self._timer is None and not self._closed:
            self._flush("")
            self._timer = IOLoop.current().call_later(self.every, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self.counts and not self._closed:
            self._flush(f" in the last {self.every:g}s")
            self._timer = IOLoop.current().call_later(self.every, self._tick)

    def _flush(self, period: str) -> None:
        parts = ", ".join(f"{what} ({count}x)" for what, count in self.counts.items())
        log.log(self.level, "%s: %s%s", self.subject(), parts, period)
        self.counts.clear()

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            IOLoop.current().remove_timeout(self._timer)
            self._timer = None


class QuietTimeouts(logging.Filter):
    """Drops Tornado's line per connection for what the Tally here counts."""

    MESSAGES = ("Unsatisfiable read, closing connection", "Malformed HTTP message from")

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith(self.MESSAGES))


QUIET_TIMEOUTS = QuietTimeouts()  # one instance: addFilter() adds it once however many servers start


def _error_of(exc_info: Any) -> BaseException | None:
    if exc_info is True:
        return sys.exc_info()[1]
    if isinstance(exc_info, tuple):
        return exc_info[1]
    return exc_info if isinstance(exc_info, BaseException) else None


class RequestStream(IOStream):
    """An accepted connection, which answers a request head over the limit with 431
    before it closes (see the module docstring)."""

    def __init__(self, connection: socket.socket, server: GuardedHTTPServer, **kwargs: Any):
        super().__init__(connection, **kwargs)
        self.server = server
        self.reading_head = True  # set by GuardedHTTPServer as each request starts and its head arrives
        self.unreadable: str | None = None  # why Tornado could not make a request of a head it read

    def close(self, exc_info: Any = False) -> None:
        if self.reading_head and not self.closed() and isinstance(_error_of(exc_info), UnsatisfiableReadError):
            self._refuse_head()
        super().close(exc_info)

    def _malformed(self) -> str:
        if self.reading_head:
            return MALFORMED_HEAD
        if self.unreadable is None:
            return MALFORMED_BODY
        if self.unreadable.startswith("Invalid query string"):
            limit = tornado.httputil.ParseUrlEncodedConfig().max_arguments  # Tornado's default, kept here
            return f"malformed request: expected a query of at most {limit} parameters"
        return f"malformed request: {self.unreadable}"

    def _refuse_head(self) -> None:
        limit = self.server.limits.max_header
        refuse(self.socket, 431, f"request head too large: at most {limit} bytes ([server] max_header)")
        self.server.closings.note(f"heads over max_header answered 431 ({limit} bytes)")

    def write(self, data: bytes | memoryview) -> Any:
        if data == TORNADO_400 and self in self.server.waiting:
            # Tornado could not read the request (its head, or its framing: Content-Length,
            # Transfer-Encoding, a chunk) and says only this before it closes: the same in
            # full, as JSON, naming the part it could not read.
            self.server.closings.note("requests that could not be read answered 400")
            data = answer(400, self._malformed())
        return super().write(data)


# What Tornado writes, and nothing else, when it cannot read a request (HTTP1Connection).
TORNADO_400 = b"HTTP/1.1 400 Bad Request\r\n\r\n"
MALFORMED_HEAD = "malformed request: expected a request line (method, target, HTTP/1.x) and header lines of name: value"
MALFORMED_BODY = (
    "malformed request: expected one Content-Length of digits or Transfer-Encoding: chunked, "
    "and a body that keeps to it"
)
_PHRASES = {400: "Bad Request", 413: "Content Too Large", 431: "Request Header Fields Too Large"}


def answer(status: int, message: str) -> bytes:
    """A whole answer to a request the application never saw: JSON, with the headers every
    answer has, and the connection closed after it."""
    body = json.dumps({"error": message})
    return (
        f"HTTP/1.1 {status} {_PHRASES[status]}\r\n"
        "Content-Type: application/json; charset=utf-8\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        "Content-Security-Policy: default-src 'none'; frame-ancestors 'none'\r\n"
        "Referrer-Policy: no-referrer\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}"
    ).encode("ascii")


def refuse(sock: socket.socket, status: int, message: str) -> None:
    """Send answer() straight to the socket, before it is closed."""
    try:
        sock.send(answer(status, message))  # a few hundred bytes into an empty send buffer: no wait
        sock.shutdown(socket.SHUT_WR)
        # Closing with unread bytes makes the kernel send a reset, which may reach the
        # client before it read the answer: read what already arrived first.
        for _ in range(16):
            if not sock.recv(65536):
                break
    except OSError:
        pass  # gone already, or nothing more to read now


@dataclasses.dataclass(eq=False)
class _Waiting:
    """A connection waiting for (the rest of) a request."""

    since: float  # when its head (or its body) began to be waited for, IOLoop time
    first: bool  # its first request (not an idle keep-alive connection)
    body: bool = False  # its head arrived, its body has not


class _Watched(tornado.httputil.HTTPMessageDelegate):
    """The application's delegate for one request, telling the server when the request's
    head and then all of it have arrived."""

    def __init__(
        self,
        delegate: tornado.httputil.HTTPMessageDelegate,
        server: GuardedHTTPServer,
        stream: IOStream,
        request_conn: tornado.httputil.HTTPConnection,
    ):
        self.delegate = delegate
        self.server = server
        self.stream = stream
        self.request_conn = request_conn

    def headers_received(self, start_line: Any, headers: tornado.httputil.HTTPHeaders) -> Any:
        self.server._head_arrived(self.stream)
        limit = self.server.conn_params.max_body_size
        path = getattr(start_line, "path", "").partition("?")[0]
        if limit is not None and declared_length(headers) > limit and not self.server.own_body_limit(path):
            # Tornado would answer a bare 400 and reset the connection while the body still
            # comes: answered 413 from the head instead, and the body never read. (Pushes
            # keep a limit of their own and answer this themselves, after the token.)
            stream = self.request_conn.detach()  # type: ignore[attr-defined]
            refuse(stream.socket, 413, f"body too large: at most {limit} bytes ([server] max_body)")
            stream.close()
            self.server.closings.note(f"bodies over max_body answered 413 ({limit} bytes)")
            return None
        try:
            return self.delegate.headers_received(start_line, headers)
        except tornado.httputil.HTTPInputError as exc:
            # Tornado read the head, and then could not make a request of it: its query has
            # more parameters than Tornado takes, say. Tornado answers its bare 400 next.
            if isinstance(self.stream, RequestStream):
                self.stream.unreadable = str(exc)
            raise

    def data_received(self, chunk: bytes) -> Any:
        return self.delegate.data_received(chunk)

    def finish(self) -> None:
        self.server._request_arrived(self.stream)
        self.delegate.finish()

    def on_connection_close(self) -> None:
        self.delegate.on_connection_close()


def _open_reserve() -> int | None:
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def descriptor_limit() -> int | None:
    """The process's limit of open file descriptors (RLIMIT_NOFILE); None: unlimited."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY or soft <= 0 else soft


class GuardedHTTPServer(tornado.httpserver.HTTPServer):
    """HTTPServer(app, limits=ConnectionLimits(...), **HTTPServer's own options)."""

    def initialize(  # type: ignore[override]
        self,
        request_callback: Any,
        *,
        limits: ConnectionLimits,
        own_body_limit: Callable[[str], bool] = lambda path: False,
        **kwargs: Any,
    ) -> None:
        """`own_body_limit(path)`: whether the handler of a path sets its own request's
        body limit (and answers a body over it), instead of max_body_size."""
        super().initialize(request_callback, max_header_size=limits.max_header, **kwargs)
        self.own_body_limit = own_body_limit
        assert self.ssl_options is None, "TLS ends at a proxy: connections are plain RequestStreams"
        self.apply(limits)
        # Oldest first: an entry moves to the end whenever its wait starts anew (the head arrived).
        self.waiting: collections.OrderedDict[IOStream, _Waiting] = collections.OrderedDict()
        self._sweeper: object | None = None
        self.clock: Callable[[], float] = IOLoop.current().time  # tests drive it forward
        self._reserve = _open_reserve()
        self.closings = Tally(logging.INFO, lambda: "connections closed before their request arrived")
        self.pressure = Tally(
            logging.WARNING, lambda: f"file descriptors exhausted (limit {descriptor_limit()}; raise LimitNOFILE)"
        )
        logging.getLogger("tornado.general").addFilter(QUIET_TIMEOUTS)

    def apply(self, limits: ConnectionLimits, max_body: int | None = None) -> None:
        """These limits from the next request on (a config reload); connections share
        conn_params, which each request reads as it starts."""
        self.limits = limits
        # Tornado's own timers off (its default would be an hour): the sweep keeps the limits.
        self.conn_params.header_timeout = None
        self.conn_params.body_timeout = None
        self.conn_params.max_header_size = limits.max_header
        if max_body is not None:
            self.conn_params.max_body_size = max_body
        descriptors = descriptor_limit()
        self.max_waiting = (
            limits.max_incomplete if descriptors is None else max(1, min(limits.max_incomplete, descriptors // 2))
        )

    # -- accepting ---------------------------------------------------------------------------

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        sockets = list(sockets)
        super().add_sockets(sockets)  # Tornado's bookkeeping: stop() unregisters and closes them
        loop = IOLoop.current()
        for sock in sockets:
            loop.remove_handler(sock)  # Tornado's accept loop (see the module docstring) ...
            loop.add_handler(sock, self._accept, IOLoop.READ)  # ... and ours in its place

    def _accept(self, sock: socket.socket, _events: int) -> None:
        for _ in range(ACCEPT_BATCH):
            if sock.fileno() == -1:
                return  # stopped
            try:
                connection, address = sock.accept()
            except BlockingIOError:
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno not in NO_DESCRIPTOR:
                    self.pressure.note(f"accept() failed: {exc.strerror or exc}; pausing")
                    self._pause(sock)
                    return
                taken = self._accept_with_reserve(sock)
                if taken is None:
                    return
                if taken is False:
                    continue
                connection, address = taken
            self._serve(connection, address)

    def _accept_with_reserve(self, sock: socket.socket) -> tuple[socket.socket, Any] | Literal[False] | None:
        """Out of descriptors: the connection waiting to be accepted, taken with the reserve
        descriptor and given room by closing the oldest unfinished request; False when it
        had to be closed for want of one; None when there is nothing more to accept now."""
        if self._reserve is None:
            self._reserve = _open_reserve()  # one may have been freed since
            if self._reserve is None:
                self.pressure.note("no descriptor in reserve: accepting paused")
                self._pause(sock)
                return None
        os.close(self._reserve)
        self._reserve = None
        try:
            connection, address = sock.accept()
        except OSError:
            connection = None
        outcome: tuple[socket.socket, Any] | Literal[False] | None = None
        if connection is not None:
            if self._close_oldest_waiting():
                self.pressure.note("closed the oldest unfinished request to take a new connection")
                outcome = (connection, address)
            else:
                connection.close()
                self.pressure.note("closed a new connection: no unfinished request to make room")
                outcome = False
        self._reserve = _open_reserve()
        return outcome

    def _pause(self, sock: socket.socket) -> None:
        loop = IOLoop.current()
        loop.remove_handler(sock)

        def resume() -> None:
            if sock.fileno() != -1:  # not stopped meanwhile
                loop.add_handler(sock, self._accept, IOLoop.READ)

        loop.call_later(ACCEPT_PAUSE, resume)

    def _serve(self, connection: socket.socket, address: Any) -> None:
        try:
            stream = RequestStream(
                connection, self, max_buffer_size=self.max_buffer_size, read_chunk_size=self.read_chunk_size
            )
            self.handle_stream(stream, address)
        except Exception:
            app_log.error("Error in connection callback", exc_info=True)

    # -- connections waiting for a request -----------------------------------------------------

    def handle_stream(self, stream: IOStream, address: tuple) -> None:
        self._wait(stream, first=True)
        super().handle_stream(stream, address)

    def _wait(self, stream: IOStream, first: bool) -> None:
        self.waiting[stream] = _Waiting(self.clock(), first)
        self._within_bound()
        if self._sweeper is None:
            self._sweeper = IOLoop.current().call_later(self._sweep_every(), self._sweep)

    def start_request(
        self, server_conn: object, request_conn: tornado.httputil.HTTPConnection
    ) -> tornado.httputil.HTTPMessageDelegate:
        stream = server_conn.stream  # type: ignore[attr-defined]
        if stream not in self.waiting and not stream.closed():  # the next request on a keep-alive connection
            self._wait(stream, first=False)
        if isinstance(stream, RequestStream):
            stream.reading_head = True
        return _Watched(super().start_request(server_conn, request_conn), self, stream, request_conn)

    def _head_arrived(self, stream: IOStream) -> None:
        if isinstance(stream, RequestStream):
            stream.reading_head = False
        waiting = self.waiting.get(stream)
        if waiting is not None:
            waiting.body = True
            waiting.since = self.clock()
            self.waiting.move_to_end(stream)  # oldest first still

    def _request_arrived(self, stream: IOStream) -> None:
        self.waiting.pop(stream, None)

    def on_close(self, server_conn: object) -> None:
        super().on_close(server_conn)
        waiting = self.waiting.pop(server_conn.stream, None)  # type: ignore[attr-defined]
        if waiting is None:
            return
        waited = self.clock() - waiting.since
        # Closed while waiting: by a time limit (the sweep), or the client left (not counted).
        if waiting.body and waited >= self.limits.body_timeout:
            self.closings.note(f"bodies not sent within body_timeout ({self.limits.body_timeout:g}s)")
        elif not waiting.body and waiting.first and waited >= self.limits.header_timeout:
            self.closings.note(f"heads not sent within header_timeout ({self.limits.header_timeout:g}s)")

    def _sweep_every(self) -> float:
        limits = self.limits
        return min(SWEEP_MAX, min(limits.header_timeout, limits.body_timeout) / SWEEPS_PER_LIMIT)

    def _sweep(self) -> None:
        """Close the connections that have waited longer than their limit for their head
        (or their next request) or their body; Tornado winds each down as if its own timer
        had fired, and on_close counts it."""
        self._sweeper = None
        now = self.clock()
        header, body = self.limits.header_timeout, self.limits.body_timeout
        shortest = min(header, body)
        over = []
        for stream, waiting in self.waiting.items():
            waited = now - waiting.since
            if waited < shortest:
                break  # every later one began waiting later still
            if waited >= (body if waiting.body else header):
                over.append(stream)
        for stream in over:
            stream.close()
        if self.waiting:
            self._sweeper = IOLoop.current().call_later(self._sweep_every(), self._sweep)

    def _within_bound(self) -> None:
        while len(self.waiting) > self.max_waiting and self._close_oldest_waiting():
            self.closings.note(f"closed to stay within max_incomplete_requests ({self.max_waiting})")

    def _close_oldest_waiting(self) -> bool:
        if not self.waiting:
            return False
        stream, _ = self.waiting.popitem(last=False)
        stream.close()  # its descriptor is free at once; Tornado winds the connection down later
        return True

    def stop(self) -> None:
        super().stop()
        if self._sweeper is not None:
            IOLoop.current().remove_timeout(self._sweeper)
            self._sweeper = None
        self.closings.close()
        self.pressure.close()
        if self._reserve is not None:
            os.close(self._reserve)
            self._reserve = None
