"""The dashboard pages, rendered with current values already in them."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import markupsafe
import tornado.web

from .. import __version__
from ..config import WidgetConfig
from ..core import auth, views
from ..core.samples import Sample, format_ts
from ..storage.store import fitted
from .alerts_page import alert_context
from .base import BaseHandler
from .series import first_paint
from .sessions import exchange_kiosk_token, guard_page, login_url

log = logging.getLogger("dashboard.pages")


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
        # The open alerts as of that same moment: the stream's alert events after N follow.
        alerts = alert_context(handler, dashboard)
        widgets = [runtime.config.widgets[w] for w in dashboard.widgets]
        latest = fitted(widgets, runtime.hub.latest(dashboard.id))
        handler.render(
            "dashboard.html",
            title=dashboard.title,
            dashboard=dashboard,
            dashboards=visible,
            widgets=widgets,
            latest=latest,
            next_dashboard=_next_dashboard(visible, dashboard),
            **await live_page(handler, widgets, latest, last_id, controls),
            **alerts,
        )


async def live_page(
    handler: BaseHandler, widgets: list[WidgetConfig], latest: dict[str, Sample], last_id: int, controls: int
) -> dict[str, Any]:
    """What a live page's template needs besides its own: each graph's whole configured
    range, downsampled (its cost does not grow with the samples in it; the page extends
    the last bucket with live samples), the values a number's change compares with, where
    its stream starts, and the helpers its macros call (dashboard.html, widget.html)."""
    now = datetime.now(UTC)
    series, graphs = await first_paint(handler.runtime, widgets, latest, now.timestamp())
    return {
        "graphs": graphs,
        "series": series,
        # A number's change arrow compares the next value with the one shown.
        "values": {w.id: latest[w.id].value for w in widgets if w.view == "number" and w.id in latest},
        "last_id": last_id,
        "controls": controls,
        "now": format_ts(now),
        "kiosk": handler.get_query_argument("kiosk", "") in ("1", "true", "yes"),
        "views": views,
        "widgets_json": widgets_json,
        "widget_body": widget_body,
        "format_ts": format_ts,
        "version": __version__,
    }


def widget_body(macro, widget, sample, graph) -> markupsafe.Markup:
    """A widget's body from its view's macro (templates/widgets.html); should that fail,
    the widget says so and the rest of the page renders."""
    try:
        return macro(widget, sample, graph)
    except Exception:
        log.exception("widget %s could not be rendered", widget.id)
        return markupsafe.Markup('<p class="text" data-role="value">this value cannot be shown</p>')


def _next_dashboard(dashboards, current):
    """Where a rotating dashboard goes next: the following one, wrapping; None when alone."""
    if len(dashboards) < 2:
        return None
    index = next(i for i, d in enumerate(dashboards) if d.id == current.id)
    return dashboards[(index + 1) % len(dashboards)]


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
