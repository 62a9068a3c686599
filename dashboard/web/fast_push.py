"""One push answered below Tornado's RequestHandler, when it is plain and succeeds.

A single push is the busiest request there is (a fleet of scripts, a site of
sensors), and most of its cost was the RequestHandler around it: a handler
object per request, a coroutine run as a task, a future for the body, headers
set one by one, the transforms, the log hook. A bare Tornado handler costs
about 70 us of the event loop's CPU per request more than a message delegate
that answers the same request (bench/README.md); so a push that is plain (its
head holds what every script sends, no more) and passes every check is
answered here, straight through the connection, with the same bytes the
handler would send.

Deliberate oddities, please read before "fixing":
- This path only ever answers 200. A request it does not take (a query, no
  Content-Length, a body over the limit, another content type) goes to
  WidgetPushHandler as soon as its head is read; one that fails any check, or
  whose write fails, is handed to WidgetPushHandler whole, head and body, which
  answers it exactly as it answers everything. So every error message, and the
  order of the checks, live in push.py alone: this module decides only "all is
  well".
- The token's rate is taken last, after the checks that cost nothing: a push
  handed over then takes it once, in the handler (one that failed its rate here
  is handed over and usually fails it again there, or goes through if a token
  came back in between: either answer is right). A push whose write fails gives
  its token back before it is handed over.
- The answer's headers are those of the handler's answer, in its order, built
  once per config (tests compare the two paths byte for byte).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any, Protocol

import tornado
import tornado.httputil
import tornado.web
from tornado.http1connection import HTTP1Connection
from tornado.log import app_log

from .base import _JSON_ANSWER, client_ip, log_access
from .push import (
    CHUNKED_SLACK,
    SINGLE_KEYS,
    declared_length,
    json_object,
    log,
    push_token_name,
    pushed_json,
    require_json,
    single_push,
)
from .ratelimit import RateLimiter
from .runtime import Runtime
from .security import set_page_headers

# The push route's path, with a widget id as widgets are named: an id that needs
# percent-decoding (or cannot be a widget's) goes the handler's way, to its 404.
SINGLE_PUSH_PATH = re.compile(r"/api/widgets/([A-Za-z0-9_-]+)")
_OK = tornado.httputil.ResponseStartLine("HTTP/1.1", 200, "OK")


class _Headers:
    """What set_page_headers writes to, for an answer without a handler."""

    def __init__(self) -> None:
        self.pairs: dict[str, str] = {}

    def set_header(self, name: str, value: str) -> None:
        self.pairs[name] = value

    def clear_header(self, name: str) -> None:
        self.pairs.pop(name, None)


class AnswerHeaders:
    """The headers of a push's answer, as RequestHandler.clear(), BaseHandler's default
    headers and write_json() leave them: made once per set of frame ancestors, the
    date once per second."""

    def __init__(self) -> None:
        self._fixed: dict[tuple[str, ...], list[tuple[str, str]]] = {}
        self._date_second = -1
        self._date = ""

    def __call__(self, frame_ancestors: tuple[str, ...], length: int) -> tornado.httputil.HTTPHeaders:
        fixed = self._fixed.get(frame_ancestors)
        if fixed is None:
            fixed = self._fixed[frame_ancestors] = self._build(frame_ancestors)
        now = int(time.time())
        if now != self._date_second:
            self._date_second, self._date = now, tornado.httputil.format_timestamp(now)
        headers = tornado.httputil.HTTPHeaders()
        for name, value in fixed:
            headers[name] = self._date if name == "Date" else value
        headers["Content-Length"] = str(length)
        return headers

    @staticmethod
    def _build(frame_ancestors: tuple[str, ...]) -> list[tuple[str, str]]:
        page = _Headers()
        set_page_headers(page, frame_ancestors)
        return [
            ("Server", f"TornadoServer/{tornado.version}"),
            ("Content-Type", "application/json; charset=utf-8"),
            ("Date", ""),
            *page.pairs.items(),
        ]


class FastPushes(Protocol):
    """What the application holds for this path (web/app.py DashboardApplication)."""

    runtime: Runtime
    push_limiter: RateLimiter  # the push handlers' own: one rate per token whichever path
    answer_headers: AnswerHeaders
    fast_pushes: int  # answered here, for tests


class FastPush(tornado.httputil.HTTPMessageDelegate):
    """POST /api/widgets/<id>: stored and answered here when plain and well (see the
    module docstring), else handed to `handler()`, the route's own delegate."""

    def __init__(
        self,
        app: FastPushes,
        request: tornado.httputil.HTTPServerRequest,
        widget_id: str,
        handler: Callable[[], tornado.httputil.HTTPMessageDelegate],
    ):
        self.app = app
        self.runtime = app.runtime
        self.request = request
        self.widget_id = widget_id
        self.handler = handler  # the route's own delegate (a RequestHandler's), made on demand
        self.fallback: tornado.httputil.HTTPMessageDelegate | None = None
        self.start_line: Any = None
        self.body = bytearray()
        self.caller = ""
        self.frame_ancestors: tuple[str, ...] = ()
        self._replaying: asyncio.Future[None] | None = None

    # -- the delegate ------------------------------------------------------------------------

    def headers_received(self, start_line: Any, headers: tornado.httputil.HTTPHeaders) -> Any:
        self.start_line = start_line
        if not self._plain(headers):
            self.fallback = self.handler()
            return self.fallback.headers_received(start_line, headers)
        # The handler sets its page headers as it is made, from the head's config (a reload
        # may come before the answer).
        self.frame_ancestors = self.runtime.config.server.frame_ancestors
        # [server] max_body is for every other request; a push has a limit of its own.
        connection = self.request.connection
        assert isinstance(connection, HTTP1Connection)  # the server speaks HTTP/1.x only
        connection.set_max_body_size(self.runtime.config.api.max_body + CHUNKED_SLACK)
        return None

    def data_received(self, chunk: bytes) -> Any:
        if self.fallback is not None:
            return self.fallback.data_received(chunk)
        self.body += chunk  # in pieces of up to 64 KiB, as Tornado reads them
        return None

    def finish(self) -> None:
        if self.fallback is not None:
            self.fallback.finish()
            return
        push = self._checked()
        if push is None:
            self._hand_over()
            return
        stored = self.runtime.recorder.submit([(push.widget.id, push.value, push.status, push.message)])
        stored.add_done_callback(self._stored)

    def on_connection_close(self) -> None:
        # Before the answer: a push queued is written all the same, as in the handler.
        if self.fallback is not None:
            self.fallback.on_connection_close()

    # -- the checks --------------------------------------------------------------------------

    def _plain(self, headers: tornado.httputil.HTTPHeaders) -> bool:
        """A head that every script's push has, and nothing that needs the handler."""
        api = self.runtime.config.api
        if not api.tokens or self.request.query or "Authorization" not in headers:
            return False
        if "Transfer-Encoding" in headers or "Content-Length" not in headers:
            return False
        try:
            require_json(headers)
        except tornado.web.HTTPError:
            return False
        return declared_length(headers) <= api.max_body

    def _checked(self) -> Any:
        """The push, when everything the handler checks passes; None otherwise."""
        config = self.runtime.config
        api = config.api
        try:
            name = push_token_name(api.tokens, self.request)
            if len(self.body) > api.max_body:
                return None
            push = single_push(json_object(self.body, SINGLE_KEYS, ""), self.widget_id, config.widgets)
        except tornado.web.HTTPError:
            return None
        if push.keeps_last or self.app.push_limiter.take(name, api.rate, api.burst):
            return None
        self.caller = name
        return push

    # -- the answer --------------------------------------------------------------------------

    def _stored(self, stored: asyncio.Future[Any]) -> None:
        if stored.cancelled() or stored.exception() is not None:
            # Nothing was stored: the handler tries again and answers, and takes the rate
            # (once per push, as on the handler path).
            self.app.push_limiter.give_back(self.caller)
            self._hand_over()
            return
        (sample,) = stored.result()
        log.debug("widget %s pushed by token %s: event %d", sample.widget, self.caller, sample.id)
        body = _JSON_ANSWER.encode(pushed_json(sample)).encode("ascii")
        config = self.runtime.config
        headers = self.app.answer_headers(self.frame_ancestors, len(body))
        connection = self.request.connection
        assert connection is not None
        connection.write_headers(_OK, headers, body)
        connection.finish()
        request = self.request
        log_access(
            200,
            "POST",
            request.path,
            request.uri or "",
            client_ip(request, config.server.trusted_proxies),
            request.request_time(),
        )
        if self.runtime.metrics is not None:
            self.runtime.metrics.push_answered(200)
        self.app.fast_pushes += 1

    def _hand_over(self) -> None:
        """The whole request to the route's handler, which answers it."""
        self._replaying = asyncio.ensure_future(self._replay())  # held here until it is done

    async def _replay(self) -> None:
        delegate = self.fallback = self.handler()
        connection = self.request.connection
        assert isinstance(connection, HTTP1Connection)
        closed = False

        def held() -> None:
            nonlocal closed
            closed = True

        try:
            prepared = delegate.headers_received(self.start_line, self.request.headers)
            # The handler, made there, asked to hear when the connection closes: it does not
            # before it has the whole body, read before any close (as on the handler path,
            # where a close would otherwise fail the body's future and lose the push).
            connection.set_close_callback(held)
            if prepared is not None:
                await prepared
            if self.body:
                received = delegate.data_received(bytes(self.body))
                if received is not None:
                    await received
            delegate.finish()
            if closed:
                delegate.on_connection_close()
            else:
                connection.set_close_callback(delegate.on_connection_close)
        except Exception:
            app_log.exception("a push could not be handed to its handler")
            connection = self.request.connection
            if connection is not None and connection.stream is not None:  # type: ignore[attr-defined]
                connection.stream.close()  # type: ignore[attr-defined]
