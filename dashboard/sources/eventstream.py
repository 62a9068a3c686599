"""An EventSource in Python: one Server-Sent Events connection to a URL, kept up the
way a browser keeps it (WHATWG HTML, "Server-sent events": "The EventSource
interface" and "Processing model").

What it does, as the spec's EventSource does: parses with the project's spec-exact
decoder (core.sse), sends Last-Event-ID on every reconnect so that nothing is
missed or repeated, takes the upstream's `retry:` as its reconnect delay, follows
redirects (301, 302, 303, 307, 308; at most MAX_REDIRECTS), and reopens a stream
that ends or breaks after a good start. A start that fails (no connection, a
status other than 200, the wrong content type, a compressed stream) raises
SourceError, or its subclass CannotConnect when nothing answered at all: the caller
decides (the `sse` source marks its widget failing and backs off; `run.py tail`
waits and tries again while a server restarts).

Used by the `sse` source (sse.py) and by `run.py tail`.

Deliberate choices:

* A raw HTTP/1.1 connection on asyncio streams, not tornado's AsyncHTTPClient:
  a fetch there cannot be aborted (cancelling the awaiting task leaves the
  socket open until the upstream closes it), and each endless stream would hold
  one of the shared client's ten slots, starving every polled HTTP source.
* No bytes at all for `idle_timeout` (keep-alive comments count) means a
  half-open connection, which TCP alone may not notice for hours: it is closed
  and reopened, like a clean end, not reported as a failure.
* Credentials (Authorization, Cookie) do not follow a redirect to another origin,
  as curl and browsers do: they were given for the origin they were given for.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import ssl
from collections.abc import Awaitable, Callable
from urllib.parse import urljoin, urlsplit

from tornado.httputil import HTTPHeaders, HTTPInputError, parse_response_start_line

from .. import __version__
from ..core.sse import Decoder, Event
from . import SourceError
from .http_json import shown_url

log = logging.getLogger("dashboard.sources")

REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 5
MIN_RETRY = 0.1  # seconds: "retry: 0" from a broken upstream must not spin
HEAD_LIMIT = 65536
PIECE = 65536
MAX_EVENT = 1024 * 1024  # characters of one event, its lines not yet ended included
# Headers set per connection, never by the caller.
MANAGED_HEADERS = ("host", "last-event-id", "connection", "content-length", "transfer-encoding")

OnEvent = Callable[[Event], Awaitable[None]]


class CannotConnect(SourceError):
    """Nothing answered (refused, unreachable, timed out before an answer): a server
    that is restarting looks like this, where a wrong answer does not."""


# --- the HTTP/1.1 response body, however it is framed ---------------------------------------


class _Body:
    """Reads a response body piece by piece: chunked, fixed length, or until close."""

    def __init__(self, reader: asyncio.StreamReader, headers: HTTPHeaders):
        self.reader = reader
        self.chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
        length = headers.get("Content-Length")
        self.left: int | None = None  # bytes left of a fixed-length body or of the current chunk
        if not self.chunked and length is not None:
            if not length.isdigit():
                raise SourceError(f"upstream sent a bad Content-Length: {length!r}")
            self.left = int(length)
        self.ended = False

    async def read(self) -> bytes:
        """The next piece; b"" at the end of the body."""
        if self.ended:
            return b""
        if self.chunked:
            return await self._read_chunk()
        piece = await self.reader.read(PIECE if self.left is None else min(PIECE, self.left))
        if self.left is not None:
            self.left -= len(piece)
            if piece and not self.left:
                self.ended = True
        return piece

    async def _read_chunk(self) -> bytes:
        if not self.left:  # None before the first chunk, 0 after each chunk's data
            if self.left == 0 and await self.reader.readexactly(2) != b"\r\n":
                raise HTTPInputError("a chunk did not end with CRLF")
            size_line = await self.reader.readuntil(b"\r\n")
            try:
                self.left = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise HTTPInputError(f"bad chunk size line {size_line[:40]!r}") from None
            if self.left == 0:
                self.ended = True
                return b""
        piece = await self.reader.read(min(PIECE, self.left))
        if not piece:
            raise asyncio.IncompleteReadError(b"", self.left)
        self.left -= len(piece)
        return piece


# --- the connection ----------------------------------------------------------------------------


class EventStream:
    """One event stream, reopened as an EventSource would: `last_event_id` and
    `retry_delay` (seconds, from the upstream's `retry:`) are kept across connections."""

    def __init__(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        connect_timeout: float = 10.0,
        idle_timeout: float | None = None,
        last_event_id: str = "",
    ):
        self.url = url
        self.headers = dict(headers or {})
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.last_event_id = last_event_id
        self.retry_delay: float | None = None
        self.connected_url: str | None = None  # where the last good start ended up, after redirects

    async def follow(
        self,
        on_event: OnEvent,
        *,
        delay: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_reconnect: Callable[[str, float], None] | None = None,
        while_unreachable: bool = False,
    ) -> None:
        """Forever: open, read until the stream ends, wait the upstream's retry delay (or
        `delay` until it gave one), and open again from the last event id. A failed
        start raises SourceError, unless it is CannotConnect and `while_unreachable`
        says to keep trying (a server restarting), as an EventSource does;
        `on_reconnect(why, seconds)` hears of each wait."""
        while True:
            try:
                why = await self.open(on_event)
            except CannotConnect as exc:
                if not while_unreachable:
                    raise
                why = str(exc)
            wait = self.retry_delay if self.retry_delay is not None else delay
            if on_reconnect is not None:
                on_reconnect(why, wait)
            await sleep(wait)

    async def open(self, on_event: OnEvent) -> str:
        """One stream, redirects followed: each event to `on_event` until the stream
        ends; returns why it ended ("the stream ended", "no data for 60s", "...broke").
        SourceError when it does not start."""
        url, headers = self.url, dict(self.headers)
        for _ in range(MAX_REDIRECTS + 1):
            answer = await self._connect(url, headers, on_event)
            if not answer.startswith("redirect:"):
                return answer
            target = urljoin(url, answer.removeprefix("redirect:"))
            if urlsplit(target).scheme not in ("http", "https"):
                raise SourceError(f"redirected to a URL that is not http(s): {target.split(':', 1)[0]}:...")
            if _origin(target) != _origin(url):
                headers = {k: v for k, v in headers.items() if k.lower() not in ("authorization", "cookie")}
            url = target
        raise SourceError(f"more than {MAX_REDIRECTS} redirects")

    async def _connect(self, url: str, headers: dict[str, str], on_event: OnEvent) -> str:
        """One connection: "redirect:<Location>", or why the stream ended."""
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    host, port, limit=HEAD_LIMIT, ssl=ssl.create_default_context() if parts.scheme == "https" else None
                ),
                self.connect_timeout,
            )
        except TimeoutError:
            raise CannotConnect(f"cannot connect to {host}:{port}: timed out after {self.connect_timeout:g}s") from None
        except OSError as exc:
            raise CannotConnect(f"cannot connect to {host}:{port}: {reason(exc)}") from None
        try:
            writer.write(self._request(parts, headers))
            status, why, response_headers = await self._read_head(reader)
            if status in REDIRECTS and "Location" in response_headers:
                return "redirect:" + response_headers["Location"]
            _check_response(status, why, response_headers, url)
            self.connected_url = url
            return await self._read_events(_Body(reader, response_headers), on_event, url)
        finally:
            writer.close()  # also on cancel: the upstream sees the stream end at once

    def _request(self, parts, headers: dict[str, str]) -> bytes:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [
            f"GET {target} HTTP/1.1",
            f"Host: {parts.netloc.rpartition('@')[2]}",
            "Accept: text/event-stream",
            "Cache-Control: no-cache",
            "Connection: close",
            f"User-Agent: dashboard/{__version__}",
        ]
        if parts.username is not None and not any(k.lower() == "authorization" for k in headers):
            pair = f"{parts.username}:{parts.password or ''}".encode()
            lines.append(f"Authorization: Basic {base64.b64encode(pair).decode()}")
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if self.last_event_id:
            lines.append(f"Last-Event-ID: {self.last_event_id}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")

    async def _read_head(self, reader: asyncio.StreamReader) -> tuple[int, str, HTTPHeaders]:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.connect_timeout)
            start, _, fields = head.decode("latin-1").partition("\r\n")
            first = parse_response_start_line(start)
            return first.code, first.reason, HTTPHeaders.parse(fields)
        except TimeoutError:
            raise CannotConnect(f"no response within {self.connect_timeout:g}s") from None
        except asyncio.LimitOverrunError:
            raise SourceError(f"response headers larger than {HEAD_LIMIT} bytes") from None
        except asyncio.IncompleteReadError:
            raise CannotConnect("the upstream closed the connection before answering") from None
        except OSError as exc:
            raise CannotConnect(f"connection failed before an answer: {reason(exc)}") from None
        except HTTPInputError as exc:
            raise SourceError(f"not an HTTP response: {exc}") from None

    async def _read_events(self, body: _Body, on_event: OnEvent, url: str) -> str:
        # A fresh decoder per connection (a BOM may start each one), but the same
        # last event id, as the spec's EventSource keeps it across reconnects.
        decoder = Decoder()
        decoder.last_event_id = self.last_event_id
        try:
            while piece := await asyncio.wait_for(body.read(), self.idle_timeout):
                for event in decoder.feed(piece):
                    self.last_event_id = event.last_event_id
                    await on_event(event)
                if decoder.pending > MAX_EVENT:
                    # A line or an event without end: no value is that large (and memory
                    # must stay bounded); the widget says so, not a quiet reconnect.
                    raise SourceError(f"an event from {shown_url(url)} is larger than {MAX_EVENT // (1024 * 1024)} MiB")
                if decoder.retry is not None:
                    self.retry_delay = max(decoder.retry / 1000, MIN_RETRY)
        except TimeoutError:
            log.info("no data from %s for %gs: reconnecting", shown_url(url), self.idle_timeout)
            return f"no data for {self.idle_timeout:g}s"
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, HTTPInputError) as exc:
            # Like a browser: a stream that broke after a good start is reopened, not failed.
            log.info("stream from %s broke (%s): reconnecting", shown_url(url), reason(exc))
            return f"the stream broke ({reason(exc)})"
        return "the stream ended"


def _check_response(status: int, why: str, headers: HTTPHeaders, url: str) -> None:
    if status != 200:
        raise SourceError(f"HTTP {status}{' ' + why if why else ''} from {shown_url(url)}")
    content_type = headers.get("Content-Type", "")
    if content_type.split(";", 1)[0].strip().lower() != "text/event-stream":
        raise SourceError(f"expected Content-Type text/event-stream, got {content_type[:60]!r}")
    encoding = headers.get("Content-Encoding", "identity").strip().lower()
    if encoding != "identity":
        raise SourceError(f"upstream compressed the stream ({encoding}); it must not")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def reason(exc: BaseException) -> str:
    """An OS or TLS error in words."""
    if isinstance(exc, ssl.SSLError):  # its errno is OpenSSL's, not the OS's
        return getattr(exc, "verify_message", None) or exc.reason or str(exc)
    if isinstance(exc, OSError) and exc.errno and exc.errno > 0:  # a resolver's errno is negative
        return os.strerror(exc.errno)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
