"""POST /api/widgets/<id> and POST /api/widgets: scripts push values, with a bearer token.

The checks run in a fixed order, so that an answer never tells more than the
caller may know: the token first (a stranger learns nothing about which widgets
exist), then the token's rate ([api] rate and burst: 429 with Retry-After), then
the form of the request (415, 413, 400), then the widget (404, 409), then the
value (400).

Deliberate oddities, please read before "fixing":
- The handlers stream the request body (`stream_request_body`) only to count
  it: a body declared larger than `[api] max_body` is refused from its headers,
  before it is read, and a chunked one is dropped past the limit, so memory per
  request stays bounded whatever the client sends.
- Tokens are accepted in the Authorization header only. A token in the URL
  would land in the access log (and in proxies' logs); a request that tries it
  is told where the token goes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Mapping
from typing import Any

import tornado.httputil
import tornado.web
from tornado.http1connection import HTTP1Connection

from ..config.model import WidgetConfig as Widget
from ..core.auth import match_token
from ..core.samples import ERROR, OK, Sample, format_ts
from ..core.values import clean_message
from ..core.views import ValueRejected, accept
from .api import ApiHandler, WidgetHandler, WidgetsHandler
from .base import bearer_token
from .ratelimit import RateLimiter, retry_after

log = logging.getLogger("dashboard.push")

HOW_TO_ENABLE = 'the push API is off: add [api] tokens = { name = "${DASHBOARD_TOKEN}" } to config.toml'
STATUSES = (OK, ERROR)
SINGLE_KEYS = ("value", "status", "message")
BATCH_KEYS = ("values",)
_SHOWN = 40  # names from a request body are cut to this many characters in messages
# A chunked body past [api] max_body is read on and dropped so that the answer can be a
# JSON 413; this much further, Tornado cuts the connection instead.
CHUNKED_SLACK = 1024**2


def pushed_json(sample: Sample) -> dict[str, Any]:
    """The answer to one push: its event id, its widget, its time."""
    return {"id": sample.id, "widget": sample.widget, "ts": format_ts(sample.ts)}


def is_json_content_type(header: str) -> bool:
    """application/json, with at most a UTF-8 charset: JSON has no other encoding (RFC 8259)."""
    media_type, *params = (part.strip().lower() for part in header.split(";"))
    if media_type != "application/json":
        return False
    for param in params:
        name, _, value = param.partition("=")
        if name.strip() == "charset" and value.strip().strip('"') not in ("utf-8", "utf8"):
            return False
    return True


def quoted(text: str) -> str:
    """A name from the request, quoted and cut for an error message (JSON escapes keep it one line)."""
    shown = text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."
    return json.dumps(shown)


def describe(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    return json.dumps(value)  # null, true, a number


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")  # json.loads would take NaN and Infinity otherwise


def http_error(status: int, message: str) -> tornado.web.HTTPError:
    # Tornado logs log_message as a format string: a "%" from the request (a key named
    # "%s") must travel as an argument, or the log line breaks.
    return tornado.web.HTTPError(status, "%s", message)


def bad_request(message: str) -> tornado.web.HTTPError:
    return http_error(400, message)


_LENGTH_SEPARATOR = re.compile(r",\s*")  # as HTTP1Connection splits a list of lengths


def declared_length(headers: tornado.httputil.HTTPHeaders) -> int:
    """The body length a request's head announces, read as Tornado reads it ("n, n" and
    repeated headers are n; leading zeros count for nothing); 0 for none (chunked), or
    for one Tornado refuses itself (not digits, or unequal lengths)."""
    raw = headers.get("Content-Length", "")
    if "," in raw:  # a list, rare: every push passes here
        pieces = set(_LENGTH_SEPARATOR.split(raw))
        if len(pieces) != 1:
            return 0
        raw = pieces.pop()
    if not (raw.isascii() and raw.isdigit()):
        return 0
    raw = raw.lstrip("0")
    return int(raw or "0") if len(raw) <= 18 else 10**18  # int() refuses thousands of digits


def push_token_name(tokens: Mapping[str, str], request: tornado.httputil.HTTPServerRequest) -> str:
    """The name of the push token ([api] tokens) in the request's Authorization header:
    403 while none is configured, 401 without a good one. Every handler that takes push
    tokens (pushes, alerts, silences) asks here, so all answer alike."""
    if not tokens:
        raise http_error(403, HOW_TO_ENABLE)
    if request.headers.get("Authorization") is None:
        hint = " (not in the URL: URLs are logged)" if request.query else ""
        raise http_error(401, f"missing token: send the header Authorization: Bearer <token>{hint}")
    offered = bearer_token(request.headers)
    name = match_token(tokens, offered) if offered is not None else None
    if name is None:
        raise http_error(401, "invalid token: expected Authorization: Bearer <token> with a token from [api] tokens")
    return name


def require_json(headers: tornado.httputil.HTTPHeaders) -> None:
    """415 unless the request says its body is JSON, as it is (no Content-Encoding: a
    gzipped body would be read as its compressed bytes)."""
    content_type = headers.get("Content-Type")
    if content_type is None or not is_json_content_type(content_type):
        got = quoted(content_type) if content_type is not None else "none"
        raise http_error(415, f"expected Content-Type: application/json, got {got}")
    encoding = headers.get("Content-Encoding", "identity").strip().lower()
    if encoding != "identity":
        raise http_error(415, f"expected a body without Content-Encoding, got {quoted(encoding)}")


def json_object(raw: bytes | bytearray, keys: tuple[str, ...], example: str) -> dict[str, Any]:
    """A request body as a JSON object holding only the given keys, or a 400 that says
    what is wrong: not UTF-8, not JSON (NaN and Infinity are not), nested too deeply, not
    an object like `example`, a key not expected."""
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise bad_request(f"invalid JSON: not UTF-8 (byte {exc.start})") from None
    except RecursionError:
        raise bad_request("invalid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, NaN, an integer of thousands of digits
        raise bad_request(f"invalid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise bad_request(f"expected a JSON object like {example}, got {describe(body)}")
    for key in body:
        if key not in keys:
            expected = ", ".join(f'"{k}"' for k in keys)
            raise bad_request(f"unknown key {quoted(key)} (expected {expected})")
    return body


def push_widget(widgets: Mapping[str, Widget], widget_id: str) -> Widget:
    """The widget, if it exists (404) and takes pushes (409)."""
    widget = widgets.get(widget_id)
    if widget is None:
        raise http_error(404, f"unknown widget {quoted(widget_id)}")
    if widget.source is None:
        raise http_error(409, f"widget {quoted(widget_id)} is a {widget.view} and takes no values")
    if not widget.pushed:
        raise http_error(
            409, f"widget {quoted(widget_id)} is fed by its {quoted(widget.source.kind)} source, not by pushes"
        )
    return widget


def accepted(widget: Widget, value: Any) -> Any:
    """The value as the widget's view stores it, or 400."""
    try:
        return accept(widget.view, value, widget.value_map)
    except ValueRejected as exc:
        raise bad_request(f"widget {quoted(widget.id)} ({widget.view}): {exc}") from None


