"""The widget views: each declared once (VIEWS), with what it accepts, whether it
keeps points for a line, and how its values map to levels; and the small
computations the templates need (formatting, threshold levels, graph geometry).

The config takes its list of views from VIEWS, the page handler asks a view
whether it keeps points, and the page's JSON carries each widget's view facts
(View.page_facts) to static/widgets.js. Adding a view is its declaration here,
its macro in templates/widgets.html and its render_<view> in static/widgets.js.

A value that a view cannot show is rejected here, once, for every path it may
come from (a ticker, the push API), with a reason a user can act on.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

# What every view shares (text, numbers, size) is decided in values.py; accept() applies it.
from .values import ValueRejected as ValueRejected
from .values import guarded, showable

STATUS_LEVELS = MappingProxyType({"ok": "ok", "warn": "warn", "down": "crit"})  # a status's state -> level
STATUS_STATES = tuple(STATUS_LEVELS)
MAX_LIST_ROWS = 200


# A decimal number as people and APIs write it in text ("42", "-0.5", "1e3", ".5"):
# no "nan", "inf", "0x1f" or "1_000", which Python's own float() and int() would take.
_NUMBER_TEXT = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_INTEGER_TEXT = re.compile(r"[-+]?[0-9]+")


def number_from_text(text: str) -> int | float | None:
    """The number a string spells, or None: "42" -> 42, " 1.5 " -> 1.5, "1e3" -> 1000.0.
    The one reading of numbers in text, for every way a value comes in (Prometheus's
    API, for one, sends every sample value as a string)."""
    text = text.strip()
    if not _NUMBER_TEXT.fullmatch(text):
        return None
    if _INTEGER_TEXT.fullmatch(text):
        return int(text)
    value = float(text)
    return value if math.isfinite(value) else None


def as_number(value: Any) -> int | float | None:
    """A number, or a string that spells one, as a number; None for anything else."""
    if isinstance(value, str):
        return number_from_text(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return None


def _number(value: Any) -> float | int:
    if isinstance(value, str) and (number := number_from_text(value)) is not None:
        return number
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueRejected(f"expected a number, got {_describe(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueRejected(f"expected a finite number, got {value}")
    return value


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        # JSON's 1e400 arrives as inf: shown as "inf" it would say what was never sent.
        raise ValueRejected(f"expected text or a finite number, got {value}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ValueRejected(f"expected text, got {_describe(value)}")


def _list_row(item: Any) -> dict[str, Any]:
    if isinstance(item, dict):
        if "label" not in item:
            raise ValueRejected('expected each list row to have a "label"')
        row: dict[str, Any] = {"label": _text(item["label"])}
        if item.get("value") is not None:
            row["value"] = _cell(item["value"])
        return row
    if isinstance(item, (list, tuple)) and len(item) == 2:
        return {"label": _text(item[0]), "value": _cell(item[1])}
    return {"label": _text(item)}


def _cell(value: Any) -> str | int | float:
    return _number(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else _text(value)


def _list(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, (list, tuple)):
        raise ValueRejected(f"expected a list of rows, got {_describe(value)}")
    if len(value) > MAX_LIST_ROWS:
        raise ValueRejected(f"expected at most {MAX_LIST_ROWS} rows, got {len(value)}")
    return [_list_row(item) for item in value]


def _status(given: Any) -> dict[str, Any]:
    value = {"state": given} if isinstance(given, str) else given
    if not isinstance(value, dict) or value.get("state") not in STATUS_STATES:
        raise ValueRejected(f'expected "ok", "warn" or "down" (or an object with a "state"), got {_describe(given)}')
    out = {"state": value["state"]}
    for key in ("latency_ms", "code"):
        if value.get(key) is not None:
            out[key] = _number(value[key])
    if value.get("detail") is not None:
        out["detail"] = _text(value["detail"])
    return out


def _clock(value: Any) -> None:
    raise ValueRejected("a clock shows the browser's time and takes no value")


def _alerts(value: Any) -> None:
    raise ValueRejected("an alerts view shows the alerts that fire and takes no value")


@dataclass(frozen=True)
class View:
    name: str
    accept: Callable[[Any], Any]  # the value as the view stores it, or ValueRejected
    points: bool = False  # keeps recent (time, value) points to draw a line
    # A value's state -> its level ("ok", "warn", "crit"), for views that show a state;
    # None: the level comes from the widget's warn and crit thresholds.
    states: Mapping[str, str] | None = field(default=None)
    values: bool = True  # False: it shows something of its own (a clock) and takes no source

    def level(self, value: Any, warn: float | None, crit: float | None) -> str:
        """ "ok", "warn" or "crit" for a value this view shows."""
        if self.states is not None:
            state = value.get("state") if isinstance(value, Mapping) else None
            return self.states.get(state, "ok") if isinstance(state, str) else "ok"
        return level(value, warn, crit)

    def page_facts(self) -> dict[str, Any]:
        """What static/widgets.js needs to know of the view."""
        return {"points": self.points, "states": dict(self.states) if self.states else None, "values": self.values}


VIEWS: Mapping[str, View] = MappingProxyType(
    {
        view.name: view
        for view in (
            View("number", _number, points=True),
            View("meter", _number),
            View("graph", _number, points=True),
            View("text", _text),
            View("list", _list),
            View("status", _status, states=STATUS_LEVELS),
            View("clock", _clock, values=False),
            View("alerts", _alerts, values=False),
        )
    }
)


def accept(view: str, value: Any, value_map: Mapping[str, Any] | None = None) -> Any:
    """The value as the view stores it, or ValueRejected: `value_map` (a widget's `map`)
    first replaces a value it lists, e.g. {"green": "ok", "failed": "down"} (for a status
    object, its "state"); then what the view takes, then what every part can carry and
    show (values.showable)."""
    if value_map:
        value = map_value(view, value, value_map)
    return showable(guarded(VIEWS[view].accept, value))


def map_key(value: Any) -> str | None:
    """How a `map` table (TOML: string keys) names a value: a string as it is, a number
    or true/false/null as JSON writes it (1.0 as "1"); None for lists and objects."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if value is None or isinstance(value, (bool, int, float)):
        return json.dumps(value)
    return None


def map_value(view: str, value: Any, value_map: Mapping[str, Any]) -> Any:
    if view == "status" and isinstance(value, dict) and "state" in value:
        key = map_key(value["state"])
        return {**value, "state": value_map[key]} if key is not None and key in value_map else value
    key = map_key(value)
    return value_map.get(key, value) if key is not None else value


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"text {shown!r}"
    return type(value).__name__ if not isinstance(value, (int, float)) else repr(value)


# -- what the templates use ------------------------------------------------------------------


def format_number(value: Any, decimals: int | None = None) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "" if value is None else str(value)
    if decimals is None:
        return f"{value:,}" if isinstance(value, int) else f"{value:,.6g}" if abs(value) < 1e6 else f"{value:,.0f}"
    return f"{value:,.{decimals}f}"


def level(value: Any, warn: float | None, crit: float | None) -> str:
    """ "ok", "warn" or "crit". Thresholds rise (warn < crit: high is bad) or fall
    (warn > crit: low is bad, like free disk space)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "ok"
    falling = warn is not None and crit is not None and warn > crit

    def beyond(limit: float) -> bool:
        return value <= limit if falling else value >= limit

    if crit is not None and beyond(crit):
        return "crit"
    if warn is not None and beyond(warn):
        return "warn"
    return "ok"


def meter_fraction(value: Any, low: float | None, high: float | None) -> float:
    low = 0.0 if low is None else low
    high = 100.0 if high is None else high
    if isinstance(value, bool) or not isinstance(value, (int, float)) or high <= low:
        return 0.0
    return min(1.0, max(0.0, (value - low) / (high - low)))


def change(current: Any, previous: Any) -> tuple[str, float | None]:
    """The arrow ("up", "down", "flat") and percent change from previous to current."""
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in (current, previous)):
        return "flat", None
    if current == previous:
        return "flat", 0.0
    percent = None if previous == 0 else (current - previous) / abs(previous) * 100
    return ("up" if current > previous else "down"), percent


ARROWS = {"up": "▲", "down": "▼", "flat": "▬"}


def change_tone(arrow: str, warn: float | None, crit: float | None) -> str:
    """Whether a change is "good", "bad" or "neutral" for this widget: its thresholds say
    which way is worse (as level() reads them: warn > crit means low is bad); with none,
    a change is neither."""
    if arrow == "flat" or (warn is None and crit is None):
        return "neutral"
    worse = "down" if warn is not None and crit is not None and warn > crit else "up"
    return "bad" if arrow == worse else "good"


def change_text(current: Any, previous: Any, unit: str = "", decimals: int | None = None) -> str:
    """The change as the number view shows it: "▲ +2.50%" (relative), or for a value
    that is itself a percentage (unit "%"), "▲ +2.5 pts" (percentage points, which a
    relative change of a percentage would misstate); the arrow alone from zero."""
    arrow, percent = change(current, previous)
    if percent is None and arrow == "flat":
        return ""  # not numbers
    if unit == "%":
        digits = max(1, decimals or 0)  # points of a whole percentage still show a tenth
        return f"{ARROWS[arrow]} {current - previous:+.{digits}f} pts"
    return ARROWS[arrow] if percent is None else f"{ARROWS[arrow]} {percent:+.2f}%"


def graph_path(
    points: Sequence[tuple[float, float]],
    width: float,
    height: float,
    low: float | None = None,
    high: float | None = None,
) -> str:
    """An SVG polyline `points` attribute for (t, v) pairs scaled into width x height.

    static/widgets.js draws the same way when live values arrive."""
    if not points:
        return ""
    ts = [p[0] for p in points]
    vs = [p[1] for p in points]
    t0, t1 = min(ts), max(ts)
    v0 = min(vs) if low is None else low
    v1 = max(vs) if high is None else high
    if v1 == v0:
        v0, v1 = v0 - 1, v1 + 1
    scale = 1.0
    if v1 - v0 == 0 or not math.isfinite(v1 - v0):  # past 2**53 +-1 moves nothing; near 1e308 the span overflows
        scale = max(abs(v0), abs(v1))
        v0, v1 = v0 / scale, v1 / scale
        if v1 == v0:
            v0, v1 = v0 - 1, v1 + 1
    span = (t1 - t0) or 1.0
    return " ".join(
        f"{(t - t0) / span * width:.1f},{height - (v / scale - v0) / (v1 - v0) * height:.1f}" for t, v in points
    )
