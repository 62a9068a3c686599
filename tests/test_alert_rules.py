"""The pure parts of alerting, as tables: when a condition holds (thresholds both ways,
with the clear margin, status states, failing sources), one alert's moves with driven
time, maintenance windows in their time zone, and what an alert says."""

from __future__ import annotations

import datetime
from datetime import UTC

import pytest

from dashboard.alerts.rules import Rule, Watch
from dashboard.alerts.silences import Silence, silenced_by, window_active
from dashboard.config.alerts import MaintenanceWindow
from dashboard.core.samples import Sample


def rule(condition: str = "crit", **keys) -> Rule:
    base = dict(
        widget="cpu",
        title="CPU",
        condition=condition,
        severity="crit",
        hold=0.0,
        clear_hold=0.0,
        threshold=90.0,
        falling=False,
        margin=0.0,
        stale_after=15.0,
        every=5.0,
        unit="%",
        decimals=None,
        status_view=False,
    )
    return Rule(**{**base, **keys})


def sample(value, status: str = "ok", message: str | None = None) -> Sample:
    return Sample(1, "cpu", datetime.datetime(2026, 11, 20, tzinfo=UTC), value, status, message)


@pytest.mark.parametrize(
    ("the_rule", "value", "firing", "holds"),
    [
        (rule(), 90, False, True),  # at the line is past it, as the page colours it
        (rule(), 89.9, False, False),
        (rule(margin=5), 86, False, False),  # the margin is for resolving only
        (rule(margin=5), 86, True, True),
        (rule(margin=5), 84.9, True, False),
        (rule(threshold=10.0, falling=True), 10, False, True),  # low is bad
        (rule(threshold=10.0, falling=True), 12, False, False),
        (rule(threshold=10.0, falling=True, margin=5), 14, True, True),
        (rule(threshold=10.0, falling=True, margin=5), 15.1, True, False),
        (rule(), "high", False, None),  # a value that says nothing changes nothing
        (rule(), None, True, None),
        (rule(), True, False, None),
        (rule(), float("nan"), False, None),
        (rule("failing"), 3, False, False),
        (rule("down", status_view=True, threshold=None), {"state": "down"}, False, True),
        (rule("down", status_view=True, threshold=None), "warn", False, False),
        (rule("warn", status_view=True, threshold=None), {"state": "down"}, False, True),
        (rule("warn", status_view=True, threshold=None), {"state": "ok"}, True, False),
        (rule("warn", status_view=True, threshold=None), {"latency_ms": 5}, False, None),
    ],
)
def test_when_a_condition_holds(the_rule, value, firing, holds):
    assert the_rule.holds(sample(value), firing=firing) is holds


def test_a_failing_source_holds_whatever_its_value():
    assert rule("failing").holds(sample(50, "error", "timeout"), firing=False) is True
    assert rule("failing").holds(None, firing=False) is None


def run(watch: Watch, steps) -> list:
    """Each step (seconds from 0, a value or None for "time only"): the transitions made."""
    out = []
    current = None
    for now, value in steps:
        if value is not None:
            current = sample(value)
        out.append(watch.evaluate(current, 0.0, float(now)))
    return out


@pytest.mark.parametrize(
    ("the_rule", "steps", "transitions"),
    [
        # hold: two minutes over the line before it fires; a dip starts it again
        (
            rule(hold=120),
            [(0, 95), (119, None), (120, None), (300, 50)],
            ["pending", None, "firing", "resolved"],
        ),
        (
            rule(hold=120),
            [(0, 95), (100, 85), (110, 95), (229, None), (230, None)],
            ["pending", "cancelled", "pending", None, "firing"],
        ),
        # clear hold: a minute under the line before it resolves; back over starts it again
        (
            rule(clear_hold=60),
            [(0, 95), (10, 50), (69, None), (70, 95), (80, 50), (140, None)],
            ["firing", None, None, None, None, "resolved"],
        ),
        # clear margin: hovering at the line does not flap
        (
            rule(margin=5),
            [(0, 91), (1, 89), (2, 90.5), (3, 86), (4, 84), (5, 89)],
            ["firing", None, None, None, "resolved", None],
        ),
        # a value that says nothing keeps the alert as it is
        (rule(), [(0, 95), (1, "n/a"), (2, None)], ["firing", None, None]),
    ],
)
def test_one_alert_moves_with_driven_time(the_rule, steps, transitions):
    assert run(Watch(the_rule), steps) == transitions


