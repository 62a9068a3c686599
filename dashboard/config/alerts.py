"""The alerting part of the config: a widget's `alert` table, `[alerts]` (routing and
timing), `[notifiers.<name>]` (where notifications go) and `[[maintenance]]` (when
alerts are silenced); their dataclasses and their builders.

Each builder reads one table and fails with one ConfigError naming the key, what
was expected and what was found. What spans sections (a notifier named by a
widget, a hold time against the retention, a widget named by a window) is checked
last, by check_alert_references, once every section is known.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from email.utils import parseaddr
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .reader import MISSING, ConfigError, Table, error, join, quote, show, table_array

# A widget's alert conditions. warn and crit come from the widget's thresholds (a status
# widget: its "warn" and "down" states); failing: its source fails; stale: no update
# for `stale_after` intervals.
THRESHOLD_CONDITIONS = ("warn", "crit")
STATUS_CONDITIONS = ("warn", "down")
CONDITIONS = ("warn", "crit", "down", "failing", "stale")
SEVERITIES = ("warn", "crit")
NOTIFIER_KINDS = ("webhook", "ntfy", "email", "command")
WEBHOOK_FORMATS = ("json", "slack", "mattermost")
EMAIL_SECURITY = ("starttls", "tls", "none")
EMAIL_PORTS = {"starttls": 587, "tls": 465, "none": 25}
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# What a notification for each kind of event says to ntfy by default (priority 1-5; tags
# that ntfy shows as emoji).
NTFY_PRIORITY = MappingProxyType({"warn": 4, "crit": 5, "resolved": 3})
NTFY_TAGS = MappingProxyType({"warn": ("warning",), "crit": ("rotating_light",), "resolved": ("white_check_mark",)})

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_NAME_RULE = 'letters, digits, "_" and "-" only (1-64 characters)'
_ADDRESS = re.compile(
    r"[^@\s<>\"(),;:]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
)
_CLOCK = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


# --- the dataclasses -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class WidgetAlertConfig:
    """`[widgets.<id>.alert]`: which conditions of the widget alert, and how."""

    on: tuple[str, ...]  # conditions, in CONDITIONS
    hold: float  # `for`: how long a condition must last before the alert fires
    clear_hold: float  # `clear_for`: how long it must be gone before the alert resolves
    clear_margin: float  # a threshold alert resolves only this far back past its threshold
    stale_after: int  # intervals (`every`) without an update that make the widget stale
    severity: str  # of the failing and stale alerts (warn and crit alerts are what they say)
    notify: tuple[str, ...] | None  # notifier names; None: [alerts] notify
    path: str = ""  # "widgets.<id>.alert", for errors found once every section is known


@dataclasses.dataclass(frozen=True)
class AlertsConfig:
    """`[alerts]`: routing and timing shared by every alert."""

    notify: tuple[str, ...] = ()  # the default route: notifiers of widgets without their own `notify`
    group_window: float = 5.0  # alerts that fire within this long go out as one notification
    repeat_interval: float = 4 * 3600.0  # a firing alert nobody acknowledged is sent again this often; 0: never
    timezone: str = "UTC"  # times in notifications, and the default zone of maintenance windows
    url: str = ""  # where people open the dashboards ("https://wall.example.org"), for links in notifications


@dataclasses.dataclass(frozen=True)
class NotifierConfig:
    name: str
    kind: str
    timeout: float  # one attempt takes at most this long
    retries: int  # attempts after the first, with backoff, before a notification is given up


@dataclasses.dataclass(frozen=True)
class WebhookNotifierConfig(NotifierConfig):
    url: str = dataclasses.field(repr=False)  # a webhook's URL is often its secret
    format: str  # json (the documented body), slack or mattermost (incoming webhooks)
    headers: Mapping[str, str] = dataclasses.field(repr=False)  # may hold a secret


@dataclasses.dataclass(frozen=True)
class NtfyNotifierConfig(NotifierConfig):
    url: str = dataclasses.field(repr=False)  # the topic URL, https://ntfy.sh/<topic>: whoever knows it may read
    token: str = dataclasses.field(repr=False)  # an access token (Authorization: Bearer), or ""
    priority: Mapping[str, int]  # warn, crit, resolved -> 1..5
    tags: Mapping[str, tuple[str, ...]]  # warn, crit, resolved -> tags


@dataclasses.dataclass(frozen=True)
class EmailNotifierConfig(NotifierConfig):
    host: str
    port: int
    security: str  # starttls, tls or none
    username: str
    password: str = dataclasses.field(repr=False)
    sender: str  # `from`
    to: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class CommandNotifierConfig(NotifierConfig):
    argv: tuple[str, ...]
    cwd: str
    env: Mapping[str, str] = dataclasses.field(repr=False)  # may hold a secret


@dataclasses.dataclass(frozen=True)
class MaintenanceWindow:
    """`[[maintenance]]`: alerts of these widgets (None: all) are silenced on these weekdays
    from start to end, local time in `timezone`; an end at or before the start is on the
    next day."""

    name: str
    weekdays: tuple[int, ...]  # 0 is Monday
    start: datetime.time
    end: datetime.time
    timezone: str
    widgets: tuple[str, ...] | None


# --- a widget's alert table ------------------------------------------------------------


def widget_alert(
    widget: Table, view: str, warn: float | None, crit: float | None, *, has_source: bool, status_view: bool
) -> WidgetAlertConfig | None:
    """The widget's `alert` table (inline or [widgets.<id>.alert]), checked against the
    widget itself; None when there is none."""
    t = widget.table("alert", None)
    if t is None:
        return None
    thresholds = tuple(name for name, limit in (("warn", warn), ("crit", crit)) if limit is not None)
    default_on = STATUS_CONDITIONS if status_view else thresholds or ("failing",)
    on = t.str_list("on", default_on)
    _check_conditions(t, on, widget.path, thresholds, has_source=has_source, status_view=status_view)
    alert = WidgetAlertConfig(
        on=on,
        hold=t.duration("for", "0s"),
        clear_hold=t.duration("clear_for", "0s"),
        clear_margin=t.number("clear_margin", 0, min=0),
        stale_after=t.int("stale_after", 3, min=1, max=10000),
        severity=t.str("severity", "warn", choices=SEVERITIES),
        notify=t.str_list("notify", None),
        path=t.path,
    )
    thresholded = set(on) & set(THRESHOLD_CONDITIONS) and not status_view
    if alert.clear_margin and not thresholded:
        raise t.error("clear_margin", 'applies to "warn" and "crit" thresholds only, and this alert has none')
    _check_names(t, "notify", alert.notify or ())
    t.done()
    return alert


def _check_conditions(
    t: Table, on: Sequence[str], widget_path: str, thresholds: tuple[str, ...], *, has_source: bool, status_view: bool
) -> None:
    if not on:
        raise t.error("on", f"expected at least one of: {', '.join(CONDITIONS)}, got an empty array")
    for index, condition in enumerate(on):
        where = join(join(t.path, "on"), index)
        if condition not in CONDITIONS:
            raise error(t.file, where, f"expected one of: {', '.join(CONDITIONS)}, got {show(condition)}")
        if condition in on[:index]:
            raise error(t.file, where, f"duplicate condition {quote(condition)}")
        problem = _condition_problem(condition, widget_path, thresholds, has_source=has_source, status_view=status_view)
        if problem:
            raise error(t.file, where, problem)


def _condition_problem(
    condition: str, widget_path: str, thresholds: tuple[str, ...], *, has_source: bool, status_view: bool
) -> str | None:
    if condition in ("failing", "stale"):
        return None if has_source else f"{quote(condition)} needs a widget with a source, and this one has none"
    if status_view:
        if condition == "crit":
            return 'a status widget alerts on its states: use "warn" or "down", not "crit"'
        return None
    if condition == "down":
        return '"down" is a state of status widgets: use "crit" for a threshold'
    if condition not in thresholds:
        return f"{quote(condition)} needs a {condition} threshold on the widget ({join(widget_path, condition)})"
    return None


# --- [alerts] ---------------------------------------------------------------------------


def alerts_section(t: Table) -> AlertsConfig:
    alerts = AlertsConfig(
        notify=t.str_list("notify", ()),
        group_window=t.duration("group_window", "5s", most="1h"),
        repeat_interval=t.duration("repeat_interval", "4h"),
        timezone=_timezone(t, "timezone", "UTC"),
        url=t.str("url", ""),
    )
    _check_names(t, "notify", alerts.notify)
    if alerts.url and not _http_url(alerts.url):
        raise t.error(
            "url", f'expected an http:// or https:// URL like "https://wall.example.org", got {show(alerts.url)}'
        )
    t.done()
    return alerts


def _timezone(t: Table, key: str, default: str) -> str:
    name = t.str(key, default)
    if not _known_zone(name):
        raise t.error(key, f'expected an IANA time zone like "Europe/Berlin" or "UTC", got {show(name)}')
    return name


def _known_zone(name: str) -> bool:
    if not name or name.startswith("/") or ".." in name:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _check_names(t: Table, key: str, names: Sequence[str]) -> None:
    for index, name in enumerate(names):
        if name in names[:index]:
            raise error(t.file, join(join(t.path, key), index), f"duplicate notifier {show(name)}")


# --- [notifiers.<name>] ---------------------------------------------------------------


def notifiers_section(t: Table, base_dir: Path) -> Mapping[str, NotifierConfig]:
    notifiers: dict[str, NotifierConfig] = {}
    for name in t:
        if not _NAME.fullmatch(name):
            raise error(t.file, join(t.path, name), f"invalid name {show(name)}: use {_NAME_RULE}")
        notifiers[name] = _notifier(name, t.table(name), base_dir)
    return MappingProxyType(notifiers)


def _notifier(name: str, t: Table, base_dir: Path) -> NotifierConfig:
    kind = t.str("kind", choices=NOTIFIER_KINDS)
    common: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "timeout": t.duration("timeout", "10s", positive=True),
        "retries": t.int("retries", 8, min=0, max=30),
    }
    builder = {"webhook": _webhook, "ntfy": _ntfy, "email": _email, "command": _command}[kind]
    notifier = builder(t, common, base_dir)
    t.done()
    return notifier


def _strings(t: Table, key: str, default: Any = MISSING) -> tuple[str, ...]:
    # Table.str_list's annotation names `str` inside a class with a method of that name.
    return cast(tuple[str, ...], t.str_list(key, default))


def _http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _url(t: Table, example: str) -> str:
    url = t.str("url")
    if not _http_url(url):
        # Only the scheme and host: the rest of a webhook URL is often its secret.
        parts = urlsplit(url)
        if parts.scheme:
            shown = f"{parts.scheme}://{parts.hostname or ''}/..."
        else:
            shown = url.split("/", 1)[0] + ("/..." if "/" in url else "")
        raise t.error("url", f"expected an http:// or https:// URL like {quote(example)}, got {show(shown)}")
    return url


def _token(t: Table) -> str:
    token = t.str("token", "")
    if any(c in token for c in "\r\n\0"):  # sent as a header; a secret: not echoed
        raise t.error("token", "a token cannot contain line breaks or NUL")
    return token


def _webhook(t: Table, common: dict[str, Any], base_dir: Path) -> WebhookNotifierConfig:
    return WebhookNotifierConfig(
        **common,
        url=_url(t, "https://hooks.example.org/alerts"),
        format=t.str("format", "json", choices=WEBHOOK_FORMATS),
        headers=MappingProxyType(t.headers("headers")),
    )


def _ntfy(t: Table, common: dict[str, Any], base_dir: Path) -> NtfyNotifierConfig:
    url = _url(t, "https://ntfy.sh/my-alerts")
    if not urlsplit(url).path.strip("/") or urlsplit(url).query:
        raise t.error("url", f'expected a topic URL like "https://ntfy.sh/my-alerts", got {show(url)}')
    priorities = t.table("priority", {})
    tags = t.table("tags", {})
    notifier = NtfyNotifierConfig(
        **common,
        url=url.rstrip("/"),
        token=_token(t),
        priority=MappingProxyType(
            {event: priorities.int(event, default, min=1, max=5) for event, default in NTFY_PRIORITY.items()}
        ),
        tags=MappingProxyType({event: tags.str_list(event, default) for event, default in NTFY_TAGS.items()}),
    )
    priorities.done()
    tags.done()
    return notifier


def _email(t: Table, common: dict[str, Any], base_dir: Path) -> EmailNotifierConfig:
    host = t.str("host")
    if not host or any(c.isspace() or c in "/@" for c in host):
        raise t.error("host", f'expected a host name like "smtp.example.org", got {show(host)}')
    security = t.str("security", "starttls", choices=EMAIL_SECURITY)
    notifier = EmailNotifierConfig(
        **common,
        host=host,
        port=t.int("port", EMAIL_PORTS[security], min=1, max=65535),
        security=security,
        username=t.str("username", ""),
        password=t.str("password", ""),
        sender=_address(t, "from"),
        to=_addresses(t, "to"),
    )
    if notifier.password and not notifier.username:
        raise t.error("password", "needs a username (the account to log in as)")
    return notifier


def is_address(text: str) -> bool:
    """An e-mail address, bare or as `Name <address>`."""
    if not isinstance(text, str) or "\n" in text or "\r" in text:
        return False
    _, address = parseaddr(text)
    return bool(address) and _ADDRESS.fullmatch(address) is not None


def _address(t: Table, key: str) -> str:
    text = t.str(key)
    if not is_address(text):
        raise t.error(key, f'expected an e-mail address like "alerts@example.org", got {show(text)}')
    return text


def _addresses(t: Table, key: str) -> tuple[str, ...]:
    raw = t.raw(key)
    addresses = (raw,) if isinstance(raw, str) else t.str_list(key)
    if not addresses:
        raise t.error(key, 'expected at least one address, like ["oncall@example.org"]')
    for index, text in enumerate(addresses):
        if not is_address(text):
            where = join(join(t.path, key), index) if not isinstance(raw, str) else join(t.path, key)
            raise error(t.file, where, f'expected an e-mail address like "oncall@example.org", got {show(text)}')
    return addresses


def _command(t: Table, common: dict[str, Any], base_dir: Path) -> CommandNotifierConfig:
    argv = _strings(t, "argv")
    if not argv or not argv[0]:
        raise t.error(
            "argv", 'expected a program and its arguments, like ["/usr/local/bin/page-oncall", "--team", "ops"]'
        )
    cwd = str(base_dir / t.str("cwd", "."))
    program = argv[0]
    found = shutil.which(program, path=os.environ.get("PATH")) if os.sep not in program else None
    if os.sep in program:
        path = Path(cwd) / program
        found = str(path) if path.is_file() and os.access(path, os.X_OK) else None
    if found is None:
        raise t.error("argv", f"program {show(program)} not found (not on PATH, or not executable)")
    return CommandNotifierConfig(**common, argv=argv, cwd=cwd, env=MappingProxyType(t.environment("env")))


# --- [[maintenance]] -----------------------------------------------------------------


def maintenance_section(root: Table, default_zone: str) -> tuple[MaintenanceWindow, ...]:
    windows = []
    for index, t in enumerate(table_array(root, "maintenance")):
        window = MaintenanceWindow(
            name=t.str("name", f"maintenance {index + 1}"),
            weekdays=_weekdays(t),
            start=_clock(t, "start"),
            end=_clock(t, "end"),
            timezone=_timezone(t, "timezone", default_zone),
            widgets=t.str_list("widgets", None),
        )
        if window.start == window.end:
            raise t.error("end", f"expected a time other than the start ({window.start:%H:%M}), got the same")
        if window.widgets is not None and not window.widgets:
            raise t.error("widgets", "expected at least one widget id (leave the key out for every widget)")
        t.done()
        windows.append(window)
    return tuple(windows)


def _weekdays(t: Table) -> tuple[int, ...]:
    names = _strings(t, "weekdays", WEEKDAYS)
    if not names:
        raise t.error("weekdays", f"expected at least one of: {', '.join(WEEKDAYS)}, got an empty array")
    for index, name in enumerate(names):
        if name.lower() not in WEEKDAYS:
            where = join(join(t.path, "weekdays"), index)
            raise error(t.file, where, f"expected one of: {', '.join(WEEKDAYS)}, got {show(name)}")
    return tuple(sorted({WEEKDAYS.index(name.lower()) for name in names}))


def _clock(t: Table, key: str) -> datetime.time:
    value = t.raw(key)
    if isinstance(value, datetime.time) and not value.tzinfo:
        return value.replace(second=0, microsecond=0)
    match = _CLOCK.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise t.error(key, f'expected a time of day like "02:30" (24-hour clock), got {show(value)}')
    return datetime.time(int(match[1]), int(match[2]))


# --- across sections ---------------------------------------------------------------


def check_alert_references(
    file: str,
    alerts: AlertsConfig,
    notifiers: Mapping[str, NotifierConfig],
    widget_alerts: Mapping[str, WidgetAlertConfig],
    windows: Sequence[MaintenanceWindow],
    widget_ids: Sequence[str],
    retention: float,
    retention_text: str,
) -> None:
    """Names that must exist (notifiers, widgets) and hold times that must fit the retention."""
    known = ", ".join(notifiers) or "none: add a [notifiers.<name>] table"
    for index, name in enumerate(alerts.notify):
        if name not in notifiers:
            raise error(file, f"alerts.notify[{index}]", f"unknown notifier {show(name)} (expected one of: {known})")
    for alert in widget_alerts.values():
        for index, name in enumerate(alert.notify or ()):
            if name not in notifiers:
                where = join(join(alert.path, "notify"), index)
                raise error(file, where, f"unknown notifier {show(name)} (expected one of: {known})")
        for key, seconds in (("for", alert.hold), ("clear_for", alert.clear_hold)):
            if seconds > retention:
                raise error(
                    file,
                    join(alert.path, key),
                    f"expected a duration no longer than [storage] retention ({quote(retention_text)}), "
                    f"got {quote(duration_text(seconds))}",
                )
    for index, window in enumerate(windows):
        for widget_index, widget_id in enumerate(window.widgets or ()):
            if widget_id not in widget_ids:
                raise error(file, f"maintenance[{index}].widgets[{widget_index}]", f"unknown widget {show(widget_id)}")


def duration_text(seconds: float) -> str:
    """Seconds as the config writes them: 172800 -> "2d", 90 -> "90s"."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s" if seconds >= 1 else f"{seconds * 1000:g}ms"


def describe_notifier(notifier: NotifierConfig) -> str:
    """Where a notifier sends, without a secret: for logs and `notify-test`."""
    if isinstance(notifier, (WebhookNotifierConfig, NtfyNotifierConfig)):
        parts = urlsplit(notifier.url)
        return f"{notifier.kind} to {parts.scheme}://{parts.netloc.rpartition('@')[2]}{'/...' if parts.path.strip('/') else '/'}"
    if isinstance(notifier, EmailNotifierConfig):
        return f"email through {notifier.host}:{notifier.port} to {', '.join(parseaddr(a)[1] for a in notifier.to)}"
    if isinstance(notifier, CommandNotifierConfig):
        return f"command {notifier.argv[0]}"
    raise ConfigError(f"unknown notifier kind {notifier.kind!r}")  # pragma: no cover: the builders know every kind
