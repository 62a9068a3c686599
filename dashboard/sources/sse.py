"""An upstream Server-Sent Events stream as a widget's source: another dashboard's
/events/<dashboard>, or any text/event-stream API.

It behaves like a browser's EventSource (WHATWG HTML, "Server-sent events"):
the project's spec-exact decoder, Last-Event-ID sent on every reconnect so that
nothing is missed or repeated, the upstream's `retry:` as the reconnect delay,
and a stream that ends (or breaks) after a good start is simply reopened. Only a
failed start (no connection, a status other than 200, the wrong content type)
is raised as SourceError; the scheduler marks the widget failing and backs off,
starting from the upstream's retry delay when it gave one.

Deliberate choices:

* A raw HTTP/1.1 connection on asyncio streams, not tornado's AsyncHTTPClient:
  a fetch there cannot be aborted (cancelling the awaiting task leaves the
  socket open until the upstream closes it), and each endless stream would hold
  one of the shared client's ten slots, starving every polled HTTP source.
* No bytes at all for `idle_timeout` (keep-alive comments count) means a
  half-open connection, which TCP alone may not notice for hours: it is closed
  and reopened, like a clean end, without marking the widget failing.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import ssl
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urljoin, urlsplit

from tornado.httputil import HTTPHeaders, HTTPInputError, parse_response_start_line

from .. import __version__
from ..core.sse import Decoder, Event
from . import SourceError
from .http_json import JsonPath, read_headers, read_path, read_url, shown_url

log = logging.getLogger("dashboard.sources")

FORMATS = ("json", "text")
CONTROL_EVENTS = ("hello", "reload")  # our own stream's; not values
REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 5
MIN_RETRY = 0.1  # seconds: "retry: 0" from a broken upstream must not spin
HEAD_LIMIT = 65536
PIECE = 65536
# Headers this source sets itself, per connection.
MANAGED_HEADERS = ("host", "last-event-id", "connection", "content-length", "transfer-encoding")


def parse_json(text: str, path: JsonPath) -> Any:
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise SourceError(f"expected JSON, got {shown!r}") from None
    return path.pick(document)


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


# --- the source -------------------------------------------------------------------------------


class SseSource:
    def __init__(
        self,
        url: str,
        *,
        event: str | None,
        format: str,
        path: JsonPath,
        headers: dict[str, str],
        connect_timeout: float,
        idle_timeout: float | None,
        reconnect_delay: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        self.url = url
        self.event = event
        self.format = format
        self.path = path
        self.headers = headers
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.reconnect_delay = reconnect_delay
        self._sleep = sleep
        # Kept across connections, as an EventSource keeps them.
        self.last_event_id = ""
        self.retry_delay: float | None = None  # seconds, from the upstream's "retry:"; read by the scheduler

    async def stream(self, emit: Callable[[Any], Awaitable[None]]) -> None:
        while True:
            await self._follow_redirects(emit)
            await self._sleep(self.retry_delay if self.retry_delay is not None else self.reconnect_delay)

    async def _follow_redirects(self, emit) -> None:
        url, headers = self.url, dict(self.headers)
        for _ in range(MAX_REDIRECTS + 1):
            location = await self._connect(url, headers, emit)
            if location is None:
                return
            target = urljoin(url, location)
            if urlsplit(target).scheme not in ("http", "https"):
                raise SourceError(f"redirected to a URL that is not http(s): {target.split(':', 1)[0]}:...")
            if _origin(target) != _origin(url):
                # As curl and tornado do: credentials are for the origin they were given for.
                headers = {k: v for k, v in headers.items() if k.lower() not in ("authorization", "cookie")}
            url = target
        raise SourceError(f"more than {MAX_REDIRECTS} redirects")

    async def _connect(self, url: str, headers: dict[str, str], emit) -> str | None:
        """One connection: the redirect's Location, or None once the stream has ended."""
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
            raise SourceError(f"cannot connect to {host}:{port}: timed out after {self.connect_timeout:g}s") from None
        except OSError as exc:
            raise SourceError(f"cannot connect to {host}:{port}: {_reason(exc)}") from None
        try:
            writer.write(self._request(parts, headers))
            status, reason, response_headers = await self._read_head(reader)
            if status in REDIRECTS and "Location" in response_headers:
                return response_headers["Location"]
            _check_response(status, reason, response_headers, url)
            await self._read_events(_Body(reader, response_headers), emit)
            return None
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
            raise SourceError(f"no response within {self.connect_timeout:g}s") from None
        except asyncio.LimitOverrunError:
            raise SourceError(f"response headers larger than {HEAD_LIMIT} bytes") from None
        except asyncio.IncompleteReadError:
            raise SourceError("the upstream closed the connection before answering") from None
        except OSError as exc:
            raise SourceError(f"connection failed before an answer: {_reason(exc)}") from None
        except HTTPInputError as exc:
            raise SourceError(f"not an HTTP response: {exc}") from None

    async def _read_events(self, body: _Body, emit) -> None:
        # A fresh decoder per connection (a BOM may start each one), but the same
        # last event id, as the spec's EventSource keeps it across reconnects.
        decoder = Decoder()
        decoder.last_event_id = self.last_event_id
        try:
            while piece := await asyncio.wait_for(body.read(), self.idle_timeout):
                for event in decoder.feed(piece):
                    self.last_event_id = event.last_event_id
                    if self._wanted(event):
                        await emit(self._value(event))
                if decoder.retry is not None:
                    self.retry_delay = max(decoder.retry / 1000, MIN_RETRY)
        except TimeoutError:
            log.info("no data from %s for %gs: reconnecting", shown_url(self.url), self.idle_timeout)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, HTTPInputError) as exc:
            # Like a browser: a stream that broke after a good start is reopened, not failed.
            log.info("stream from %s broke (%s): reconnecting", shown_url(self.url), _reason(exc))

    def _wanted(self, event: Event) -> bool:
        return event.type == self.event if self.event is not None else event.type not in CONTROL_EVENTS

    def _value(self, event: Event) -> Any:
        if self.format == "text":
            return event.data
        try:
            return parse_json(event.data, self.path)
        except SourceError as exc:
            return exc  # one bad event: the widget shows why, and the stream goes on


