"""The alert engine with driven time: holds, clear margins and clear holds, repeats,
acknowledgements, grouping, silences and maintenance windows, inhibition, retries with
backoff, restarts. A real SQLite file, the real delivery, and a real loopback HTTP
receiver getting the notifications."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from dashboard.alerts.delivery import Delivery
from dashboard.alerts.engine import AlertEngine
from dashboard.alerts.store import AlertStore
from dashboard.config import load_config
from dashboard.storage.store import Store
from tests.alerting import Clock, Inbox, alert_table, notifier
from tests.configs import TEST_DB, dashboard, loopback_server, push_widget, table
from tests.helpers import write_config


def config_text(
    port: int, *, cpu_alert: dict | None = None, alerts: dict | None = None, extra: str = "", storage: str = TEST_DB
) -> str:
    return (
        loopback_server(storage=storage)
        + table("alerts", **{"notify": ["hook"], "group_window": "0s", "repeat_interval": "1h", **(alerts or {})})
        + notifier("hook", "webhook", url=f"http://127.0.0.1:{port}/hook", timeout="2s", retries=2)
        + dashboard("main", ["cpu", "disk", "site"])
        + push_widget("cpu", "number", title="CPU", warn=70, crit=90, unit="%")
        + alert_table("cpu", **(cpu_alert if cpu_alert is not None else {"hold": "2m"}))
        + push_widget("disk", "number", title="Disk free", warn=20, crit=10, unit="%")
        + alert_table("disk", on=["crit"])
        + push_widget("site", "status", title="Site")
        + alert_table("site", on=["warn", "down"])
        + extra
    )


class Rig:
    """An engine on a real store, a driven clock, and what the receiver got."""

    def __init__(self, directory: Path, text: str, clock: Clock):
        self.config = load_config(write_config(directory, text))
        self.clock = clock
        self.store = Store(self.config.storage.url)
        self.events: list[tuple[tuple[str, ...], dict]] = []
        self.engine: AlertEngine | None = None

    async def open(self, latest=None) -> AlertEngine:
        if self.store.engine is None:
            await self.store.open()
        alerts = AlertStore(self.store)
        delivery = Delivery(alerts, self.config, clock=self.clock)
        self.engine = AlertEngine(
            self.config,
            alerts,
            clock=self.clock,
            delivery=delivery,
            send_control=lambda topics, event: self.events.append((tuple(topics), event.data())),
        )
        await self.engine.start(latest, run=False)
        return self.engine

    async def push(self, widget: str, value, status: str = "ok", message: str | None = None) -> None:
        """A sample written and observed, then a round and a delivery pass."""
        samples = await self.store.append_many([(widget, value, status, message)])
        self.engine.observe(samples)
        await self.settle()

    async def settle(self) -> None:
        await self.engine.evaluate()
        await self.engine.delivery.run_once(wait=True)

    async def at(self, seconds: float) -> None:
        """Move the clock on, then a round and a delivery pass."""
        self.clock.advance(seconds)
        await self.settle()

    def firing(self) -> list[str]:
        return sorted(a["widget"] + ":" + a["condition"] for a in self.engine.current() if a["state"] == "firing")

    async def close(self) -> None:
        await self.store.close()

    async def __aenter__(self) -> Rig:
        await self.open()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


def events_of(inbox: Inbox) -> list[list[tuple[str, str]]]:
    """Each notification as [(event, widget:condition), ...]."""
    return [[(a["event"], f"{a['widget']}:{a['condition']}") for a in body["alerts"]] for body in inbox.bodies()]


@pytest.mark.gen_test(timeout=30)
async def test_an_alert_fires_after_its_hold_and_is_told_once(tmp_path, receiver):
    inbox, port = receiver
    async with Rig(tmp_path, config_text(port), Clock()) as rig:
        await rig.push("cpu", 95)
        assert [a["state"] for a in rig.engine.current()] == ["pending", "pending"]  # crit and warn
        await rig.at(119)
        assert rig.firing() == [] and inbox.received == []
        await rig.at(1)
        assert rig.firing() == ["cpu:crit", "cpu:warn"]
        # The crit is told; the warn of the same widget is kept quiet by it.
        assert events_of(inbox) == [[("firing", "cpu:crit")]]
        body = inbox.bodies()[0]
        assert body["status"] == "firing" and body["severity"] == "crit" and body["version"] == 1
        assert body["title"] == "[CRIT] CPU: firing"
        alert = body["alerts"][0]
        assert alert["message"] == "CPU 95 % is above crit (90 %)"
        assert alert["value"] == 95 and alert["fired_at"].startswith("2026-11-20T12:02:00")
        assert inbox.received[0].headers["X-Dashboard-Notification"] == body["id"]
        # Nothing more while it keeps firing, sample after sample.
        for value in (96, 97, 93):
            await rig.push("cpu", value)
            await rig.at(60)
        assert len(inbox.received) == 1
        # Back under: both resolve; only what was told is told resolved.
        await rig.push("cpu", 50)
        assert rig.firing() == []
        assert events_of(inbox)[1] == [("resolved", "cpu:crit")]
        assert inbox.bodies()[1]["status"] == "resolved"
        assert inbox.bodies()[1]["alerts"][0]["message"] == "CPU is back below crit: 50 %"
        # The transitions are in SQL.
        (crit,) = await rig.engine.store.find(widgets=["cpu"], states=["resolved"], limit=1)
        events = await rig.engine.store.events(crit.id)
        assert [e["state"] for e in events] == ["pending", "firing", "resolved"]
        assert [e["value"] for e in events] == [95, 95, 50]


@pytest.mark.gen_test(timeout=30)
async def test_a_dip_during_the_hold_starts_it_again(tmp_path, receiver):
    inbox, port = receiver
    async with Rig(tmp_path, config_text(port, cpu_alert={"hold": "2m", "on": ["crit"]}), Clock()) as rig:
        await rig.push("cpu", 95)
        await rig.at(100)
        await rig.push("cpu", 85)  # below crit: the pending alert is cancelled
        assert rig.engine.current() == []
        await rig.push("cpu", 95)
        await rig.at(100)
        assert rig.firing() == []
        await rig.at(20)
        assert rig.firing() == ["cpu:crit"]
        assert len(inbox.received) == 1
        # A pending alert that never fired leaves no row behind.
        rows = await rig.engine.store.find(widgets=["cpu"])
        assert [r.state for r in rows] == ["firing"]


@pytest.mark.gen_test(timeout=30)
async def test_a_clear_margin_keeps_a_value_at_the_line_from_flapping(tmp_path, receiver):
    inbox, port = receiver
    async with Rig(tmp_path, config_text(port, cpu_alert={"on": ["crit"], "clear_margin": 5}), Clock()) as rig:
        for value in (91, 89, 90.5, 86, 92, 85.5):  # around the line, never 5 below it
            await rig.push("cpu", value)
            await rig.at(10)
        assert rig.firing() == ["cpu:crit"]
        assert events_of(inbox) == [[("firing", "cpu:crit")]]
        await rig.push("cpu", 84.9)
        assert rig.firing() == []
        assert events_of(inbox)[1:] == [[("resolved", "cpu:crit")]]


@pytest.mark.gen_test(timeout=30)
async def test_a_clear_hold_resolves_only_once_the_value_stayed_back(tmp_path, receiver):
    inbox, port = receiver
    async with Rig(tmp_path, config_text(port, cpu_alert={"on": ["crit"], "clear_for": "1m"}), Clock()) as rig:
        await rig.push("cpu", 95)
        await rig.push("cpu", 50)
        await rig.at(59)
        assert rig.firing() == ["cpu:crit"]
        await rig.push("cpu", 95)  # back over the line: the clear hold starts again
        await rig.push("cpu", 50)
        await rig.at(59)
        assert rig.firing() == ["cpu:crit"]
        await rig.at(1)  # a minute without the value coming back, and no sample needed
        assert rig.firing() == []
        assert events_of(inbox) == [[("firing", "cpu:crit")], [("resolved", "cpu:crit")]]


@pytest.mark.gen_test(timeout=30)
async def test_a_firing_alert_repeats_until_acknowledged(tmp_path, receiver):
    inbox, port = receiver
    async with Rig(tmp_path, config_text(port, cpu_alert={"on": ["crit"]}), Clock()) as rig:
        await rig.push("cpu", 95)
        await rig.at(3599)
        assert len(inbox.received) == 1
        await rig.at(1)
        assert events_of(inbox) == [[("firing", "cpu:crit")], [("repeat", "cpu:crit")]]
        assert inbox.bodies()[1]["title"] == "[CRIT] CPU: still firing"
        (alert,) = rig.engine.current()
        acked = await rig.engine.acknowledge(alert["id"], "alice")
        assert acked["acked_by"] == "alice" and acked["acked_at"].startswith("2026-11-20T13:00:00")
        assert rig.events[-1][1]["alerts"][0]["acked_by"] == "alice"  # the pages are told
        await rig.at(3600 * 5)
        assert len(inbox.received) == 2  # no more repeats
        await rig.push("cpu", 10)
        assert events_of(inbox)[2] == [("resolved", "cpu:crit")]
        assert inbox.bodies()[2]["alerts"][0]["acked_by"] == "alice"
        (row,) = await rig.engine.store.find(widgets=["cpu"])
        assert [e["state"] for e in await rig.engine.store.events(row.id)] == [
            "firing",
            "acknowledged",
            "resolved",
        ]
        assert (await rig.engine.store.events(row.id))[1]["by"] == "alice"


@pytest.mark.gen_test(timeout=30)
async def test_alerts_that_fire_within_the_group_window_go_out_as_one_notification(tmp_path, receiver):
    inbox, port = receiver
    text = config_text(port, cpu_alert={"on": ["crit"]}, alerts={"group_window": "30s"})
    async with Rig(tmp_path, text, Clock()) as rig:
        await rig.push("cpu", 95)
        await rig.at(10)
        await rig.push("disk", 4)
        await rig.at(19)
        assert inbox.received == []
        await rig.at(1)  # 30 s after the first
        assert events_of(inbox) == [[("firing", "cpu:crit"), ("firing", "disk:crit")]]
        body = inbox.bodies()[0]
        assert body["title"] == "[CRIT] 2 alerts: 2 firing"
        assert "FIRING · CRIT · CPU" in body["text"] and "FIRING · CRIT · Disk free" in body["text"]
        assert body["alerts"][1]["message"] == "Disk free 4 % is below crit (10 %)"  # falling thresholds


@pytest.mark.gen_test(timeout=30)
async def test_a_silence_holds_notifications_back_until_it_ends(tmp_path, receiver):
    inbox, port = receiver
    async with Rig(tmp_path, config_text(port, cpu_alert={"on": ["crit"]}), Clock()) as rig:
        silence = await rig.engine.silence(["cpu"], 600, "replacing a fan", "test")
        await rig.push("cpu", 95)
        assert rig.firing() == ["cpu:crit"] and inbox.received == []
        assert rig.engine.current()[0]["silenced"] == "silence 1"  # shown, marked as silenced
        await rig.at(599)
        assert inbox.received == []
        await rig.at(1)  # the silence is over: told now
        assert events_of(inbox) == [[("firing", "cpu:crit")]]
        assert rig.engine.current()[0]["silenced"] is None
        # Ended early through the API: an alert that fired meanwhile is told at once.
        await rig.engine.silence(None, 3600, None, "test")
        await rig.push("disk", 3)
        assert len(inbox.received) == 1
        await rig.engine.end_silence(silence.id + 1)
        await rig.settle()
        assert events_of(inbox)[1] == [("firing", "disk:crit")]


@pytest.mark.gen_test(timeout=30)
async def test_an_alert_that_resolves_during_its_silence_is_never_told(tmp_path, receiver):
    inbox, port = receiver
    async with Rig(tmp_path, config_text(port, cpu_alert={"on": ["crit"]}), Clock()) as rig:
        await rig.engine.silence(["cpu"], 600, None, "test")
        await rig.push("cpu", 95)
        await rig.push("cpu", 10)
        await rig.at(601)
        assert inbox.received == [] and rig.firing() == []


@pytest.mark.gen_test(timeout=30)
async def test_a_maintenance_window_silences_in_its_own_time_zone(tmp_path, receiver):
    inbox, port = receiver
    # Friday 12:00 UTC is 13:00 in Berlin: inside 12:30-14:00 there, for the cpu only.
    window = (
        '\n[[maintenance]]\nname = "lunch"\nweekdays = ["fri"]\nstart = "12:30"\nend = "14:00"\n'
        'timezone = "Europe/Berlin"\nwidgets = ["cpu"]\n'
    )
    text = config_text(port, cpu_alert={"on": ["crit"]}, alerts={"repeat_interval": "0s"}, extra=window)
    async with Rig(tmp_path, text, Clock()) as rig:
        await rig.push("cpu", 95)
        await rig.push("disk", 4)
        assert events_of(inbox) == [[("firing", "disk:crit")]]
        assert {a["widget"]: a["silenced"] for a in rig.engine.current()} == {"cpu": "lunch", "disk": None}
        await rig.at(3599)  # 13:59:59 in Berlin
        assert len(inbox.received) == 1
        await rig.at(1)  # 14:00: the window closed
        assert events_of(inbox)[1] == [("firing", "cpu:crit")]
        silenced = [e for _, e in rig.events if e["alerts"][0]["widget"] == "cpu"]
        assert [e["alerts"][0]["silenced"] for e in silenced][-1] is None  # the page is told the silence ended


@pytest.mark.gen_test(timeout=30)
async def test_a_warn_kept_quiet_by_its_crit_is_told_once_the_crit_resolves(tmp_path, receiver):
    inbox, port = receiver
    async with Rig(tmp_path, config_text(port, cpu_alert={}), Clock()) as rig:
        await rig.push("cpu", 95)
        await rig.push("cpu", 80)  # crit resolves, warn fires still: now it is told
        assert events_of(inbox) == [[("firing", "cpu:crit")], [("resolved", "cpu:crit"), ("firing", "cpu:warn")]]
        await rig.push("site", {"state": "down", "detail": "HTTP 503"})
        assert events_of(inbox)[2] == [("firing", "site:down")]
        assert inbox.bodies()[2]["alerts"][0]["message"] == "Site is down: HTTP 503"


@pytest.mark.gen_test(timeout=60)
async def test_a_failing_notifier_is_retried_with_backoff_and_blocks_no_other(tmp_path, receiver, failing_receiver):
    (good, good_port), (bad, bad_port) = receiver, failing_receiver
    text = config_text(good_port, cpu_alert={"on": ["crit"], "notify": ["broken", "hook"]}) + notifier(
        "broken", "webhook", url=f"http://127.0.0.1:{bad_port}/x", retries=2
    )
    async with Rig(tmp_path, text, Clock()) as rig:
        await rig.push("cpu", 95)
        assert len(good.received) == 1 and len(bad.received) == 1
        report = rig.engine.report()["notifiers"]
        assert report["broken"]["status"] == "failing" and report["broken"]["last_error"].startswith("HTTP 500 from")
        assert report["hook"]["status"] == "ok" and report["hook"]["sent"] == 1
        await rig.at(4.9)
        assert len(bad.received) == 1  # the first retry waits 5 s
        await rig.at(0.1)
        assert len(bad.received) == 2
        await rig.at(9.9)
        assert len(bad.received) == 2  # then 10 s
        await rig.push("disk", 4)  # meanwhile the other notifier goes on
        assert len(good.received) == 2
        await rig.at(0.1)
        assert len(bad.received) == 3  # the last of 1 + 2 retries: given up
        await rig.at(3000)  # (before the hour of the repeat interval)
        assert len(bad.received) == 3
        report = rig.engine.report()["notifiers"]["broken"]
        assert (report["failed"], report["dropped"], report["sent"]) == (3, 1, 0)
        # All three attempts were the same notification.
        assert len({r.headers["X-Dashboard-Notification"] for r in bad.received}) == 1
        bad.status = 200
        await rig.push("cpu", 10)  # the resolve goes to the notifiers that heard it fire
        assert [events[-1][0] for events in events_of(bad)] == ["firing", "firing", "firing", "resolved"]


@pytest.mark.gen_test(timeout=30)
async def test_a_restart_keeps_firing_alerts_and_tells_nothing_twice(tmp_path, receiver):
    inbox, port = receiver
    clock = Clock()
    text = config_text(port, cpu_alert={"on": ["crit"]})
    rig = Rig(tmp_path, text, clock)
    await rig.open()
    await rig.push("cpu", 95)
    await rig.push("disk", 4)
    assert len(inbox.received) == 2  # the cpu's and the disk's crit (driven time: no race)
    await rig.close()
    told = len(inbox.received)

    # Down for ten minutes; meanwhile the disk recovered (its newest sample says so).
    clock.advance(600)
    rig = Rig(tmp_path, text, clock)
    await rig.store.open()
    latest = await rig.store.latest(["cpu", "disk"])
    (recovered,) = await rig.store.append_many([("disk", 50, "ok", None)])
    latest["disk"] = recovered
    await rig.open(latest)
    try:
        await rig.settle()
        assert rig.firing() == ["cpu:crit"]
        new = events_of(inbox)[told:]
        assert new == [[("resolved", "disk:crit")]]  # resolved while down: told as resolved
        await rig.at(60)
        assert len(inbox.received) == told + 1
        # The repeat clock survived the restart too: an hour after the first message.
        await rig.at(3600 - 660)
        assert events_of(inbox)[-1] == [("repeat", "cpu:crit")]
    finally:
        await rig.close()


@pytest.mark.gen_test(timeout=30)
async def test_staleness_and_failing_sources(tmp_path, receiver):
    inbox, port = receiver
    text = config_text(port, cpu_alert={"on": ["failing", "stale"], "stale_after": 3, "severity": "crit"})
    async with Rig(tmp_path, text, Clock()) as rig:  # the cpu is a push widget expected every 5 s
        await rig.at(14)
        assert rig.firing() == []
        await rig.at(1)  # 15 s without an update
        assert rig.firing() == ["cpu:stale"]
        assert inbox.bodies()[0]["alerts"][0]["message"] == "CPU: no update for 15 s (expected every 5 s)"
        await rig.push("cpu", None, "error", "connection refused")
        assert rig.firing() == ["cpu:failing"]
        assert inbox.bodies()[1]["alerts"][1]["message"] == "CPU: source failing: connection refused"
        assert events_of(inbox)[1] == [("resolved", "cpu:stale"), ("firing", "cpu:failing")]
        await rig.push("cpu", 12)
        assert rig.firing() == []


@pytest.mark.gen_test(timeout=60)
async def test_changes_are_undone_and_retried_when_the_database_is_locked(tmp_path, receiver):
    inbox, port = receiver
    async with Rig(tmp_path, config_text(port, cpu_alert={"on": ["crit"]}), Clock()) as rig:
        samples = await rig.store.append_many([("cpu", 95, "ok", None)])
        # Another process holds SQLite's write lock past the busy timeout.
        blocker = sqlite3.connect(tmp_path / "data" / "test.db", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            rig.engine.observe(samples)
            await rig.engine.evaluate()
            assert rig.firing() == [] and rig.engine.report()["storing"] == "failing"
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await rig.at(1)  # the next round, from the newest sample
        assert rig.firing() == ["cpu:crit"] and rig.engine.report()["storing"] == "ok"
        assert events_of(inbox) == [[("firing", "cpu:crit")]]


def test_engine_module_never_awaits_in_observe():
    """observe() runs inside the recorder's call: it must be a plain function."""
    assert not asyncio.iscoroutinefunction(AlertEngine.observe)


