"""The alerting config: widget alert tables, [alerts], [notifiers.<name>] and
[[maintenance]], read into dataclasses; every mistake one precise line, from
load_config and from `run.py check`."""

from __future__ import annotations

import datetime
import subprocess
import sys
from pathlib import Path

import pytest

from dashboard.config import ConfigError, load_config
from tests.alerting import alert_table, notifier
from tests.configs import dashboard, loopback_server, push_widget, table, widget
from tests.helpers import write_config

ROOT = Path(__file__).resolve().parent.parent

BASE = (
    loopback_server()
    + dashboard("main", ["cpu", "site", "note"])
    + push_widget("cpu", "meter", warn=70, crit=90)
    + push_widget("site", "status")
    + push_widget("note", "text")
    + widget("clock", "clock")
)
HOOK = notifier("hook", "webhook", url="https://hooks.example.org/T0/B0/secret")


def load(tmp_path: Path, text: str):
    return load_config(write_config(tmp_path, text))


def error_of(tmp_path: Path, text: str) -> str:
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message[len(f"{path}: ") :]


def test_everything_read_with_its_defaults(tmp_path):
    text = (
        BASE
        + HOOK
        + table("alerts", notify=["hook"])
        + alert_table("cpu", hold="2m", clear_for="30s", clear_margin=5, notify=["mail"])
        + alert_table("site")
        + alert_table("note", on=["failing", "stale"], stale_after=4, severity="crit")
        + notifier("mail", "email", host="smtp.example.org", to="oncall@example.org", **{"from": "a@example.org"})
        + notifier("phone", "ntfy", url="https://ntfy.sh/ops-alerts/", tags={"crit": ["skull"]})
        + notifier("pager", "command", argv=[sys.executable, "-V"], env={"TEAM": "ops"})
        + '\n[[maintenance]]\nstart = 22:30:00\nend = "01:15"\nweekdays = ["Fri", "sat"]\nwidgets = ["cpu"]\n'
    )
    config = load(tmp_path, text)
    cpu = config.widgets["cpu"].alert
    assert (cpu.on, cpu.hold, cpu.clear_hold, cpu.clear_margin, cpu.notify) == (
        ("warn", "crit"),
        120.0,
        30.0,
        5,
        ("mail",),
    )
    assert config.widgets["site"].alert.on == ("warn", "down")
    note = config.widgets["note"].alert
    assert (note.on, note.stale_after, note.severity, note.notify) == (("failing", "stale"), 4, "crit", None)
    assert config.widgets["clock"].alert is None
    assert config.alerts.notify == ("hook",) and config.alerts.group_window == 5.0
    assert config.alerts.repeat_interval == 4 * 3600.0 and config.alerts.timezone == "UTC"
    mail = config.notifiers["mail"]
    assert (mail.port, mail.security, mail.to, mail.timeout, mail.retries) == (
        587,
        "starttls",
        ("oncall@example.org",),
        10.0,
        8,
    )
    phone = config.notifiers["phone"]
    assert phone.url == "https://ntfy.sh/ops-alerts"
    assert dict(phone.priority) == {"warn": 4, "crit": 5, "resolved": 3}
    assert dict(phone.tags) == {"warn": ("warning",), "crit": ("skull",), "resolved": ("white_check_mark",)}
    assert config.notifiers["pager"].env["TEAM"] == "ops"
    (window,) = config.maintenance
    assert (window.weekdays, window.start, window.end, window.widgets, window.timezone) == (
        (4, 5),
        datetime.time(22, 30),
        datetime.time(1, 15),
        ("cpu",),
        "UTC",
    )
    assert "secret" not in repr(config.notifiers)  # no notifier's repr shows a password, token or header


