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
from datetime import UTC, datetime
from typing import Any

import tornado.web

from ..config import StorageConfig
from ..config.reader import parse_duration
from ..core.times import parse_time
from ..core.views import VIEWS
from ..storage.rollups import Plan, plan, tier_retention
from .api import ApiHandler

DEFAULT_POINTS = 1000
MAX_POINTS = 5000
LAST = 253402300800  # 10000-01-01 UTC: times are datetimes, which end with 9999
MAX_SPAN = 10 * 366 * 86400  # ten years: any longer asks the hourly rollups for nothing they keep
TIME_FORMS = 'ISO 8601, Unix seconds, a time back from now like "-30d" or "-10m", or "now"'


def kept(storage: StorageConfig) -> dict[int, float]:
    """How far back each source of buckets reaches (0: the raw samples)."""
    return {0: storage.retention, **tier_retention(storage)}


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


async def read_series(
    runtime, widgets, start: float, end: float, points: int, now: float, *, least: int = 1
) -> dict[str, dict[str, Any]]:
    """The series JSON of several widgets over one range (one query for all of them)."""
    chosen = plan(start, end, points, now=now, kept=kept(runtime.config.storage), least=least)
    columns = await runtime.store.series([w.id for w in widgets], chosen)
    return {w.id: series_json(w.id, chosen, columns[w.id], states=VIEWS[w.view].states is not None) for w in widgets}


class SeriesHandler(ApiHandler):
    async def get(self, widget_id: str) -> None:
        widget = self.widget_or_404(widget_id)
        now = time.time()
        end = self._instant("to", now, now)
        if end <= 0:
            raise tornado.web.HTTPError(400, "to: expected a time after 1970")
        # Without a from: the widget's history before `to` (from 1970 on).
        start = self._instant("from", max(0.0, end - widget.history), now)
        if not start < end:
            raise tornado.web.HTTPError(400, "from: expected a time before to")
        if start < 0:
            raise tornado.web.HTTPError(400, "from: expected a time after 1970")
        if end > LAST:
            raise tornado.web.HTTPError(400, "to: expected a time before the year 10000")
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


# -- the page's first paint ------------------------------------------------------------------

# The range buttons of a graph, besides its configured range.
RANGES = ((3600, "1h"), (86400, "24h"), (7 * 86400, "7d"), (30 * 86400, "30d"))


def range_label(seconds: float) -> str:
    """ "1h", "24h", "7d", "30d", "10m", "90s": a range as its button says it."""
    for known, label in RANGES:
        if seconds == known:
            return label
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def graph_ranges(history: float) -> list[tuple[float, str]]:
    """The configured range first, then the others, shortest first."""
    return [(history, range_label(history)), *((s, label) for s, label in RANGES if s != history)]


# Buckets in the page per widget: a graph's first paint (the script fetches finer ones
# for the width it has when asked to), a sparkline, an uptime bar's segments; never
# under ten seconds, so that a page reads rollups, not a row per sample (twenty graphs
# of ten minutes at 1 Hz: 1,200 rows rather than 12,000).
FIRST_PAINT_POINTS = {"graph": 200, "number": 90, "status": 90}
FIRST_PAINT_STEP = 10


def shows_history(view: str) -> bool:
    """A line (its points) or an uptime bar (its states)."""
    facts = VIEWS[view]
    return facts.points or facts.states is not None


async def first_paint(runtime, widgets, latest, now: float) -> tuple[dict[str, dict], dict[str, dict]]:
    """Each widget's series for its configured range (what the page's JSON carries) and
    what its template draws without a script: the line's points (bucket start, average),
    a number's previous value, a status's uptime segments. One query per history length."""
    groups: dict[tuple[float, int], list] = {}
    for widget in widgets:
        if shows_history(widget.view):
            points = FIRST_PAINT_POINTS.get(widget.view, FIRST_PAINT_POINTS["number"])
            groups.setdefault((widget.history, points), []).append(widget)
    series: dict[str, dict] = {}
    for (history, points), group in groups.items():
        series.update(await read_series(runtime, group, now - history, now, points, now, least=FIRST_PAINT_STEP))
    drawn: dict[str, dict] = {}
    for widget in widgets:
        answer = series.get(widget.id)
        if answer is None:
            continue
        line = [(t, avg) for t, avg in zip(answer["t"], answer["avg"], strict=True) if avg is not None]
        drawn[widget.id] = {"points": line, "previous": None, "uptime": [], "ranges": graph_ranges(widget.history)}
        if widget.view == "number":
            drawn[widget.id]["previous"] = await _previous_value(runtime.store, widget.id, latest.get(widget.id))
        if "ok" in answer:
            drawn[widget.id]["uptime"] = uptime_segments(answer, (now - widget.history) * 1000, now * 1000)
    return series, drawn


async def _previous_value(store, widget_id: str, latest) -> Any:
    """The value a number's change arrow compares with: the good one before the latest."""
    if latest is None:
        return None
    for sample in reversed(await store.history(widget_id, limit=5)):
        if sample.id < latest.id and sample.status == "ok":
            return sample.value
    return None


def uptime_segments(answer: Mapping[str, Any], start_ms: float, end_ms: float) -> list[dict[str, Any]]:
    """One segment per bucket with samples, in a 1000-wide bar over [start, end): its
    place, its worst state and the share of ok samples (static/widgets.js draws the
    same, in the viewer's time zone)."""
    span = max(end_ms - start_ms, 1)
    step = answer["step"]
    out = []
    for t, n, ok, warn, down in zip(
        answer["t"], answer["n"], answer["ok"], answer["warn"], answer["down"], strict=True
    ):
        left = max(t, start_ms)
        right = min(t + step, end_ms)
        if right <= left or not n:
            continue
        worst = "down" if down else "warn" if warn else "ok"
        out.append(
            {
                "x": round((left - start_ms) / span * 1000, 2),
                "width": round(max((right - left) / span * 1000 - 0.6, 0.4), 2),
                "state": worst,
                "share": ok / n,
                "title": f"{ok / n:.1%} ok · {_utc(t)} – {_utc(t + step)} UTC".replace("%", " %"),
            }
        )
    return out


def _utc(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")
