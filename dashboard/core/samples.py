"""The one value type that travels through the system: a Sample.

A sample's integer id is also its SSE event id, so ids must only grow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
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
        # ensure_ascii keeps a lone surrogate intact as a \\udXXX escape: it has no UTF-8 form.
        return json.dumps(self.as_dict(), ensure_ascii=True, separators=(",", ":"), allow_nan=False)


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
