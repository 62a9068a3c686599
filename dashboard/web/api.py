"""The JSON API: widgets with their latest values, one widget, its history."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import tornado.web

from ..core import auth
from ..core.samples import Sample, format_ts
from .base import BaseHandler
from .cors import CorsMixin
from .sessions import api_denied

LARGEST = 10**18 - 1  # a query's number at most (event ids are sample ids: of up to 18 digits)


def sample_json(sample: Sample | None) -> dict[str, Any] | None:
    if sample is None:
        return None
    return {"id": sample.id, **sample.as_dict()}


class ApiHandler(CorsMixin, BaseHandler):
    bearer_realm = "dashboard"  # push and read tokens

    def widget_or_404(self, widget_id: str):
        """The widget, when it exists (404) and is on a dashboard the viewer may see (401, 403)."""
        widget = self.config.widgets.get(widget_id)
        if widget is None:
            raise tornado.web.HTTPError(404, f"unknown widget {widget_id!r}")
        if not auth.widget_visible(self.config, widget.id, self.viewers):
            raise api_denied(self)
        return widget

    def widget_json(self, widget, latest: dict[str, Sample]) -> dict[str, Any]:
        return {
            "id": widget.id,
            "title": widget.title,
            "view": widget.view,
            "source": widget.source.kind if widget.source else None,
            "dashboards": [d.id for d in auth.visible_dashboards(self.config, self.viewers) if widget.id in d.widgets],
            "sample": sample_json(latest.get(widget.id)),
        }

    def int_argument(self, name: str, default: int, *, low: int, high: int | None = None) -> int:
        raw = self.get_query_argument(name, None)
        if raw is None:
            return default
        if not (raw.isascii() and raw.isdigit()):
            # The text goes in as an argument: Tornado doubles a "%" in a message without any.
            raise tornado.web.HTTPError(400, "%s: expected a whole number, got %r", name, raw[:40])
        digits = raw.lstrip("0") or "0"  # leading zeros count for nothing
        top = high if high is not None else LARGEST
        value = int(digits) if len(digits) <= 18 else None  # int() refuses thousands of digits
        if value is None or not low <= value <= top:
            shown = digits if len(digits) <= 40 else digits[:37] + "..."
            raise tornado.web.HTTPError(400, f"{name}: expected a number from {low} to {top}, got {shown}")
        return value


class WidgetsHandler(ApiHandler):
    async def get(self) -> None:
        widgets = [w for w in self.config.widgets.values() if auth.widget_visible(self.config, w.id, self.viewers)]
        latest = await self.runtime.store.shown(widgets)
        self.write_json({"widgets": [self.widget_json(w, latest) for w in widgets]})


class WidgetHandler(ApiHandler):
    async def get(self, widget_id: str) -> None:
        widget = self.widget_or_404(widget_id)
        latest = await self.runtime.store.shown([widget])
        self.write_json(self.widget_json(widget, latest))


class HistoryHandler(ApiHandler):
    async def get(self, widget_id: str) -> None:
        widget = self.widget_or_404(widget_id)
        cap = self.config.api.history_limit
        # Without `since`, every sample (imported ones too); with it, the events after that id.
        since = self.int_argument("since", 0, low=0) if self.get_query_argument("since", None) else None
        limit = self.int_argument("limit", cap, low=1, high=cap)
        samples = await self.runtime.store.history(widget.id, since=since, limit=limit)
        self.write_json(
            {
                "widget": widget.id,
                "samples": [sample_json(s) for s in samples],
                "now": format_ts_now(),
            }
        )


def format_ts_now() -> str:
    from datetime import datetime

    return format_ts(datetime.now(UTC))
