"""GET /api/widgets/<id>/series?from=&to=&points=: a widget's samples over a range,
downsampled into at most `points` buckets, as columnar JSON:

    {"widget": "cpu", "from": 1796380800000, "to": 1796389200000, "step": 60000,
     "t": [...], "min": [...], "avg": [...], "max": [...], "n": [...]}

Times are Unix milliseconds; `t` is each bucket's start (a multiple of `step`),
`from` and `to` the whole buckets the answer covers, and a bucket without a sample
that counts is left out. A status widget's answer also has "ok", "warn" and "down":
its samples in each state per bucket (what an uptime bar needs); its min, avg and
max are those of the latency, where the checks report one. What counts, and where
the buckets come from (raw samples, minute or hour rollups): storage/rollups.py.

The page draws its graphs from the same JSON (pages.py puts the first one in the
page, static/widgets.js fetches the others).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import tornado.web

from ..config import StorageConfig
from ..config.reader import parse_duration
from ..core.times import parse_time
from ..core.views import VIEWS
from ..storage.rollups import HOUR, MINUTE, Plan, plan
from .api import ApiHandler

DEFAULT_POINTS = 1000
MAX_POINTS = 5000
MAX_SPAN = 10 * 366 * 86400  # ten years: any longer asks the hourly rollups for nothing they keep
TIME_FORMS = 'ISO 8601, Unix seconds, a time back from now like "-30d" or "-10m", or "now"'


def kept(storage: StorageConfig) -> dict[int, float]:
    """How far back each source of buckets reaches (0: the raw samples)."""
    return {0: storage.retention, MINUTE: storage.retention_1m, HOUR: storage.retention_1h}


def parse_instant(text: str, now: float) -> float:
    """Unix seconds from ISO 8601, Unix seconds, "-<duration>" (before now) or "now"."""
    if text == "now":
        return now
    if text.startswith("-") and text[-1:].isalpha():
        return now - parse_duration(text[1:])
    return parse_time(text)


def series_json(widget_id: str, chosen: Plan, columns: Mapping[str, list], *, states: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "widget": widget_id,
        "from": chosen.start * 1000,
        "to": chosen.end * 1000,
        "step": chosen.step * 1000,
        "t": [t * 1000 for t in columns["t"]],
        "min": [_finite(v) for v in columns["low"]],
        "avg": [_finite(total / measured) if measured else None for total, measured in _pairs(columns)],
        "max": [_finite(v) for v in columns["high"]],
        "n": list(columns["n"]),
    }
    if states:
        for state in ("ok", "warn", "down"):
            out[state] = list(columns[state])
    return out


def _pairs(columns: Mapping[str, list]) -> zip[tuple[Any, Any]]:
    return zip(columns["total"], columns["measured"], strict=True)


def _finite(value: Any) -> float | None:
    """JSON has no NaN or infinity: a sum of huge numbers shows as no value."""
    return value if value is None or math.isfinite(value) else None


async def read_series(runtime, widgets, start: float, end: float, points: int, now: float) -> dict[str, dict[str, Any]]:
    """The series JSON of several widgets over one range (one query for all of them)."""
    chosen = plan(start, end, points, now=now, kept=kept(runtime.config.storage))
    columns = await runtime.store.series([w.id for w in widgets], chosen)
    return {w.id: series_json(w.id, chosen, columns[w.id], states=VIEWS[w.view].states is not None) for w in widgets}


class SeriesHandler(ApiHandler):
    async def get(self, widget_id: str) -> None:
        widget = self.widget_or_404(widget_id)
        now = time.time()
        end = self._instant("to", now, now)
        start = self._instant("from", now - widget.history, now)
        if not start < end:
            raise tornado.web.HTTPError(400, "from: expected a time before to")
        if start < 0:
            raise tornado.web.HTTPError(400, "from: expected a time after 1970")
        if end - start > MAX_SPAN:
            raise tornado.web.HTTPError(400, "from: expected a range of at most ten years")
        points = self.int_argument("points", DEFAULT_POINTS, low=1, high=MAX_POINTS)
        answer = await read_series(self.runtime, [widget], start, end, points, now)
        self.write_json(answer[widget.id])

    def _instant(self, name: str, default: float, now: float) -> float:
        raw = self.get_query_argument(name, None)
        if raw is None or raw == "":
            return default
        try:
            return parse_instant(raw, now)
        except ValueError:
            shown = raw if len(raw) <= 40 else raw[:37] + "..."
            # The text goes in as an argument: Tornado doubles a "%" in a message without any.
            raise tornado.web.HTTPError(400, "%s: expected %s, got %r", name, TIME_FORMS, shown) from None