def _check_response(status: int, reason: str, headers: HTTPHeaders, url: str) -> None:
    if status != 200:
        raise SourceError(f"HTTP {status}{' ' + reason if reason else ''} from {shown_url(url)}")
    content_type = headers.get("Content-Type", "")
    if content_type.split(";", 1)[0].strip().lower() != "text/event-stream":
        raise SourceError(f"expected Content-Type text/event-stream, got {content_type[:60]!r}")
    encoding = headers.get("Content-Encoding", "identity").strip().lower()
    if encoding != "identity":
        raise SourceError(f"upstream compressed the stream ({encoding}); it must not")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):  # its errno is OpenSSL's, not the OS's
        return getattr(exc, "verify_message", None) or exc.reason or str(exc)
    if isinstance(exc, OSError) and exc.errno and exc.errno > 0:  # a resolver's errno is negative
        return os.strerror(exc.errno)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


# --- configuration -----------------------------------------------------------------------------


def _read_headers(options) -> dict[str, str]:
    headers = read_headers(options)
    for name in headers:
        if name.lower() in MANAGED_HEADERS:
            raise options.table("headers").error(name, "this header is set by the source itself")
    return headers


def build(options, widget, config) -> SseSource:
    url = read_url(options, config)
    event = options.str("event", None)
    if event is not None and (not event or any(c in event for c in "\r\n\0")):
        raise options.error("event", "expected an event name (one line, not empty)")
    format = options.str("format", "json", choices=FORMATS)
    path = read_path(options)
    if path.keys and format == "text":
        raise options.error("path", 'a path reads into JSON: use format = "json"')
    headers = _read_headers(options)
    idle = options.duration("idle_timeout", "60s")
    return SseSource(
        url,
        event=event,
        format=format,
        path=path,
        headers=headers,
        connect_timeout=widget.timeout,
        idle_timeout=idle or None,
        reconnect_delay=widget.every,
    )