@dataclasses.dataclass(frozen=True, slots=True)
class SinglePush:
    """What the body of one push asks for, checked (see single_push)."""

    widget: Widget
    status: str
    message: str | None
    value: Any = None
    keeps_last: bool = False  # a failure without a value: the widget keeps its last one


def single_push(body: dict[str, Any], widget_id: str, widgets: Mapping[str, Widget]) -> SinglePush:
    """The checks of one push's body (a JSON object of SINGLE_KEYS), after its token and
    form, in the order of the module docstring: status and message, a value, the widget
    (404, 409), the value (400)."""
    status = body.get("status", OK)
    if status not in STATUSES:
        got = quoted(status) if isinstance(status, str) else describe(status)
        raise bad_request(f'status: expected "ok" or "error", got {got}')
    message = body.get("message")
    if message is not None and (status != ERROR or not isinstance(message, str)):
        raise bad_request('message: expected a string, with "status": "error"')
    if "value" not in body and status == OK:
        raise bad_request('missing "value": send {"value": ...}')
    widget = push_widget(widgets, widget_id)
    if "value" not in body:
        return SinglePush(widget, status, clean_message(message), keeps_last=True)
    return SinglePush(widget, status, clean_message(message), accepted(widget, body["value"]))


@tornado.web.stream_request_body
class PushBase(ApiHandler):
    _body: bytearray
    _too_large = False
    _retry_after = 0  # seconds, for a 429 (its headers are set in write_error: send_error clears them)

    def initialize(self, runtime, push_limiter: RateLimiter | None = None) -> None:
        super().initialize(runtime)
        self.push_limiter = push_limiter

    def on_finish(self) -> None:
        if self.runtime.metrics is not None:
            self.runtime.metrics.push_answered(self.get_status())

    def check_xsrf_cookie(self) -> None:
        # Pushes are authorised by a bearer token, never by a cookie, so a cross-site
        # form cannot forge one: should xsrf_cookies be switched on, scripts must not
        # need an _xsrf field.
        pass

    def prepare(self) -> None:
        self._body = bytearray()
        if self.request.method == "POST":
            # [server] max_body is for every other request; a push has a limit of its own.
            self._connection().set_max_body_size(self.config.api.max_body + CHUNKED_SLACK)
        declared = declared_length(self.request.headers)
        if self.request.method == "POST" and declared > self.config.api.max_body:
            # Answering now is the only way not to read the body (Tornado then closes the
            # connection). The answer still comes in the usual order: the token first.
            self._check_request_headers()
            # Tornado's own limit would otherwise add a bare "400 Bad Request" after ours.
            self._connection().set_max_body_size(declared)
            raise self._too_large_error()

    def _connection(self) -> HTTP1Connection:
        connection = self.request.connection
        assert isinstance(connection, HTTP1Connection)  # the server speaks HTTP/1.x only
        return connection

    def data_received(self, chunk: bytes) -> None:
        if self._too_large:
            return
        if len(self._body) + len(chunk) > self.config.api.max_body:
            self._too_large = True
            self._body = bytearray()  # the rest is read and dropped; post() answers 413
            return
        self._body += chunk

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if status_code == 429:
            self.set_header("Retry-After", str(self._retry_after))
        super().write_error(status_code, **kwargs)

    def _too_large_error(self) -> tornado.web.HTTPError:
        limit = self.config.api.max_body
        return http_error(413, f"body too large: at most {limit} bytes ([api] max_body)")

    # -- the checks, in the order of the module docstring ------------------------------------

    def _authorise(self) -> str:
        """The name of the caller's token (see push_token_name), within its rate."""
        name = push_token_name(self.config.api.tokens, self.request)
        self._check_rate(name)
        return name

    def _check_rate(self, name: str) -> None:
        if self.push_limiter is None:
            return
        api = self.config.api
        wait = self.push_limiter.take(name, api.rate, api.burst)
        if wait:
            seconds = self._retry_after = retry_after(wait)
            raise http_error(
                429, f"too many pushes with token {quoted(name)}: retry in {seconds} s ([api] rate and burst)"
            )

    def _check_request_headers(self) -> str:
        name = self._authorise()
        require_json(self.request.headers)
        return name

    def _json_object(self, keys: tuple[str, ...]) -> dict[str, Any]:
        """The body as a JSON object with only the given keys; 413 or 400 otherwise."""
        if self._too_large or len(self._body) > self.config.api.max_body:
            raise self._too_large_error()
        example = '{"values": {"<widget id>": ...}}' if "values" in keys else '{"value": ...}'
        return json_object(self._body, keys, example)