@pytest.mark.gen_test(timeout=60)
async def test_the_same_on_postgresql(tmp_path, receiver, pg_url):
    inbox, port = receiver
    clock = Clock()
    text = config_text(port, cpu_alert={"on": ["crit"]}, storage=pg_url)
    async with Rig(tmp_path, text, clock) as rig:
        await rig.push("cpu", 95)
        await rig.push("disk", 5)
        (cpu,) = [a for a in rig.engine.current() if a["widget"] == "cpu"]
        await rig.engine.acknowledge(cpu["id"], "alice")
        silence = await rig.engine.silence(["disk"], 60, "on purpose", "test")
        assert events_of(inbox) == [[("firing", "cpu:crit")], [("firing", "disk:crit")]]
    async with Rig(tmp_path, text, clock) as rig:
        assert rig.firing() == ["cpu:crit", "disk:crit"]
        assert [a["acked_by"] for a in rig.engine.current()] == ["alice", None]
        assert rig.engine.current()[1]["silenced"] == f"silence {silence.id}"
        await rig.push("cpu", 10)
        await rig.push("disk", 50)
        assert events_of(inbox)[2:] == [[("resolved", "cpu:crit")], [("resolved", "disk:crit")]]
        (row,) = await rig.engine.store.find(widgets=["cpu"])
        assert [e["state"] for e in await rig.engine.store.events(row.id)] == ["firing", "acknowledged", "resolved"]
        sent = await rig.engine.store.notifications()
        assert [n["status"] for n in sent] == ["sent"] * 4
        clock.advance(31 * 86400)
        assert await rig.engine.store.prune(clock() - 30 * 86400) == 2
        assert await rig.engine.store.find() == []
