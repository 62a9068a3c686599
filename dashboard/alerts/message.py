"""What a notification says: its title and plain text (short lines, read on a phone),
and the bodies each kind sends (the documented webhook JSON, Slack's and
Mattermost's incoming webhooks, ntfy's JSON).

A notification holds one or more items: an alert that fires, fires still (a
repeat), resolved, or a test. Each item carries the alert as it was when the
notification was decided (the outbox payload), so that a notification sent again
after a restart says the same thing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from .. import __version__
from ..config import Config

WEBHOOK_VERSION = 1
# What each event is called in a title and at the head of its lines.
EVENT_WORDS = {"firing": "FIRING", "repeat": "STILL FIRING", "resolved": "RESOLVED", "test": "TEST"}


@dataclass(frozen=True)
class Item:
    event: str  # firing, repeat, resolved or test
    alert: dict[str, Any]  # the alert's public form (AlertRecord.public), as it was


@dataclass(frozen=True)
class Message:
    uid: str  # the notification id: the same on every attempt, for receivers to drop repeats
    items: tuple[Item, ...]
    timezone: str = "UTC"
    url: str = ""  # [alerts] url: where the dashboards are, for links
    dashboards: dict[str, str] = field(default_factory=dict)  # widget -> the first dashboard showing it

    @property
    def status(self) -> str:
        """firing while any of it fires; resolved when all of it resolved; test."""
        events = {item.event for item in self.items}
        if events <= {"test"}:
            return "test"
        return "firing" if events & {"firing", "repeat"} else "resolved"

    @property
    def severity(self) -> str:
        """The worst severity of what fires in it (of everything, when nothing fires)."""
        firing = [item for item in self.items if item.event in ("firing", "repeat")] or list(self.items)
        return "crit" if any(item.alert.get("severity") == "crit" for item in firing) else "warn"

    def link(self, alert: dict[str, Any]) -> str | None:
        dashboard = self.dashboards.get(alert.get("widget", ""))
        if not self.url or dashboard is None:
            return None
        return f"{self.url.rstrip('/')}/d/{dashboard}"

    # --- words -------------------------------------------------------------------------

    def title(self) -> str:
        """ "[CRIT] CPU: firing", or "[CRIT] 2 alerts: 1 firing, 1 resolved"."""
        if self.status == "test":
            return "Test notification from the dashboard"
        severity = f"[{self.severity.upper()}]"
        if len(self.items) == 1:
            item = self.items[0]
            return f"{severity} {item.alert.get('title')}: {EVENT_WORDS[item.event].lower()}"
        counts: dict[str, int] = {}
        for item in self.items:
            word = "firing" if item.event in ("firing", "repeat") else item.event
            counts[word] = counts.get(word, 0) + 1
        listed = ", ".join(f"{n} {word}" for word, n in counts.items())
        return f"{severity} {len(self.items)} alerts: {listed}"

    def text(self, bold: tuple[str, str] = ("", "")) -> str:
        """The plain text: a block of short lines per alert; `bold` wraps each block's
        first line (Slack's "*", Markdown's "**")."""
        blocks = [self._block(item, bold) for item in self.items]
        return "\n\n".join(blocks) + f"\n\nnotification {self.uid}"

    def _block(self, item: Item, bold: tuple[str, str]) -> str:
        alert = item.alert
        if item.event == "test":
            return f"{bold[0]}TEST{bold[1]}\n{alert.get('message')}"
        head = f"{EVENT_WORDS[item.event]} · {str(alert.get('severity', '')).upper()} · {alert.get('title')}"
        lines = [f"{bold[0]}{head}{bold[1]}", str(alert.get("message") or "")]
        if item.event == "resolved":
            lines.append(f"fired {self._when(alert.get('fired_at'))}, resolved {self._when(alert.get('resolved_at'))}")
        else:
            lines.append(f"since {self._when(alert.get('fired_at') or alert.get('started_at'))}")
        if alert.get("acked_by"):
            lines.append(f"acknowledged by {alert['acked_by']}")
        link = self.link(alert)
        if link:
            lines.append(link)
        return "\n".join(lines)

    def _when(self, stamp: str | None) -> str:
        if not stamp:
            return "-"
        moment = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        local = moment.astimezone(ZoneInfo(self.timezone))
        return f"{local:%H:%M} {local:%d %b} ({self.timezone})"

    # --- bodies ----------------------------------------------------------------------

    def webhook_json(self) -> dict[str, Any]:
        """The documented body of a webhook (format = "json") and of a command's stdin."""
        return {
            "id": self.uid,
            "version": WEBHOOK_VERSION,
            "status": self.status,
            "severity": self.severity,
            "title": self.title(),
            "text": self.text(),
            "alerts": [
                {"event": item.event, **_without(item.alert, "silenced"), "url": self.link(item.alert)}
                for item in self.items
            ],
            "sender": f"dashboard {__version__}",
        }

    def slack_json(self) -> dict[str, Any]:
        # Slack's mrkdwn: *bold*; an incoming webhook takes {"text": ...}.
        return {"text": f"*{self.title()}*\n\n" + self.text(("*", "*"))}

    def mattermost_json(self) -> dict[str, Any]:
        # Mattermost's incoming webhooks take {"text": ...} in Markdown: **bold**.
        return {"text": f"#### {self.title()}\n\n" + self.text(("**", "**")), "username": "dashboard"}

    def ntfy_json(self, topic: str, priority: dict[str, int], tags: dict[str, Sequence[str]]) -> dict[str, Any]:
        event = "resolved" if self.status == "resolved" else self.severity
        body: dict[str, Any] = {
            "topic": topic,
            "title": self.title(),
            "message": self.text(),
            "priority": priority.get(event, 3),
            "tags": list(tags.get(event, ())),
        }
        links = [link for link in (self.link(item.alert) for item in self.items) if link]
        if links:
            body["click"] = links[0]
        return body


def _without(alert: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {key: value for key, value in alert.items() if key not in keys}


def first_dashboards(config: Config) -> dict[str, str]:
    """widget -> the first dashboard that shows it, for links."""
    out: dict[str, str] = {}
    for dashboard in config.dashboards:
        for widget in dashboard.widgets:
            out.setdefault(widget, dashboard.id)
    return out


def message_for(config: Config, uid: str, items: Sequence[Item]) -> Message:
    return Message(uid, tuple(items), config.alerts.timezone, config.alerts.url, first_dashboards(config))


def trial_message(config: Config, notifier: str, now: float) -> Message:
    """What `run.py notify-test NAME` sends."""
    stamp = datetime.fromtimestamp(now, UTC)
    alert = {
        "id": None,
        "widget": None,
        "title": "test",
        "severity": "warn",
        "state": "test",
        "message": f"notifier {notifier!r} works: this is a test sent at {stamp:%Y-%m-%d %H:%M:%S} UTC",
    }
    return message_for(config, str(uuid.uuid4()), [Item("test", alert)])