ERRORS = [
    (
        "an alert on a widget named alert",
        BASE.replace("[widgets.note]", "[widgets.alert]").replace('"note"]', '"alert"]'),
        'widgets.alert: "alert" is reserved for control events; pick another widget id',
    ),
    (
        "unknown key",
        BASE + alert_table("cpu", hold="1m", hodl="2m"),
        'widgets.cpu.alert: unknown key "hodl" (expected one of: on, for, clear_for, clear_margin, stale_after, severity, notify)',
    ),
    (
        "unknown condition",
        BASE + alert_table("cpu", on=["hot"]),
        'widgets.cpu.alert.on[0]: expected one of: warn, crit, down, failing, stale, got "hot"',
    ),
    (
        "no such threshold",
        BASE.replace("warn = 70\n", "") + alert_table("cpu", on=["warn"]),
        'widgets.cpu.alert.on[0]: "warn" needs a warn threshold on the widget (widgets.cpu.warn)',
    ),
    (
        "crit on a status widget",
        BASE + alert_table("site", on=["crit"]),
        'widgets.site.alert.on[0]: a status widget alerts on its states: use "warn" or "down", not "crit"',
    ),
    (
        "down on a number",
        BASE + alert_table("cpu", on=["down"]),
        'widgets.cpu.alert.on[0]: "down" is a state of status widgets: use "crit" for a threshold',
    ),
    (
        "failing without a source",
        BASE + alert_table("clock", on=["failing"]),
        'widgets.clock.alert.on[0]: "failing" needs a widget with a source, and this one has none',
    ),
    (
        "duplicate condition",
        BASE + alert_table("cpu", on=["crit", "crit"]),
        'widgets.cpu.alert.on[1]: duplicate condition "crit"',
    ),
    (
        "empty conditions",
        BASE + alert_table("cpu", on=[]),
        "widgets.cpu.alert.on: expected at least one of: warn, crit, down, failing, stale, got an empty array",
    ),
    (
        "bad hold",
        BASE + alert_table("cpu", hold="soon"),
        'widgets.cpu.alert.for: expected a duration like "5s", "2m" or "1h30m", got "soon"',
    ),
    (
        "clear margin without thresholds",
        BASE + alert_table("note", clear_margin=2),
        'widgets.note.alert.clear_margin: applies to "warn" and "crit" thresholds only, and this alert has none',
    ),
    (
        "negative margin",
        BASE + alert_table("cpu", clear_margin=-1),
        "widgets.cpu.alert.clear_margin: expected a number >= 0, got -1",
    ),
    (
        "bad severity",
        BASE + alert_table("note", severity="page"),
        'widgets.note.alert.severity: expected one of: warn, crit, got "page"',
    ),
    (
        "hold longer than the retention",
        BASE + alert_table("cpu", hold="45d"),
        'widgets.cpu.alert.for: expected a duration no longer than [storage] retention ("30d"), got "45d"',
    ),
    (
        "clear hold longer than the retention",
        BASE.replace("[storage]\n", '[storage]\nretention = "1h"\n') + alert_table("cpu", clear_for="2h"),
        'widgets.cpu.alert.clear_for: expected a duration no longer than [storage] retention ("1h"), got "2h"',
    ),
    (
        "unknown notifier of a widget",
        BASE + HOOK + alert_table("cpu", notify=["hook", "mail"]),
        'widgets.cpu.alert.notify[1]: unknown notifier "mail" (expected one of: hook)',
    ),
    (
        "unknown notifier of the default route",
        BASE + table("alerts", notify=["ops"]),
        'alerts.notify[0]: unknown notifier "ops" (expected one of: none: add a [notifiers.<name>] table)',
    ),
    (
        "duplicate notifier",
        BASE + HOOK + alert_table("cpu", notify=["hook", "hook"]),
        'widgets.cpu.alert.notify[1]: duplicate notifier "hook"',
    ),
    (
        "bad time zone",
        BASE + table("alerts", timezone="Mars/Olympus"),
        'alerts.timezone: expected an IANA time zone like "Europe/Berlin" or "UTC", got "Mars/Olympus"',
    ),
    (
        "bad alerts url",
        BASE + table("alerts", url="wall.example.org"),
        'alerts.url: expected an http:// or https:// URL like "https://wall.example.org", got "wall.example.org"',
    ),
    (
        "notifier without kind",
        BASE + table("notifiers.x", url="https://x.example.org"),
        "notifiers.x.kind: missing (expected one of: webhook, ntfy, email, command)",
    ),
    (
        "bad notifier name",
        BASE + notifier('"a b"', "webhook", url="https://x.example.org"),
        'notifiers."a b": invalid name "a b": use letters, digits, "_" and "-" only (1-64 characters)',
    ),
    (
        "bad webhook url",
        BASE + notifier("x", "webhook", url="ftp://files.example.org/secret"),
        'notifiers.x.url: expected an http:// or https:// URL like "https://hooks.example.org/alerts", got "ftp://files.example.org/..."',
    ),
    (
        "bad webhook format",
        BASE + notifier("x", "webhook", url="https://x.example.org", format="teams"),
        'notifiers.x.format: expected one of: json, slack, mattermost, got "teams"',
    ),
    (
        "a line break in a webhook header",
        BASE
        + notifier("x", "webhook", url="https://x.example.org", headers={"Authorization": "Bearer a\r\nX-Injected: 1"}),
        "notifiers.x.headers.Authorization: a header value cannot contain line breaks or NUL",
    ),
    (
        "a line break in an ntfy token",
        BASE + notifier("x", "ntfy", url="https://ntfy.sh/t", token="tk_a\nb"),
        "notifiers.x.token: a token cannot contain line breaks or NUL",
    ),
    (
        "a group window longer than an hour",
        BASE.replace("[alerts]\n", '[alerts]\ngroup_window = "2h"\n')
        if "[alerts]\n" in BASE
        else BASE + '[alerts]\ngroup_window = "2h"\n',
        'alerts.group_window: expected a duration of at most "1h", got "2h"',
    ),
    (
        "ntfy without a topic",
        BASE + notifier("x", "ntfy", url="https://ntfy.sh/"),
        'notifiers.x.url: expected a topic URL like "https://ntfy.sh/my-alerts", got "https://ntfy.sh/"',
    ),
    (
        "ntfy priority",
        BASE + notifier("x", "ntfy", url="https://ntfy.sh/t", priority={"crit": 9}),
        "notifiers.x.priority.crit: expected an integer from 1 to 5, got 9",
    ),
    (
        "ntfy priority key",
        BASE + notifier("x", "ntfy", url="https://ntfy.sh/t", priority={"fatal": 5}),
        'notifiers.x.priority: unknown key "fatal" (expected one of: warn, crit, resolved)',
    ),
    (
        "bad recipient",
        BASE
        + notifier("m", "email", host="smtp.example.org", to=["ops@example.org", "bob@"], **{"from": "a@example.org"}),
        'notifiers.m.to[1]: expected an e-mail address like "oncall@example.org", got "bob@"',
    ),
    (
        "no recipient",
        BASE + notifier("m", "email", host="smtp.example.org", to=[], **{"from": "a@example.org"}),
        'notifiers.m.to: expected at least one address, like ["oncall@example.org"]',
    ),
    (
        "bad sender",
        BASE + notifier("m", "email", host="smtp.example.org", to="a@example.org", **{"from": "dashboard"}),
        'notifiers.m.from: expected an e-mail address like "alerts@example.org", got "dashboard"',
    ),
    (
        "bad security",
        BASE
        + notifier(
            "m", "email", host="smtp.example.org", to="a@example.org", security="ssl", **{"from": "a@example.org"}
        ),
        'notifiers.m.security: expected one of: starttls, tls, none, got "ssl"',
    ),
    (
        "password without a user",
        BASE
        + notifier(
            "m", "email", host="smtp.example.org", to="a@example.org", password="x", **{"from": "a@example.org"}
        ),
        "notifiers.m.password: needs a username (the account to log in as)",
    ),
    (
        "missing program",
        BASE + notifier("p", "command", argv=["no-such-pager-program"]),
        'notifiers.p.argv: program "no-such-pager-program" not found (not on PATH, or not executable)',
    ),
    (
        "bad timeout",
        BASE + notifier("x", "webhook", url="https://x.example.org", timeout="0s"),
        'notifiers.x.timeout: expected a duration greater than 0, got "0s"',
    ),
    (
        "too many retries",
        BASE + notifier("x", "webhook", url="https://x.example.org", retries=100),
        "notifiers.x.retries: expected an integer from 0 to 30, got 100",
    ),
    (
        "window time",
        BASE + '\n[[maintenance]]\nstart = "25:00"\nend = "02:00"\n',
        'maintenance[0].start: expected a time of day like "02:30" (24-hour clock), got "25:00"',
    ),
    (
        "window weekday",
        BASE + '\n[[maintenance]]\nstart = "01:00"\nend = "02:00"\nweekdays = ["monday"]\n',
        'maintenance[0].weekdays[0]: expected one of: mon, tue, wed, thu, fri, sat, sun, got "monday"',
    ),
    (
        "window of no length",
        BASE + '\n[[maintenance]]\nstart = "01:00"\nend = "01:00"\n',
        "maintenance[0].end: expected a time other than the start (01:00), got the same",
    ),
    (
        "window widget",
        BASE + '\n[[maintenance]]\nstart = "01:00"\nend = "02:00"\nwidgets = ["cpu", "gpu"]\n',
        'maintenance[0].widgets[1]: unknown widget "gpu"',
    ),
    (
        "window zone",
        BASE + '\n[[maintenance]]\nstart = "01:00"\nend = "02:00"\ntimezone = "Nowhere"\n',
        'maintenance[0].timezone: expected an IANA time zone like "Europe/Berlin" or "UTC", got "Nowhere"',
    ),
    (
        "dashboard opt-in",
        BASE.replace('id = "main"\n', 'id = "main"\nalert_sound = "yes"\n'),
        'dashboards[0].alert_sound: expected true or false, got "yes"',
    ),
]


