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

import argparse
import asyncio
import json
import math
import resource
import signal
import time
from datetime import UTC, datetime

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


def event_bytes(widget: str, value: float, event_id: int) -> bytes:
    """The event the real server sends for a sample of `widget` (its `id`, `event` and a
    JSON `data` of the same fields and size), for the bench's stand-in servers."""
    when = datetime.fromtimestamp(value, UTC)
    ts = when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
    data = json.dumps({"widget": widget, "value": value, "ts": ts, "status": "ok"}, separators=(",", ":"))
    return f"id: {event_id}\nevent: {widget}\ndata: {data}\n\n".encode()


# --- what the stand-in servers (baseline_tornado.py, floor_send.py) share ---------------


def stand_in_main(description: str, serve) -> None:
    """Their command line: --host, --port, --rate, --widget (repeated), --backlog;
    then `serve(args)` on an asyncio loop, with every file descriptor the hard limit allows."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rate", type=float, default=10.0, help="events per second over all widgets")
    parser.add_argument("--widget", action="append", help="a widget id (repeat); the rate is shared between them")
    parser.add_argument("--backlog", type=int, default=1024)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(serve(args))


async def publish_until_stopped(args: argparse.Namespace, publish) -> None:
    """Call publish(widget, value) for each widget's slots, the widgets taking turns on
    the grid, until SIGINT or SIGTERM."""
    widgets = args.widget or ["w0"]

    async def run_widget(widget: str, period: float, phase: float) -> None:
        while True:
            publish(widget, await tick(widget, period, phase))

    tasks = []
    if args.rate > 0:
        period = len(widgets) / args.rate
        tasks = [asyncio.create_task(run_widget(w, period, i * period / len(widgets))) for i, w in enumerate(widgets)]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for task in tasks:
        task.cancel()
