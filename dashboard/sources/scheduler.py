"""Runs the sources: each widget on its own interval, with a timeout, exponential
backoff on failure, change detection, then store-and-publish through the recorder.

Like Home Assistant's update coordinators, a source only fetches; this loop owns
the timing, and logs when a source goes from working to failing and when it
recovers, never on every failure, so a dead source cannot flood the journal.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..config import WidgetConfig
from ..core.samples import ERROR, OK, Sample, format_ts
from ..core.tasks import backoff, cancel_until_done
from ..core.values import clean_message
from ..core.views import ValueRejected, accept
from ..storage.recorder import Recorder
from . import SourceError

log = logging.getLogger("dashboard.scheduler")

# A streaming source's messages waiting to be committed, per widget, before the stream
# waits for the oldest: a flood is written in batches, and memory stays bounded.
MAX_IN_FLIGHT = 1000


@dataclass
class WidgetState:
    status: str = "pending"
    message: str | None = None
    failures: int = 0
    runs: int = 0
    last_success: float | None = None  # wall-clock seconds
    last_error: float | None = None
    last_duration: float | None = None


def _when(seconds: float | None) -> str | None:
    return None if seconds is None else format_ts(datetime.fromtimestamp(seconds, UTC))


class Scheduler:
    def __init__(
        self,
        widgets: dict[str, WidgetConfig],
        sources: dict[str, Any],
        recorder: Recorder,
        latest: dict[str, Sample] | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
        on_run: Callable[[str, str, float], None] | None = None,
    ):
        self.widgets = widgets
        self.sources = sources
        self.recorder = recorder
        self.last: dict[str, Sample] = dict(latest or {})
        self.states = {widget_id: WidgetState() for widget_id in sources}
        self._sleep = sleep
        self._clock = clock
        self._on_run = on_run  # (widget id, "ok" | "error", seconds): for metrics
        self._tasks: dict[str, asyncio.Task] = {}
        self._in_flight: dict[str, deque[asyncio.Future]] = {}  # a stream's writes not yet committed
        self._not_storing: set[str] = set()  # widgets whose last write failed (logged once)

    @property
    def running(self) -> bool:
        return bool(self._tasks) and all(not task.done() for task in self._tasks.values())

    @property
    def state(self) -> str:
        """idle: no widget has a ticker; running: every ticker's loop is alive; stopped:
        one ended (a bug, or shutting down). (A process without a scheduler is "off".)"""
        if not self.sources:
            return "idle"
        return "running" if self.running else "stopped"

    def report(self) -> dict[str, dict[str, Any]]:
        """What each source last did, for /healthz."""
        return {
            widget_id: {
                "status": state.status,
                "message": state.message,
                "failures": state.failures,
                "runs": state.runs,
                "last_success": _when(state.last_success),
                "last_error": _when(state.last_error),
            }
            for widget_id, state in self.states.items()
        }

    def start(self) -> None:
        for widget_id in self.sources:
            self._start(widget_id)

    def _start(self, widget_id: str) -> None:
        source = self.sources[widget_id]
        runner = self._stream if hasattr(source, "stream") else self._poll
        self._tasks[widget_id] = asyncio.create_task(
            runner(self.widgets[widget_id], source), name=f"source:{widget_id}"
        )

    def add(self, widget: WidgetConfig, source) -> None:
        """Run one more ticker, after start(): a config reload added or changed the widget."""
        self.widgets = {**self.widgets, widget.id: widget}
        self.sources[widget.id] = source
        self.states[widget.id] = WidgetState()
        self._start(widget.id)

    async def remove(self, widget_id: str) -> None:
        """Stop one ticker and close its source: a config reload removed or changed the widget."""
        task = self._tasks.pop(widget_id, None)
        if task is not None:
            await cancel_until_done([task])
        self.states.pop(widget_id, None)
        close = getattr(self.sources.pop(widget_id, None), "close", None)
        if close is not None:
            try:
                await close()
            except Exception:
                log.warning("closing the source of widget %s failed", widget_id, exc_info=True)

    async def stop(self) -> None:
        await cancel_until_done(list(self._tasks.values()))
        self._tasks.clear()
        for widget_id, source in self.sources.items():
            close = getattr(source, "close", None)
            if close is not None:
                try:
                    await close()
                except Exception:  # one source's failed goodbye must not keep the others (or the store) open
                    log.warning("closing the source of widget %s failed", widget_id, exc_info=True)

    async def _poll(self, widget: WidgetConfig, source) -> None:
        state = self.states[widget.id]
        while True:
            await self.run_once(widget, source)
            await self._sleep(backoff(widget.every, state.failures) if state.failures else widget.every)

    async def run_once(self, widget: WidgetConfig, source) -> None:
        """One fetch with its timeout, then success or failure handling. Never raises
        (but for cancellation): a broken source must not end its own loop."""
        started = time.perf_counter()
        try:
            value = await asyncio.wait_for(source.fetch(), widget.timeout)
            value = accept(widget.view, value, widget.value_map)
        except TimeoutError:
            await self._failed(widget, f"timed out after {widget.timeout:g}s", started)
        except (SourceError, ValueRejected) as exc:
            await self._failed(widget, str(exc) or type(exc).__name__, started)
        except Exception as exc:  # a bug in a source: keep the loop, say what it was
            await self._failed(widget, f"{type(exc).__name__}: {exc}", started, exc)
        else:
            await self._succeeded(widget, value, started)

    async def _stream(self, widget: WidgetConfig, source) -> None:
        state = self.states[widget.id]

        async def emit(value: Any) -> None:
            started = time.perf_counter()
            try:
                if isinstance(value, SourceError):
                    raise value  # one unreadable message: the widget says why, the stream goes on
                value = accept(widget.view, value, widget.value_map)
            except (SourceError, ValueRejected) as exc:
                await self._failed(widget, str(exc), started, wait=False)
            else:
                await self._succeeded(widget, value, started, wait=False)

        while True:
            try:
                await source.stream(emit)
                raise SourceError("stream ended")
            except SourceError as exc:
                await self._failed(widget, str(exc), time.perf_counter())
            except Exception as exc:
                await self._failed(widget, f"{type(exc).__name__}: {exc}", time.perf_counter(), exc)
            # An upstream may ask for its own reconnect delay (SSE "retry:"): back off from that.
            await self._sleep(backoff(getattr(source, "retry_delay", None) or widget.every, state.failures))

    async def _succeeded(self, widget: WidgetConfig, value: Any, started: float, *, wait: bool = True) -> None:
        state = self.states[widget.id]
        if state.failures:
            log.info("widget %s recovered after %d failed run(s)", widget.id, state.failures)
        self._ran(widget, state, OK, started)
        state.failures = 0
        state.status, state.message, state.last_success = OK, None, self._clock()
        last = self.last.get(widget.id)
        if widget.on_change and last is not None and last.status == OK and last.value == value:
            return
        await self._record(widget.id, value, OK, None, wait=wait)

    async def _failed(
        self,
        widget: WidgetConfig,
        message: str,
        started: float,
        unexpected: Exception | None = None,
        *,
        wait: bool = True,
    ) -> None:
        state = self.states[widget.id]
        message = clean_message(message) or "failed"  # what the page and the stream can show, like a value
        if not state.failures:
            # The traceback of a bug goes with this one line, not with every failed run.
            log.warning("widget %s failing: %s", widget.id, message, exc_info=unexpected)
        self._ran(widget, state, ERROR, started)
        state.failures += 1
        state.status, state.message, state.last_error = ERROR, message, self._clock()
        last = self.last.get(widget.id)
        if last is not None and last.status == ERROR and last.message == message:
            return  # the page already shows this failure
        # Keep the last good value: the page shows it, marked as failing.
        await self._record(widget.id, last.value if last is not None else None, ERROR, message, wait=wait)

    def _ran(self, widget: WidgetConfig, state: WidgetState, outcome: str, started: float) -> None:
        state.runs += 1
        state.last_duration = time.perf_counter() - started
        if self._on_run is not None:
            self._on_run(widget.id, outcome, state.last_duration)

    async def _record(self, widget_id: str, value: Any, status: str, message: str | None, *, wait: bool) -> None:
        if wait:
            try:
                self.last[widget_id] = await self.recorder.record(widget_id, value, status, message)
            except Exception:  # the database is down: the next run tries again
                log.exception("could not store a sample of widget %s", widget_id)
            return
        # A stream's next message does not wait for this one's commit: it joins the next
        # batch. Change detection goes on from the value as sent (id 0: not stored yet),
        # and back to the last stored one should the write fail.
        previous = self.last.get(widget_id)
        sent = self.last[widget_id] = Sample(0, widget_id, datetime.now(UTC), value, status, message)
        future = self.recorder.submit([(widget_id, value, status, message)])
        future.add_done_callback(lambda done: self._stored(widget_id, sent, previous, done))
        in_flight = self._in_flight.setdefault(widget_id, deque())
        in_flight.append(future)
        while in_flight and in_flight[0].done():
            in_flight.popleft()
        if len(in_flight) >= MAX_IN_FLIGHT:
            await asyncio.wait([in_flight.popleft()])

    def _stored(self, widget_id: str, sent: Sample, previous: Sample | None, done: asyncio.Future) -> None:
        if done.cancelled():
            return
        failure = done.exception()
        if self.last.get(widget_id) is sent:  # nothing newer was sent since
            if failure is None:
                self.last[widget_id] = done.result()[0]
            elif previous is None:
                del self.last[widget_id]
            else:
                self.last[widget_id] = previous
        if failure is None:
            self._not_storing.discard(widget_id)
        elif widget_id not in self._not_storing:  # once, not for every message of a flood
            self._not_storing.add(widget_id)
            log.error("could not store a sample of widget %s: %s", widget_id, failure)
