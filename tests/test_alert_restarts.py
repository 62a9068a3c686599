"""Exactly once, through restarts: `run.py serve` processes killed with SIGKILL, a real
loopback receiver counting what it was told.

- A restart while an alert fires keeps it firing and tells nothing twice.
- An alert that resolved while the server was down is told as resolved.
- kill -9 after a transition was committed but before its notification went out: the
  notification goes out after the restart.
- kill -9 while the receiver holds the request (it got the notification, the server
  never heard back): the notification goes out again after the restart, with the same
  id, so the receiver drops the repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3

import pytest
import tornado.web
from tornado.httpclient import AsyncHTTPClient

from dashboard.storage.store import Store
from tests.alerting import Inbox, Received, alert_table, notifier
from tests.configs import dashboard, loopback_server, push_widget, table
from tests.helpers import TOKEN, store_sample, wait_until
from tests.peers import serving
from tests.process import ServerProcess

HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def config_text(port: int, *, group_window: str = "0s") -> str:
    return (
        loopback_server(storage="sqlite+aiosqlite:///data/alerts.db", grace="2s")
        + table("api", tokens={"test": TOKEN})
        + table("alerts", notify=["hook"], group_window=group_window, repeat_interval="12h")
        + notifier("hook", "webhook", url=f"http://127.0.0.1:{port}/hook", timeout="30s")
        + dashboard("main", ["cpu", "disk"])
        + push_widget("cpu", "number", title="CPU", crit=90)
        + alert_table("cpu")
        + push_widget("disk", "number", title="Disk", crit=90)
        + alert_table("disk")
    )


class HoldingReceiver(tornado.web.RequestHandler):
    """Keeps what it gets; while the inbox says `hold`, does not answer the first request
    (the server then never hears that it went)."""

    def initialize(self, inbox: Inbox, held: asyncio.Event) -> None:
        self.inbox = inbox
        self.held = held

    def check_xsrf_cookie(self) -> None:
        pass

    async def post(self) -> None:
        self.inbox.received.append(Received(self.request.path, dict(self.request.headers), self.request.body))
        if getattr(self.inbox, "hold", False):
            self.inbox.hold = False
            self.held.set()
            await self.settings["release"].wait()
            return
        self.finish("ok")


@pytest.fixture
def receiver(io_loop):
    inbox, held = Inbox(), asyncio.Event()
    with serving(io_loop, [(r"/hook", HoldingReceiver, {"inbox": inbox, "held": held})]) as peer:
        yield inbox, peer.port, held


async def push(server: ServerProcess, widget: str, value) -> None:
    response = await AsyncHTTPClient().fetch(
        server.url(f"/api/widgets/{widget}"), method="POST", headers=HEADERS, body=json.dumps({"value": value})
    )
    assert response.code == 200


def told(inbox: Inbox) -> list[tuple[str, str, str]]:
    """(notification id, event, widget) of every alert event received, repeats included."""
    return [(body["id"], a["event"], a["widget"]) for body in inbox.bodies() for a in body["alerts"]]


async def started(directory, text: str) -> ServerProcess:
    server = ServerProcess(directory, text)
    server.start()
    await server.ready()
    return server


async def killed(server: ServerProcess) -> None:
    server.send(signal.SIGKILL)
    assert await server.exit_status() == -signal.SIGKILL
    await server.stop()


def all_sent(directory, count: int) -> bool:
    """`count` notifications in the database, every one marked sent: a kill -9 now cannot
    make the next start send one again (a kill between the send and that mark would, on
    purpose: at least once)."""
    with contextlib.closing(sqlite3.connect(f"file:{directory / 'data' / 'alerts.db'}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT status FROM alert_notifications").fetchall()
    return len(rows) == count and all(status == "sent" for (status,) in rows)


def deduplicated(inbox: Inbox) -> list[tuple[str, str]]:
    """(event, widget) as a receiver that drops repeated notification ids keeps them."""
    seen: set[str] = set()
    out = []
    for body in inbox.bodies():
        if body["id"] in seen:
            continue
        seen.add(body["id"])
        out.extend((a["event"], a["widget"]) for a in body["alerts"])
    return out


@pytest.mark.gen_test(timeout=180)
async def test_restarts_while_firing_tell_nothing_twice_and_a_resolve_while_down_is_told(tmp_path, receiver):
    inbox, port, _ = receiver
    text = config_text(port)
    server = await started(tmp_path, text)
    try:
        await push(server, "cpu", 95)
        await wait_until(lambda: len(inbox.received) == 1, timeout=20, message="the firing notification")
        await wait_until(lambda: all_sent(tmp_path, 1), timeout=20, message="the notification marked sent")
    finally:
        await killed(server)

    server = await started(tmp_path, text)  # after kill -9, still firing
    try:
        await push(server, "disk", 99)  # queued behind anything the restart might have said of the cpu
        await wait_until(lambda: ("firing", "disk") in deduplicated(inbox), timeout=20, message="the disk")
        await wait_until(lambda: all_sent(tmp_path, 2), timeout=20, message="the notifications marked sent")
        assert [(e, w) for _, e, w in told(inbox)] == [("firing", "cpu"), ("firing", "disk")]
    finally:
        await killed(server)

    # Down; meanwhile another process wrote that the cpu is fine again.
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'alerts.db'}")
    await store.open(migrate=False)
    await store_sample(store, "cpu", 12)
    await store.close()
    server = await started(tmp_path, text)
    try:
        await wait_until(lambda: ("resolved", "cpu") in deduplicated(inbox), timeout=20, message="cpu resolved")
        await push(server, "disk", 10)
        await wait_until(lambda: ("resolved", "disk") in deduplicated(inbox), timeout=20, message="disk resolved")
        assert [(e, w) for _, e, w in told(inbox)] == [
            ("firing", "cpu"),
            ("firing", "disk"),
            ("resolved", "cpu"),
            ("resolved", "disk"),
        ]
    finally:
        await server.stop()


@pytest.mark.gen_test(timeout=180)
async def test_kill_9_after_the_commit_and_before_the_notification_sends_it_after_the_restart(tmp_path, receiver):
    inbox, port, _ = receiver
    # A group window of an hour: the transition is committed with its outbox item, and
    # the notification waits.
    server = await started(tmp_path, config_text(port, group_window="1h"))
    try:
        await push(server, "cpu", 95)

        async def committed():
            response = await AsyncHTTPClient().fetch(server.url("/api/alerts?state=firing"), headers=HEADERS)
            return json.loads(response.body)["firing"] == 1

        await wait_until(committed, timeout=20, message="the transition committed")
        assert inbox.received == []
    finally:
        await killed(server)
    server = await started(tmp_path, config_text(port))
    try:
        await wait_until(lambda: len(inbox.received) == 1, timeout=20, message="the notification after the restart")
        await push(server, "disk", 99)
        await wait_until(lambda: len(inbox.received) == 2, timeout=20, message="the disk")
        assert [(e, w) for _, e, w in told(inbox)] == [("firing", "cpu"), ("firing", "disk")]
    finally:
        await server.stop()


@pytest.mark.gen_test(timeout=180)
async def test_kill_9_while_a_notification_is_in_flight_sends_it_again_with_the_same_id(tmp_path, receiver):
    inbox, port, held = receiver
    inbox.hold = True  # the receiver takes the first request and never answers it
    text = config_text(port)
    server = await started(tmp_path, text)
    try:
        await push(server, "cpu", 95)
        await asyncio.wait_for(held.wait(), 20)
    finally:
        await killed(server)
    server = await started(tmp_path, text)
    try:
        await wait_until(lambda: len(inbox.received) == 2, timeout=20, message="the notification sent again")
        first, again = inbox.bodies()
        assert first == again  # the same notification: its id, and what it says
        assert deduplicated(inbox) == [("firing", "cpu")]  # what a receiver that drops repeated ids keeps
    finally:
        await server.stop()
