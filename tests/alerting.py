"""Helpers of the alerting tests: a driven clock, a loopback receiver of webhook (and ntfy)
bodies (the `receiver` and `failing_receiver` fixtures: (inbox, port)), and config text
for alerts and notifiers. Loaded as a pytest plugin (tests/conftest.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
import tornado.web

from tests.configs import table, toml_key, toml_value
from tests.peers import serving

# 2026-11-20 was a Friday; noon UTC.
FRIDAY_NOON = 1795176000.0


class Clock:
    """Time as the engine and the delivery see it, moved by the test."""

    def __init__(self, now: float = FRIDAY_NOON):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Inbox:
    """What a receiver got, and how it answers: `status` for every request (a failing
    receiver: 500), or `hold` to keep requests waiting until released."""

    received: list[Received] = field(default_factory=list)
    status: int = 200

    def bodies(self) -> list[dict]:
        return [r.json() for r in self.received]

    def ids(self) -> list[str]:
        return [r.json()["id"] for r in self.received]


class ReceiverHandler(tornado.web.RequestHandler):
    """POST anywhere: kept in the inbox, answered with the inbox's status."""

    def initialize(self, inbox: Inbox) -> None:
        self.inbox = inbox

    def check_xsrf_cookie(self) -> None:
        pass

    def post(self, path: str = "") -> None:
        self.inbox.received.append(Received(self.request.path, dict(self.request.headers), self.request.body))
        self.set_status(self.inbox.status)
        self.finish("ok")


def receiver_routes(inbox: Inbox) -> list:
    return [(r"/(.*)", ReceiverHandler, {"inbox": inbox})]


@pytest.fixture
def receiver(io_loop):
    """A loopback webhook receiver that takes everything: (its inbox, its port)."""
    inbox = Inbox()
    with serving(io_loop, receiver_routes(inbox)) as peer:
        yield inbox, peer.port


@pytest.fixture
def failing_receiver(io_loop):
    """One that answers every notification with a 500."""
    inbox = Inbox(status=500)
    with serving(io_loop, receiver_routes(inbox)) as peer:
        yield inbox, peer.port


def notifier(name: str, kind: str, **keys) -> str:
    return table(f"notifiers.{name}", kind=kind, **keys)


def alert_table(widget: str, **keys) -> str:
    """[widgets.<id>.alert]; `for` is a Python keyword: pass hold="2m"."""
    if "hold" in keys:
        keys["for"] = keys.pop("hold")
    return f"\n[widgets.{widget}.alert]\n" + "".join(f"{toml_key(k)} = {toml_value(v)}\n" for k, v in keys.items())
