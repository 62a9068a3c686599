"""The dashboard pages, rendered with current values already in them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import tornado.web

from .. import __version__, views
from ..models import format_ts
from .base import BaseHandler

GRAPH_POINTS = 600  # at most this many points of history per graph in the page


class IndexHandler(BaseHandler):
    async def get(self) -> None:
        dashboards = self.config.dashboards
        if len(dashboards) == 1:
            await DashboardHandler.render_dashboard(self, dashboards[0])
        else:
            self.render("index.html", dashboards=dashboards, title="Dashboards")


class DashboardHandler(BaseHandler):
    async def get(self, dashboard_id: str) -> None:
        dashboard = self.config.dashboard(dashboard_id)
        if dashboard is None:
            raise tornado.web.HTTPError(404, f"There is no dashboard {dashboard_id!r}.")
        await self.render_dashboard(self, dashboard)

    @staticmethod
    async def render_dashboard(handler: BaseHandler, dashboard) -> None:
        runtime = handler.runtime
        topic = runtime.hub.topic(dashboard.id)
        # Values and the event id N are taken together, before any await: the page
        # then asks the stream for everything after N, so nothing is lost or doubled.
        last_id = topic.last_id if topic else runtime.hub.last_id
        latest = runtime.hub.latest(dashboard.id)
        widgets = [runtime.config.widgets[w] for w in dashboard.widgets]
        graphs = {}
        now = datetime.now(timezone.utc)
        for widget in widgets:
            if widget.view in ("graph", "number"):
                samples = await runtime.store.history(
                    widget.id, limit=GRAPH_POINTS, after=now - timedelta(seconds=widget.history), upto=last_id
                )
                graphs[widget.id] = [
                    [int(s.ts.timestamp() * 1000), s.value] for s in samples if _is_number(s.value)
                ]
        handler.render(
            "dashboard.html",
            title=dashboard.title,
            dashboard=dashboard,
            dashboards=runtime.config.dashboards,
            widgets=widgets,
            latest=latest,
            graphs=graphs,
            last_id=last_id,
            kiosk=handler.get_query_argument("kiosk", "") in ("1", "true", "yes"),
            views=views,
            widgets_json=widgets_json,
            format_ts=format_ts,
            version=__version__,
        )


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)



def widgets_json(widgets) -> list[dict]:
    """What static/widgets.js needs to know of each widget."""
    return [
        {
            "id": w.id, "view": w.view, "every": w.every, "decimals": w.decimals, "unit": w.unit,
            "min": w.min, "max": w.max, "warn": w.warn, "crit": w.crit, "history": w.history,
            "timezone": w.timezone,
            # Updates are expected every interval (else only on change, and silence is fine).
            "heartbeat": bool(w.source) and (not w.on_change or w.source.kind == "push"),
        }
        for w in widgets
    ]
