"""The bench's event source, for the `python` source kind: each value is the
time the event was due, so a client's latency is its receive time minus the value.

    every = "1ms"
    timeout = "10s"
    on_change = false
    source = { kind = "python", function = "clock_source:tick", args = { name = "w0", period = 0.1 } }

tick() waits for the widget's next slot on a fixed grid (phase + k * period,
in wall-clock seconds) and returns that slot's time, so the rate is exact
whatever the scheduler's own drift, and widgets sharing a rate at different
phases publish evenly spread. A server that falls behind gets every slot all
the same, late, and the lateness counts as latency: the offered load does not
shrink when the server struggles. The scheduler calls it back to back (`every`
well below the period, `timeout` above it). A module-level dict keeps each
widget's next slot: this is bench code, loaded once per server process.
"""

from __future__ import annotations

import asyncio
import math
import time

_next_slot: dict[str, float] = {}


def first_slot(now: float, period: float, phase: float) -> float:
    return math.ceil((now - phase) / period) * period + phase


def slots_between(start: float, end: float, period: float, phase: float) -> int:
    """How many slots of the grid fall in [start, end]."""
    return max(0, math.floor((end - phase) / period) - math.ceil((start - phase) / period) + 1)


async def tick(name: str, period: float, phase: float = 0.0) -> float:
    now = time.time()
    due = _next_slot.get(name)
    if due is None:
        due = first_slot(now, period, phase)
    _next_slot[name] = due + period
    if due > now:
        await asyncio.sleep(due - now)
    return due


def now() -> float:
    return time.time()
