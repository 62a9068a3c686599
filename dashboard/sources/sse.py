"""An upstream Server-Sent Events stream as a widget's source: another dashboard's
/events/<dashboard> (or /events?widgets=...), or any text/event-stream API.

The connection is an EventStream (eventstream.py): it behaves like a browser's
EventSource (Last-Event-ID on every reconnect, the upstream's `retry:`, redirects,
a stream that ends after a good start simply reopened). Only a failed start (no
connection, a status other than 200, the wrong content type) is raised as
SourceError; the scheduler marks the widget failing and backs off, starting from
the upstream's retry delay when it gave one.

A protected dashboard of another instance is read with one of its read tokens
(`token`, sent as Authorization: Bearer). When that server says `gap` (it could not
replay what this source missed), the source logs it once and takes the values
that follow as the snapshot they are.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..core.events import CONTROL_EVENT_NAMES, SIGN_IN_NEEDED, Gap, Reload
from ..core.sse import Event
from . import SourceError
from .eventstream import MANAGED_HEADERS, EventStream
from .http_json import JsonPath, read_headers, read_path, read_url, shown_url

log = logging.getLogger("dashboard.sources")

FORMATS = ("json", "text")
READ_TOKEN_MIN = 16


def parse_json(text: str, path: JsonPath) -> Any:
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise SourceError(f"expected JSON, got {shown!r}") from None
    return path.pick(document)


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
        self.event = event
        self.format = format
        self.path = path
        self.reconnect_delay = reconnect_delay
        self._sleep = sleep
        # The connection, kept across reconnects as an EventSource keeps it (last event id, retry).
        self.connection = EventStream(url, headers=headers, connect_timeout=connect_timeout, idle_timeout=idle_timeout)
        self.gaps = 0  # `gap` events heard: times the upstream could not replay what this source missed
        self._after_gap = False

    @property
    def url(self) -> str:
        return self.connection.url

    @property
    def last_event_id(self) -> str:
        return self.connection.last_event_id

    @property
    def retry_delay(self) -> float | None:
        """Seconds, from the upstream's "retry:"; read by the scheduler."""
        return self.connection.retry_delay

    async def stream(self, emit: Callable[[Any], Awaitable[None]]) -> None:
        async def on_event(event: Event) -> None:
            if event.type == Gap.name:
                self._gap(event)
            elif event.type == Reload.name and _reason(event) == SIGN_IN_NEEDED:
                # Our own server turning a viewer away (what a browser is told): a failure here.
                raise SourceError(f"{shown_url(self.url)} needs a viewer: give the source a read token (token = ...)")
            elif self._wanted(event):
                if self._after_gap:
                    self._after_gap = False
                    log.info("%s: current values again after the gap", shown_url(self.url))
                await emit(self._value(event))

        await self.connection.follow(on_event, delay=self.reconnect_delay, sleep=self._sleep)

    def _gap(self, event: Event) -> None:
        """Our own server says it could not replay everything since our last event id:
        what follows is a snapshot (the newest value of each widget), and the values in
        between are lost to this widget's history. Logged once per gap, not per value."""
        self.gaps += 1
        self._after_gap = True
        why = _reason(event) or "no reason given"
        log.warning(
            "%s could not replay what was missed (%s); taking its current values, the ones in between are lost",
            shown_url(self.url),
            why,
        )

    def _wanted(self, event: Event) -> bool:
        return (
            event.type == self.event if self.event is not None else event.type not in CONTROL_EVENT_NAMES
        )  # our own stream's; not values

    def _value(self, event: Event) -> Any:
        if self.format == "text":
            return event.data
        try:
            return parse_json(event.data, self.path)
        except SourceError as exc:
            return exc  # one bad event: the widget shows why, and the stream goes on


# --- configuration -----------------------------------------------------------------------------


def _reason(event: Event) -> str | None:
    """The "reason" of one of our control events, if it has one."""
    try:
        detail = json.loads(event.data)
    except ValueError:
        return None
    reason = detail.get("reason") if isinstance(detail, dict) else None
    return reason if isinstance(reason, str) else None


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
    token = options.str("token", "")
    if token:
        if len(token) < READ_TOKEN_MIN:  # a secret: never echoed
            raise options.error("token", f"too short: a read token has at least {READ_TOKEN_MIN} characters")
        if any(name.lower() == "authorization" for name in headers):
            raise options.error("token", "expected either token or an Authorization header, got both")
        if any(c in token for c in "\r\n\0"):
            raise options.error("token", "a token cannot contain line breaks or NUL")
        headers["Authorization"] = f"Bearer {token}"
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
