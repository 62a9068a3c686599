"""Instants as people and programs write them: ISO 8601 or Unix seconds.

`import` reads them in files, the series API in its `from` and `to`; both want the
same rules and the same reasons when a text is neither.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

_UNIX = re.compile(r"-?[0-9]{1,12}(\.[0-9]{1,9})?")  # ASCII digits: \d takes any script's


def parse_time(text: str) -> float:
    """Unix seconds from "1796389200", "1796389200.25", "2026-12-04T10:15:02Z",
    "2026-12-04 10:15:02.120+01:00" or "2026-12-04" (no offset: UTC). ValueError
    with a reason otherwise."""
    text = text.strip()
    if _UNIX.fullmatch(text):
        return float(text)
    if text.endswith("z"):  # RFC 3339 allows a lower-case Z, which fromisoformat() does not take
        text = text[:-1] + "Z"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise ValueError(f"expected ISO 8601 or Unix seconds, got {shown!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = when.timestamp()
    if not math.isfinite(seconds):  # pragma: no cover - datetime keeps to years 1..9999
        raise ValueError(f"expected a time, got {text!r}")
    return seconds
