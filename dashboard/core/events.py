"""The stream's control events: small typed records with a `name`, encoded in one place.

A widget's update is an event named after the widget, with the sample id as its
`id`. A control event is named for what it says and carries no `id`, so the
browser's Last-Event-ID stays at the last sample it received. Widget ids may not
take these names (nor the EventSource's own "message", "error" and "open").
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, ClassVar

from .sse import encode_event


@dataclass(frozen=True)
class ControlEvent:
    name: ClassVar[str]

    def data(self) -> dict[str, Any]:
        """The event's fields, those that are None left out."""
        return {key: value for key, value in dataclasses.asdict(self).items() if value is not None}

    def encode(self) -> bytes:
        return encode_event(json.dumps(self.data(), ensure_ascii=True), event=self.name)


@dataclass(frozen=True)
class Hello(ControlEvent):
    """First on every stream: which server instance and version the page talks to."""

    name: ClassVar[str] = "hello"
    server: str
    version: str


@dataclass(frozen=True)
class Reload(ControlEvent):
    """The page should reload itself: its dashboard changed, or its viewer may no longer see it."""

    name: ClassVar[str] = "reload"
    reason: str | None = None


@dataclass(frozen=True)
class Gap(ControlEvent):
    """What follows is the newest value of each widget, not every event since the
    client's last one: the stream could not replay what it missed (the gap was too
    old, its id unknown, the database did not answer) or it read too slowly to keep
    up. `after` is the id it resumed from, when it gave one. A script learns that it
    missed data; a page may fetch what its graphs lack from the history API."""

    name: ClassVar[str] = "gap"
    reason: str
    after: int | None = None


@dataclass(frozen=True)
class Alert(ControlEvent):
    """Alerts changed: each as it is now (fired, resolved, acknowledged, silenced). At a
    stream's opening `complete` is true: these are all the open alerts the page may
    show, and any other it still shows is over."""

    name: ClassVar[str] = "alert"
    alerts: tuple[dict[str, Any], ...]
    complete: bool = False


# The `reload` reason a stream gives a viewer it turns away (the page reloads into the
# sign-in page); the `sse` source takes it as a failure.
SIGN_IN_NEEDED = "sign-in needed"

CONTROL_EVENTS: tuple[type[ControlEvent], ...] = (Hello, Reload, Gap, Alert)
CONTROL_EVENT_NAMES: tuple[str, ...] = tuple(event.name for event in CONTROL_EVENTS)
# Names an EventSource gives meanings of its own: a widget called "error" would be
# indistinguishable from a failed connection on the page.
BROWSER_EVENT_NAMES = ("message", "error", "open")
RESERVED_NAMES: tuple[str, ...] = CONTROL_EVENT_NAMES + BROWSER_EVENT_NAMES