class WidgetPushHandler(PushBase, WidgetHandler):
    """GET /api/widgets/<id> reads (api.py); POST pushes one value."""

    async def post(self, widget_id: str) -> None:
        caller = self._check_request_headers()  # the token's name, never the token
        push = single_push(self._json_object(SINGLE_KEYS), widget_id, self.config.widgets)
        value = push.value
        if push.keeps_last:
            # A failure without a value keeps the last one, as a failing ticker does:
            # the page shows it, marked as failing.
            latest = (await self.runtime.store.shown([push.widget])).get(push.widget.id)
            value = latest.value if latest is not None else None
        sample = await self.runtime.recorder.record(push.widget.id, value, push.status, push.message)
        log.debug("widget %s pushed by token %s: event %d", push.widget.id, caller, sample.id)
        self.write_json(pushed_json(sample))


class WidgetsPushHandler(PushBase, WidgetsHandler):
    """GET /api/widgets lists (api.py); POST pushes several values, all or nothing."""

    async def post(self) -> None:
        caller = self._check_request_headers()  # the token's name, never the token
        values = self._json_object(BATCH_KEYS).get("values")
        if not isinstance(values, dict) or not values:
            got = "nothing" if values is None else describe(values)
            raise bad_request(
                f"values: expected an object of widget ids to values, like "
                f'{{"values": {{"<widget id>": ...}}}}, got {got}'
            )
        # Same order as one push: every widget must exist (404) and take pushes (409),
        # then every value must fit; the first problem found is the answer.
        widgets = {widget_id: self.config.widgets.get(widget_id) for widget_id in values}
        for widget_id, widget in widgets.items():
            if widget is None:
                raise http_error(404, f"unknown widget {quoted(widget_id)}")
        for widget_id in widgets:
            push_widget(self.config.widgets, widget_id)
        items = [(widget_id, accepted(widget, values[widget_id]), OK, None) for widget_id, widget in widgets.items()]
        samples = await self.runtime.recorder.record_many(items)
        log.debug("widgets %s pushed by token %s", ", ".join(widgets), caller)
        self.write_json({"ids": {s.widget: s.id for s in samples}, "ts": format_ts(samples[0].ts)})
