"""A number (or any JSON value) picked out of a JSON document fetched over HTTP,
like the exchange-rate ticker reading `rates.EUR` from an API every minute.

Messages name the URL without its query string, user info or header values:
an API key often travels in one of them, and messages end up on the wall
screen and in the journal.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse
from tornado.iostream import UnsatisfiableReadError
from tornado.simple_httpclient import HTTPStreamClosedError

from ..core.views import as_number
from . import SourceError

MAX_BODY = 8 * 1024 * 1024  # of the body, after any gzip is undone
MAX_HEAD = 64 * 1024
PIECE = 64 * 1024  # the most Tornado hands on at once of a body it decompresses
# The request's own timeout is a little shorter than the widget's, so that a slow
# upstream is timed out by Tornado (a SourceError that names the URL) before the
# scheduler cancels the fetch: Tornado's timer would then fire on the cancelled
# fetch and log a traceback each time.
REQUEST_SHARE = 0.9
_INDEX = re.compile(r"0|[1-9][0-9]*")


# --- the URL and headers, shared with http_check ----------------------------------


def shown_url(url: str) -> str:
    """scheme://host:port/path: what a message may show of a URL."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme}://{host}{port}{parts.path or '/'}"


SELF = "self:"  # url = "self:/healthz": this server's own address, wherever it listens


def read_url(options, config) -> str:
    url = options.str("url")
    if url.startswith(SELF):
        if not url[len(SELF) :].startswith("/"):
            raise options.error("url", 'expected a path after "self:", like "self:/healthz"')
        url = config.own_url() + url[len(SELF) :]
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a port that is not a number
    except ValueError:
        raise options.error("url", "expected an http:// or https:// URL, got one that does not parse") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # the rest of the URL may hold a secret: show the scheme only
        shown = f'"{parts.scheme}://..."' if parts.scheme else "no scheme"
        raise options.error("url", f"expected an http:// or https:// URL with a host, got {shown}")
    return url


def read_headers(options) -> dict[str, str]:
    return options.headers("headers")  # checked as every header table is (config/reader.py)


async def fetch_answer(
    client: HttpClient, request: HTTPRequest, url: str, timeout: float
) -> tuple[HTTPResponse, bytes]:
    """The response and its body, whatever its status; SourceError with a reason a person
    can act on (never the query string or a secret) when none came."""
    try:
        return await client.fetch(request)
    except BodyTooLarge as exc:
        raise SourceError(f"response from {shown_url(url)} is too large ({exc})") from None
    except UnsatisfiableReadError:
        raise SourceError(f"response headers from {shown_url(url)} are larger than {MAX_HEAD // 1024} KiB") from None
    except ValueError as exc:
        if "url scheme" not in str(exc):  # Tornado's "Unsupported url scheme", of a redirect only:
            raise  # the URL itself was checked when the config was read
        raise SourceError(f"{shown_url(url)} redirected to a URL that is not http:// or https://") from None
    except (HTTPClientError, OSError) as exc:
        raise SourceError(describe_failure(exc, url, timeout)) from None


def describe_failure(exc: Exception, url: str, timeout: float) -> str:
    """Why a request got no response at all, in words; the URL as shown_url."""
    where = shown_url(url)
    if isinstance(exc, HTTPClientError) and re.search(r"time(out|d out)", str(exc.message), re.I):
        return f"timed out after {timeout:g}s waiting for {where}"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {where}"
    if isinstance(exc, OSError):
        return f"cannot reach {where}: {exc.strerror or exc}"
    if isinstance(exc, HTTPClientError):
        return f"{exc.message or 'request failed'} ({where})"
    return f"{type(exc).__name__}: {exc} ({where})"


class BodyTooLarge(Exception):
    pass


class HttpClient:
    """An AsyncHTTPClient of the source's own, so one slow host cannot hold up other
    widgets in a shared connection queue (Tornado's default allows ten at a time,
    and time spent queued would count as latency). Made on first use: it binds to
    the running event loop."""

    def __init__(self):
        self._client: AsyncHTTPClient | None = None

    async def fetch(self, request: HTTPRequest) -> tuple[HTTPResponse, bytes]:
        """The response and its body; BodyTooLarge past MAX_BODY bytes (counted after gzip).
        Raises what Tornado raises when no response arrived (timeouts, OSError)."""
        if self._client is None:
            # Tornado stops reading at these limits, and stops decompressing a gzip bomb.
            self._client = AsyncHTTPClient(force_instance=True, max_body_size=MAX_BODY, max_header_size=MAX_HEAD)
        body = bytearray()
        announced = 0

        def length(line: str) -> None:
            nonlocal announced
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length" and value.strip().isdigit():
                announced = int(value)

        # Tornado refuses a body over its limit by closing the connection, saying only
        # "Connection closed" (raising in the callback instead would make it log a
        # traceback): a body announced too large, or one that was close to the limit
        # when it was cut, is what that refusal was.
        request.streaming_callback = body.extend
        request.header_callback = length
        try:
            response = await self._client.fetch(request, raise_error=False)
        except HTTPStreamClosedError:
            if announced > MAX_BODY or len(body) + PIECE > MAX_BODY:
                raise BodyTooLarge(f"more than {MAX_BODY // (1024 * 1024)} MiB") from None
            raise
        return response, bytes(body)

    async def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


