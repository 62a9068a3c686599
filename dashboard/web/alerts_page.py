"""What a dashboard page needs of the alerts: the open ones it may show (rendered into
the page and its JSON), which widget is marked, whether this viewer may acknowledge
(a signed-in viewer: password or proxy mode; then with Tornado's XSRF token), and the
dashboard's opt-ins (a sound, browser notifications)."""

from __future__ import annotations

from typing import Any

from ..config import DashboardConfig
from ..core import auth
from .base import BaseHandler

SEVERITY_ORDER = {"crit": 0, "warn": 1}


def can_acknowledge(handler: BaseHandler) -> bool:
    return any(kind in handler.viewers for kind in (auth.PASSWORD, auth.PROXY))


def shown_alerts(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What an alerts view lists: the firing alerts, but not the warn of a widget whose
    crit (or down) fires too, which says more (static/alerts.js does the same)."""
    firing = [a for a in alerts if a["state"] == "firing"]
    strong = {a["widget"] for a in firing if a["condition"] != "warn" and a["severity"] == "crit"}
    return [a for a in firing if not (a["condition"] == "warn" and a["widget"] in strong)]


def alert_context(handler: BaseHandler, dashboard: DashboardConfig) -> dict[str, Any]:
    """Template variables: `open_alerts` (pending and firing, crit first), `alert_marks`
    (widget -> its worst firing alert), `can_ack`, and `alerts_json` for the page's data."""
    runtime = handler.runtime
    engine = runtime.alerts if runtime is not None else None
    open_alerts = engine.page_alerts(dashboard) if engine is not None else []
    marks: dict[str, dict[str, Any]] = {}
    for alert in open_alerts:
        if alert["state"] != "firing" or alert["widget"] not in dashboard.widgets:
            continue
        shown = marks.get(alert["widget"])
        if shown is None or SEVERITY_ORDER[alert["severity"]] < SEVERITY_ORDER[shown["severity"]]:
            marks[alert["widget"]] = alert
    ack = can_acknowledge(handler)
    return {
        "open_alerts": shown_alerts(open_alerts),
        "alert_marks": marks,
        "can_ack": ack,
        "alerts_json": {
            "alerts": open_alerts,
            "canAck": ack,
            # A call sets the _xsrf cookie: only pages that may acknowledge get one.
            "xsrf": handler.xsrf_token.decode("ascii") if ack else None,
            "alertSound": dashboard.alert_sound,
            "alertNotifications": dashboard.alert_notifications,
        },
    }
