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

from datetime import UTC, datetime
from urllib.parse import urlencode

import tornado.web

from .. import __version__
from ..core import auth, views
from ..core.samples import Sample, format_ts
from .alerts_page import alert_context
from .base import BaseHandler
from .pages import shown_samples, widget_body, widgets_json
from .series import first_paint
from .sessions import exchange_kiosk_token, guard_page
from .stream import subset_topic


class WidgetPageHandler(BaseHandler):
    async def get(self, widget_id: str) -> None:
        widget = self.config.widgets.get(widget_id)
        if widget is None:
            raise tornado.web.HTTPError(404, f"There is no widget {widget_id!r}.")
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
        latest = shown_samples([widget], {widget.id: sample} if sample is not None else {})
        now = datetime.now(UTC)
        series, graphs = await first_paint(runtime, [widget], latest, now.timestamp())
        visible = [d for d in auth.visible_dashboards(self.config, self.viewers) if widget.id in d.widgets]
        alerts = alert_context(self, visible[0]) if visible else {"alert_marks": {}, "alerts_json": None}
        sample = latest.get(widget.id)
        self.render(
            "widget.html",
            title=widget.title,
            widget=widget,
            sample=sample,
            graph=graphs.get(widget.id),
            series=series,
            values={widget.id: sample.value} if widget.view == "number" and sample is not None else {},
            mark=alerts["alert_marks"].get(widget.id),
            alerts_json=alerts["alerts_json"],
            dashboards=visible,
            theme=visible[0].theme if visible else "auto",
            last_id=last_id,
            controls=controls,
            events="/events?" + urlencode({"widgets": widget.id}),
            now=format_ts(now),
            kiosk=self.get_query_argument("kiosk", "") in ("1", "true", "yes"),
            views=views,
            widgets_json=widgets_json,
            widget_body=widget_body,
            format_ts=format_ts,
            version=__version__,
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
            raise tornado.web.HTTPError(404, f"There is no widget {widget_id!r}.")
        if guard_page(self, placed[0]):  # not visible, yet that dashboard lets them in: cannot be
            raise tornado.web.HTTPError(403, "You may not see this widget.")
        return False
