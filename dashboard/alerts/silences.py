"""Silences: maintenance windows from the config (weekdays and times of day in a time
zone) and ad hoc ones from the API (widgets, from now for a while). Pure: every
question comes with `now` (epoch seconds).

A silenced alert still fires, shows on the page (marked as silenced) and is kept in
the history; it is only not notified. Once the silence ends, an alert still firing is
notified then, as if it had just fired.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from ..config.alerts import MaintenanceWindow


@dataclass(frozen=True)
class Silence:
    """An ad hoc silence: these widgets (None: every widget) from `starts` to `ends`."""

    id: int
    widgets: tuple[str, ...] | None
    starts: float
    ends: float
    reason: str | None = None
    created_by: str | None = None

    def covers(self, widget: str, now: float) -> bool:
        return self.starts <= now < self.ends and (self.widgets is None or widget in self.widgets)


def window_active(window: MaintenanceWindow, now: float) -> bool:
    """Whether the window is open at `now`. An end at or before the start belongs to the
    next day (22:00-02:00 on Friday lasts into Saturday's night)."""
    local = datetime.datetime.fromtimestamp(now, ZoneInfo(window.timezone))
    time, day = local.time().replace(tzinfo=None), local.weekday()
    if window.start < window.end:
        return day in window.weekdays and window.start <= time < window.end
    return (day in window.weekdays and time >= window.start) or ((day - 1) % 7 in window.weekdays and time < window.end)


def window_covers(window: MaintenanceWindow, widget: str, now: float) -> bool:
    return (window.widgets is None or widget in window.widgets) and window_active(window, now)


def silenced_by(
    widget: str, now: float, windows: Iterable[MaintenanceWindow], silences: Iterable[Silence]
) -> str | None:
    """What silences the widget's alerts now (a window's name, or "silence <id>"), or None."""
    for window in windows:
        if window_covers(window, widget, now):
            return window.name
    for silence in silences:
        if silence.covers(widget, now):
            return f"silence {silence.id}"
    return None