# --- picking a value out of the document -------------------------------------------


class JsonPath:
    """`rates.EUR`, `items.0.price`, or an RFC 6901 pointer `/rates/EUR`; "" is the whole
    document. Parsed once at build time; shown in messages the way it was written."""

    def __init__(self, text: str):
        self.text = text
        self.pointer = text.startswith("/")
        if not text:
            self.keys: tuple[str, ...] = ()
        elif self.pointer:
            self.keys = tuple(_unescape(token) for token in text[1:].split("/"))
        else:
            self.keys = tuple(text.split("."))
            if "" in self.keys:
                raise ValueError('a dotted path has no empty parts ("rates.EUR", "items.0.price")')

    def shown(self, depth: int) -> str:
        """The path up to and including the key at `depth`."""
        keys = self.keys[: depth + 1]
        if self.pointer:
            return "/" + "/".join(k.replace("~", "~0").replace("/", "~1") for k in keys)
        return ".".join(keys)

    def pick(self, document: Any) -> Any:
        value = document
        for depth, key in enumerate(self.keys):
            value = self._step(value, key, depth)
        return value

    def _step(self, value: Any, key: str, depth: int) -> Any:
        at = self.shown(depth)
        if isinstance(value, dict):
            if key not in value:
                raise SourceError(f"no key {json.dumps(key)} at {at}")
            return value[key]
        if isinstance(value, list):
            if not _INDEX.fullmatch(key):
                raise SourceError(f"expected a list index at {at}, got {json.dumps(key)}")
            if int(key) >= len(value):
                raise SourceError(f"list index {key} out of range at {at} (length {len(value)})")
            return value[int(key)]
        parent = self.shown(depth - 1) if depth else "the top"
        raise SourceError(
            f"cannot read {json.dumps(key)} at {at}: {parent} is {json_kind(value)}, not an object or a list"
        )


def _unescape(token: str) -> str:
    if re.search(r"~(?![01])", token):
        raise ValueError('in a JSON pointer "~" is written "~0" and "/" is written "~1"')
    return token.replace("~1", "/").replace("~0", "~")


def json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


# --- the source ----------------------------------------------------------------------


class HttpJson:
    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        body: bytes | None,
        path: JsonPath,
        scale: float | None,
        offset: float | None,
        timeout: float,
    ):
        self.url = url
        self.headers = {"Accept": "application/json", **headers}
        self.body = body
        self.path = path
        self.scale = scale
        self.offset = offset
        self.timeout = timeout
        self.client = HttpClient()

    async def fetch(self) -> Any:
        document = self._decode(await self._get())
        value = self.path.pick(document)
        if self.scale is None and self.offset is None:
            return value
        number = as_number(value)  # "0.25" too: Prometheus's API, for one, sends numbers as strings
        if number is None:
            raise SourceError(f"expected a number at {self.path.text or 'the top'} to scale, got {json_kind(value)}")
        return number * (1 if self.scale is None else self.scale) + (self.offset or 0)

    async def _get(self) -> bytes:
        headers = dict(self.headers)
        if self.body is not None:
            headers.setdefault("Content-Type", "application/json")
        request = HTTPRequest(
            self.url,
            method="GET" if self.body is None else "POST",
            headers=headers,
            body=self.body,
            connect_timeout=self.timeout * REQUEST_SHARE,
            request_timeout=self.timeout * REQUEST_SHARE,
        )
        response, body = await fetch_answer(self.client, request, self.url, self.timeout)
        if not 200 <= response.code < 300:
            raise SourceError(f"HTTP {response.code} from {shown_url(self.url)}")
        return body

    def _decode(self, body: bytes) -> Any:
        try:
            return json.loads(body)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            raise SourceError(f"invalid JSON from {shown_url(self.url)}: {reason}") from None

    async def close(self) -> None:
        await self.client.close()


def _read_body(options) -> bytes | None:
    body = options.raw("body", None)
    if body is None:
        return None
    try:
        return json.dumps(body, allow_nan=False).encode()
    except (TypeError, ValueError):  # a TOML date, or nan/inf
        raise options.error("body", "expected a value JSON can carry (no dates, nan or inf)") from None


def read_path(options) -> JsonPath:
    """The `path` option as a JsonPath (every JSON-reading source takes the same form)."""
    text = options.str("path", "")
    try:
        return JsonPath(text)
    except ValueError as exc:
        raise options.error("path", f"{exc}, got {json.dumps(text)}") from None


def build(options, widget, config) -> HttpJson:
    return HttpJson(
        url=read_url(options, config),
        headers=read_headers(options),
        body=_read_body(options),
        path=read_path(options),
        scale=options.number("scale", None),
        offset=options.number("offset", None),
        timeout=widget.timeout,
    )
