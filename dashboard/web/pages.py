"""The dashboard pages, rendered with current values already in them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import tornado.web

from .. import __version__
from ..core import auth, views
from ..core.samples import format_ts
from .alerts_page import alert_context
from .base import BaseHandler
from .sessions import exchange_kiosk_token, guard_page, login_url

GRAPH_POINTS = 600  # at most this many points of history per graph in the page


class IndexHandler(BaseHandler):
    async def get(self) -> None:
        if exchange_kiosk_token(self):
            return
        dashboards = self.config.dashboards
        if len(dashboards) == 1:
            if guard_page(self, dashboards[0]):
                await DashboardHandler.render_dashboard(self, dashboards[0])
            return
        # Only what this viewer may open: the titles of the others are not theirs to read.
        visible = auth.visible_dashboards(self.config, self.viewers)
        if auth.needed_kinds(dashboards):
            self.set_header("Cache-Control", "no-store")
            if not visible and auth.PASSWORD in auth.needed_kinds(dashboards) and auth.PASSWORD not in self.viewers:
                self.redirect(login_url(self), status=303)
                return
        self.render("index.html", dashboards=visible, title="Dashboards")


class DashboardHandler(BaseHandler):
    async def get(self, dashboard_id: str) -> None:
        dashboard = self.config.dashboard(dashboard_id)
        if dashboard is None:
            raise tornado.web.HTTPError(404, f"There is no dashboard {dashboard_id!r}.")
        if exchange_kiosk_token(self) or not guard_page(self, dashboard):
            return
        await self.render_dashboard(self, dashboard)

    @staticmethod
    async def render_dashboard(handler: BaseHandler, dashboard) -> None:
        runtime = handler.runtime
        visible = auth.visible_dashboards(runtime.config, handler.viewers)  # for the bar and the rotation
        topic = runtime.hub.topic(dashboard.id)
        # Values and the event id N are taken together, before any await: the page
        # then asks the stream for everything after N, so nothing is lost or doubled.
        last_id = topic.last_id if topic else runtime.hub.last_id
        # Control events (reload) already sent after last_id: the page skips them when
        # the stream replays them, else a reload would reload the reloaded page.
        controls = topic.controls if topic else 0
        latest = runtime.hub.latest(dashboard.id)
        # The open alerts as of that same moment: the stream's alert events after N follow.
        alerts = alert_context(handler, dashboard)
        widgets = [runtime.config.widgets[w] for w in dashboard.widgets]
        graphs = {}
        graph_ids = {}
        now = datetime.now(UTC)
        for widget in widgets:
            if views.VIEWS[widget.view].points:
                samples = await runtime.store.history(
                    widget.id, limit=GRAPH_POINTS, after=now - timedelta(seconds=widget.history), upto=last_id
                )
                samples = [s for s in samples if s.status == "ok" and _is_number(s.value)]
                graphs[widget.id] = [[int(s.ts.timestamp() * 1000), s.value] for s in samples]
                graph_ids[widget.id] = [s.id for s in samples]  # the page merges later history by id
        handler.render(
            "dashboard.html",
            title=dashboard.title,
            dashboard=dashboard,
            dashboards=visible,
            widgets=widgets,
            latest=latest,
            graphs=graphs,
            graph_ids=graph_ids,
            last_id=last_id,
            controls=controls,
            now=format_ts(now),
            next_dashboard=_next_dashboard(visible, dashboard),
            kiosk=handler.get_query_argument("kiosk", "") in ("1", "true", "yes"),
            views=views,
            widgets_json=widgets_json,
            format_ts=format_ts,
            version=__version__,
            **alerts,
        )


def _next_dashboard(dashboards, current):
    """Where a rotating dashboard goes next: the following one, wrapping; None when alone."""
    if len(dashboards) < 2:
        return None
    index = next(i for i, d in enumerate(dashboards) if d.id == current.id)
    return dashboards[(index + 1) % len(dashboards)]


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def widgets_json(widgets) -> list[dict]:
    """What static/widgets.js needs to know of each widget (its view's facts included)."""
    return [
        {
            **views.VIEWS[w.view].page_facts(),
            "id": w.id,
            "view": w.view,
            "every": w.every,
            "decimals": w.decimals,
            "unit": w.unit,
            "min": w.min,
            "max": w.max,
            "warn": w.warn,
            "crit": w.crit,
            "history": w.history,
            "timezone": w.timezone,
            # Updates are expected every interval (else only on change, and silence is fine).
            "heartbeat": bool(w.source) and (not w.on_change or w.source.kind == "push"),
        }
        for w in widgets
    ]
