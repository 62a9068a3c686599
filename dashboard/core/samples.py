"""The one value type that travels through the system: a Sample.

A sample's integer id is also its SSE event id, so ids must only grow.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii
from typing import Any

OK = "ok"
ERROR = "error"


@dataclass(frozen=True, slots=True)
class Sample:
    id: int
    widget: str
    ts: datetime
    value: Any
    status: str = OK
    message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {"widget": self.widget, "value": self.value, "ts": format_ts(self.ts), "status": self.status}
        if self.message:
            out["message"] = self.message
        return out

    def to_json(self) -> str:
        """as_dict() as compact JSON, written out here: every sample on a stream is
        encoded once, and json.dumps() with these options builds an encoder per call.
        ensure_ascii keeps a lone surrogate intact as a \\udXXX escape: it has no UTF-8 form."""
        text = (
            f'{{"widget":{encode_basestring_ascii(self.widget)},"value":{value_json(self.value, compact=True)},'
            f'"ts":"{format_ts(self.ts)}","status":{encode_basestring_ascii(self.status)}'
        )
        if self.message:
            text += f',"message":{encode_basestring_ascii(self.message)}'
        return text + "}"


_STRICT = json.JSONEncoder(allow_nan=False)
_COMPACT = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def value_json(value: Any, compact: bool = False) -> str:
    """json.dumps(value, allow_nan=False), with compact separators when asked: the same
    text, ValueError for NaN and the infinities, TypeError for what has no JSON form.
    The scalars nearly every sample holds are written without an encoder (a tenth of
    the time; measured in bench/README.md), the rest by an encoder made once."""
    kind = type(value)
    if kind is float:
        if math.isfinite(value):
            return float.__repr__(value)
    elif kind is int:
        return int.__repr__(value)
    elif kind is str:
        return encode_basestring_ascii(value)
    elif value is None:
        return "null"
    elif kind is bool:
        return "true" if value else "false"
    return (_COMPACT if compact else _STRICT).encode(value)


_LAST_FORMATTED: tuple[datetime | None, str] = (None, "")


def format_ts(ts: datetime) -> str:
    """2026-11-21T10:15:02.120Z: the form the page and API use (milliseconds cut, not
    rounded). isoformat() is three times as fast as strftime(), and every sample is
    formatted at least once on its way out; the samples of one batch share their time
    (one object), which is formatted once for the stream and the push's answer."""
    global _LAST_FORMATTED
    last = _LAST_FORMATTED  # one read: another thread may swap it meanwhile
    if last[0] is ts:
        return last[1]
    text = ts.astimezone(UTC).isoformat(timespec="milliseconds")[:23] + "Z"
    _LAST_FORMATTED = (ts, text)
    return text


def utc(ts: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