@pytest.mark.parametrize(("case", "text", "expected"), ERRORS, ids=[case for case, _, _ in ERRORS])
def test_each_mistake_is_one_precise_line(tmp_path, case, text, expected):
    assert error_of(tmp_path, text) == expected


def test_a_secret_in_a_url_never_shows_in_an_error(tmp_path):
    message = error_of(tmp_path, BASE + notifier("x", "webhook", url="hooks.example.org/T0/s3cr3t"))
    assert message.endswith('got "hooks.example.org/..."')


def test_run_py_check_reports_an_unknown_notifier_in_one_line(tmp_path):
    path = write_config(tmp_path, BASE + HOOK + alert_table("cpu", notify=["hok"]))
    result = subprocess.run(
        [sys.executable, "run.py", "check", "--config", str(path)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert (
        result.stderr == f'error: {path}: widgets.cpu.alert.notify[0]: unknown notifier "hok" (expected one of: hook)\n'
    )
    good = write_config(tmp_path, BASE + HOOK + alert_table("cpu", notify=["hook"]), name="good.toml")
    result = subprocess.run(
        [sys.executable, "run.py", "check", "--config", str(good)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{good}: ok (1 dashboard(s), 4 widget(s), 2 alert rule(s), 1 notifier(s))\n"


def test_notifier_secrets_come_from_the_environment(tmp_path):
    text = (
        BASE
        + notifier("ops", "webhook", url="https://hooks.example.org/${HOOK_PATH}", headers={"X-Key": "${HOOK_KEY}"})
        + notifier(
            "mail",
            "email",
            host="smtp.example.org",
            username="alerts",
            password="${SMTP_PASSWORD}",
            to="a@example.org",
            **{"from": "a@example.org"},
        )
    )
    path = write_config(tmp_path, text)
    env = {"HOOK_PATH": "T0/B0/xyz", "HOOK_KEY": "k3y", "SMTP_PASSWORD": "pa55"}
    config = load_config(path, env=env)
    assert config.notifiers["ops"].url == "https://hooks.example.org/T0/B0/xyz"
    assert config.notifiers["ops"].headers["X-Key"] == "k3y"
    assert config.notifiers["mail"].password == "pa55"
    with pytest.raises(ConfigError) as missing:
        load_config(path, env={"HOOK_PATH": "x", "HOOK_KEY": "y"})
    assert str(missing.value) == f"{path}: notifiers.mail.password: environment variable SMTP_PASSWORD is not set"