def test_staleness_counts_from_the_last_update():
    watch = Watch(rule("stale", stale_after=15.0))
    assert watch.evaluate(None, seen=100.0, now=114.9) is None
    assert watch.due(seen=100.0) == 115.0
    assert watch.evaluate(None, seen=100.0, now=115.0) == "firing"
    assert watch.evaluate(None, seen=120.0, now=121.0) == "resolved"


@pytest.mark.parametrize(
    ("start", "end", "weekdays", "zone", "moment", "active"),
    [
        ("12:30", "14:00", (4,), "Europe/Berlin", "2026-11-20T11:31Z", True),  # Friday 12:31 in Berlin
        ("12:30", "14:00", (4,), "Europe/Berlin", "2026-11-20T13:00Z", False),  # 14:00 there: over
        ("12:30", "14:00", (4,), "UTC", "2026-11-20T11:31Z", False),
        ("12:30", "14:00", (3,), "Europe/Berlin", "2026-11-20T11:31Z", False),  # Thursday only
        # past midnight: Friday 22:00 to Saturday 02:00
        ("22:00", "02:00", (4,), "UTC", "2026-11-20T23:00Z", True),
        ("22:00", "02:00", (4,), "UTC", "2026-11-21T01:59Z", True),
        ("22:00", "02:00", (4,), "UTC", "2026-11-21T02:00Z", False),
        ("22:00", "02:00", (4,), "UTC", "2026-11-20T01:00Z", False),  # Friday's early hours belong to Thursday
        # local time across the change of clocks: 02:30 on the last Sunday of March does not exist in Berlin
        ("01:00", "03:30", (6,), "Europe/Berlin", "2026-03-29T01:15Z", True),
    ],
)
def test_maintenance_windows_in_their_time_zone(start, end, weekdays, zone, moment, active):
    window = MaintenanceWindow(
        "w", weekdays, datetime.time.fromisoformat(start), datetime.time.fromisoformat(end), zone, None
    )
    now = datetime.datetime.fromisoformat(moment.replace("Z", "+00:00")).timestamp()
    assert window_active(window, now) is active


def test_what_silences_a_widget():
    window = MaintenanceWindow("backups", (0, 1, 2, 3, 4, 5, 6), datetime.time(2), datetime.time(3), "UTC", ("disk",))
    silence = Silence(7, ("cpu",), starts=100.0, ends=200.0)
    at_two = datetime.datetime(2026, 11, 20, 2, 30, tzinfo=UTC).timestamp()
    assert silenced_by("disk", at_two, [window], []) == "backups"
    assert silenced_by("cpu", at_two, [window], []) is None
    assert silenced_by("cpu", 150.0, [], [silence]) == "silence 7"
    assert silenced_by("cpu", 200.0, [], [silence]) is None
    assert silenced_by("disk", 150.0, [], [silence]) is None


@pytest.mark.parametrize(
    ("the_rule", "the_sample", "firing", "message"),
    [
        (rule(), sample(95), True, "CPU 95 % is above crit (90 %)"),
        (rule(), sample(12.5), False, "CPU is back below crit: 12.5 %"),
        (rule(threshold=10.0, falling=True, unit=""), sample(4), True, "CPU 4 is below crit (10)"),
        (rule(decimals=1), sample(95.25), True, "CPU 95.2 % is above crit (90.0 %)"),
        (
            rule("failing"),
            sample(95, "error", "HTTP 503 from https://x"),
            True,
            "CPU: source failing: HTTP 503 from https://x",
        ),
        (rule("failing"), sample(95), False, "CPU: source working again"),
        (
            rule("down", status_view=True, threshold=None),
            sample({"state": "down", "detail": "HTTP 503"}),
            True,
            "CPU is down: HTTP 503",
        ),
        (rule("down", status_view=True, threshold=None), sample("ok"), False, "CPU is ok"),
    ],
)
def test_what_an_alert_says(the_rule, the_sample, firing, message):
    assert the_rule.message(the_sample, firing=firing) == message


def test_what_a_stale_alert_says():
    assert rule("stale").message(None, firing=True, stale_for=15) == "CPU: no update for 15 s (expected every 5 s)"
    assert rule("stale").message(None, firing=True, stale_for=600) == "CPU: no update for 10 min (expected every 5 s)"
    assert rule("stale").message(None, firing=False) == "CPU is updating again"
