"""GET /w/<widget>: one widget, full size and live, for an iframe or a second screen.

A viewer may open it when they may see some dashboard that lists the widget
(core.auth.widget_visible); a stranger gets what that dashboard's page would
answer (the sign-in page, a 401 or 403). The page is the dashboard page's frame,
scripts and data block with one widget in them, and its stream is
/events?widgets=<widget> (the hub's subset topic of that widget), read from the
same topic the values were taken from, so nothing between render and connect
is lost or doubled. Framing follows [server] frame_ancestors like every page.
"""

from __future__ import annotations

from urllib.parse import urlencode

import tornado.web

from ..core import auth
from ..core.samples import Sample
from ..storage.store import fitted
from .alerts_page import alert_context
from .base import BaseHandler
from .pages import live_page
from .sessions import exchange_kiosk_token, guard_page
from .stream import subset_topic

# A widget on no dashboard the viewer sees has no alerts shown with it.
NO_ALERTS: dict = {"alert_marks": {}, "alerts_json": None, "open_alerts": [], "can_ack": False}


class WidgetPageHandler(BaseHandler):
    async def get(self, widget_id: str) -> None:
        widget = self.config.widgets.get(widget_id)
        if widget is None:
            raise tornado.web.HTTPError(404, "There is no widget %r.", widget_id)
        if exchange_kiosk_token(self) or not self._guard(widget_id):
            return
        runtime = self.runtime
        assert runtime is not None  # initialize() sets it
        topic = await subset_topic(runtime, (widget.id,))
        if topic is not None:
            # Taken together, before any await: the page's stream starts after last_id.
            last_id, controls = topic.last_id, topic.controls
            newest = topic.latest.get(widget.id)
            sample: Sample | None = newest[2] if newest else None
        else:  # the hub keeps no more subsets: the stream will say so and retry
            last_id, controls = runtime.hub.last_id, 0
            sample = (await runtime.store.latest([widget.id])).get(widget.id)
        latest = fitted([widget], {widget.id: sample} if sample is not None else {})
        visible = [d for d in auth.visible_dashboards(self.config, self.viewers) if widget.id in d.widgets]
        alerts = alert_context(self, visible[0]) if visible else NO_ALERTS
        page = await live_page(self, [widget], latest, last_id, controls)
        self.render(
            "widget.html",
            title=widget.title,
            widget=widget,
            sample=latest.get(widget.id),
            graph=page["graphs"].get(widget.id),
            mark=alerts["alert_marks"].get(widget.id),
            alerts_json=alerts["alerts_json"],
            open_alerts=alerts["open_alerts"],  # an alerts widget lists them
            can_ack=alerts["can_ack"],
            dashboards=visible,
            theme=visible[0].theme if visible else "auto",
            events="/events?" + urlencode({"widgets": widget.id}),
            **page,
        )

    def _guard(self, widget_id: str) -> bool:
        """True when the viewer may see the widget (a kiosk session is renewed on the way);
        otherwise the answer of the first dashboard listing it is sent (a redirect to
        the sign-in page), or an HTTPError says 401, 403 or 404."""
        config = self.config
        placed = [d for d in config.dashboards if widget_id in d.widgets]
        if auth.widget_visible(config, widget_id, self.viewers):
            shown = [d for d in placed if auth.may_see(d, self.viewers)]
            if shown:
                guard_page(self, shown[0])  # renews a kiosk session, no-store for a private page
            return True
        if not placed:
            raise tornado.web.HTTPError(404, "There is no widget %r.", widget_id)
        if guard_page(self, placed[0]):  # not visible, yet that dashboard lets them in: cannot be
            raise tornado.web.HTTPError(403, "You may not see this widget.")
        return False
