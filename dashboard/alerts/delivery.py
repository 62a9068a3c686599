"""The outbox, delivered: what the engine committed for each notifier goes out as
notifications, grouped, each attempt with a timeout, retried with backoff.

- Grouping: a notifier's outbox items wait until the oldest of them is
  `group_window` old; then all of them become one notification (one message).
  The grouping is committed (with a fresh uid) before the first attempt, so a
  notification sent again after a crash is the same one, uid included, and a
  receiver can drop the repeat.
- Order: one notification per notifier at a time; the next is grouped once the
  previous one went or was given up, so a receiver never hears "resolved" before
  "firing".
- Failure: attempt n failed -> the next after 5 s * 2**(n-1), at most 5 minutes;
  after `retries` retries the notification is given up (logged, counted). Each
  notifier is its own task: a slow or failing one holds up nobody else.

Time is `clock()` (epoch seconds) and waiting is `sleep()`, both injectable; tests
call run_once() with a driven clock.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from ..config import Config
from ..core.tasks import backoff, cancel_until_done
from .message import Item, message_for
from .notifiers import Notifier, NotifyError, build_notifier
from .store import FAILED, SENDING, SENT, AlertStore, Notification, OutboxItem, iso

log = logging.getLogger("dashboard.alerts")

FIRST_BACKOFF = 5.0
IDLE_WAIT = 60.0  # nothing due: look again after this long anyway (the database may have news)


@dataclass
class NotifierHealth:
    """How one notifier is doing, for /healthz and /metrics."""

    sent: int = 0  # notifications delivered
    failed: int = 0  # attempts that failed
    dropped: int = 0  # notifications given up after every retry
    failures: int = 0  # failed attempts in a row
    last_error: str | None = None
    last_success: float | None = None
    last_failure: float | None = None

    def report(self, queued: int) -> dict[str, object]:
        return {
            "status": "failing" if self.failures else "ok",
            "failures": self.failures,
            "queued": queued,
            "sent": self.sent,
            "failed": self.failed,
            "dropped": self.dropped,
            "last_error": self.last_error,
            "last_success": iso(self.last_success),
            "last_failure": iso(self.last_failure),
        }


class Delivery:
    def __init__(
        self,
        store: AlertStore,
        config: Config,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        build: Callable[..., Notifier] = build_notifier,
    ):
        self.store = store
        self.config = config
        self._clock = clock
        self._sleep = sleep
        self._build = build
        self.notifiers: dict[str, Notifier] = {name: build(n) for name, n in config.notifiers.items()}
        self.health: dict[str, NotifierHealth] = {name: NotifierHealth() for name in config.notifiers}
        self.queued: dict[str, int] = {}  # notifier -> items and notifications waiting
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        # notification id -> attempts made: a read of the database that was older than
        # the end of an attempt must not start that attempt again.
        self._attempted: dict[int, int] = {}
        self._round = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def apply(self, config: Config) -> None:
        """A reload: new or changed notifiers take effect for the next attempt."""
        self.config = config
        self.notifiers = {
            name: self.notifiers[name]
            if name in self.notifiers and self.notifiers[name].config == n
            else self._build(n)
            for name, n in config.notifiers.items()
        }
        for name in config.notifiers:
            self.health.setdefault(name, NotifierHealth())
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="alert-delivery")

    async def stop(self) -> None:
        await cancel_until_done([task for task in (self._task, *self._in_flight.values()) if task is not None])
        self._task = None
        self._in_flight.clear()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                wait = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database is away: try again soon
                log.exception("delivering notifications failed; trying again")
                wait = FIRST_BACKOFF
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            except TimeoutError:
                pass

    async def run_once(self, *, wait: bool = False) -> float:
        """Group what is due and start the attempts that are due; the seconds until
        something else will be. With wait=True the attempts are awaited (tests)."""
        async with self._round:
            started, wait_for = await self._round_once()
        if wait and started:
            await asyncio.gather(*started, return_exceptions=True)
        return wait_for

    async def _round_once(self) -> tuple[list[asyncio.Task[None]], float]:
        now = self._clock()
        sending = await self.store.sending()
        self._attempted = {n.id: self._attempted[n.id] for n in sending if n.id in self._attempted}
        busy = {n.notifier for n in sending}
        items = await self.store.unsent_items()
        by_notifier: dict[str, list[OutboxItem]] = {}
        for item in items:
            by_notifier.setdefault(item.notifier, []).append(item)
        self.queued = {name: len(list_) for name, list_ in by_notifier.items()}
        for notification in sending:
            self.queued[notification.notifier] = self.queued.get(notification.notifier, 0) + len(notification.items)
        next_due = now + IDLE_WAIT
        window = self.config.alerts.group_window
        for notifier, waiting in by_notifier.items():
            if notifier in busy:
                continue  # after the notification in flight
            due = waiting[0].created_at + window
            if due > now:
                next_due = min(next_due, due)
                continue
            sending.append(await self.store.group(notifier, waiting, now))
        started = []
        for notification in sending:
            if (
                notification.notifier in self._in_flight
                or self._attempted.get(notification.id, 0) > notification.attempts
            ):
                continue
            if notification.next_attempt_at > now:
                next_due = min(next_due, notification.next_attempt_at)
                continue
            task = asyncio.create_task(self._attempt(notification), name=f"notify:{notification.notifier}")
            self._in_flight[notification.notifier] = task
            task.add_done_callback(functools.partial(self._done, notification.notifier))
            started.append(task)
        return started, max(0.0, next_due - self._clock())

    def _done(self, notifier: str, _task: asyncio.Task[None]) -> None:
        self._in_flight.pop(notifier, None)
        self.wake()

    async def _attempt(self, notification: Notification) -> None:
        name = notification.notifier
        health = self.health.setdefault(name, NotifierHealth())
        notifier = self.notifiers.get(name)
        attempts = notification.attempts + 1
        self._attempted[notification.id] = attempts
        try:
            if notifier is None:
                raise NotifyError(f"notifier {name!r} is no longer configured")
            message = message_for(
                self.config, notification.uid, [Item(item.event, item.payload) for item in notification.items]
            )
            answer = await asyncio.wait_for(notifier.send(message), notifier.config.timeout * 3 + 1)
        except asyncio.CancelledError:
            raise
        except (NotifyError, TimeoutError) as exc:
            await self._failed(notification, attempts, str(exc) or "timed out", health, notifier)
            return
        except Exception as exc:  # a bug in a notifier: counted as a failure, with its traceback once
            log.exception("notifier %s failed unexpectedly", name)
            await self._failed(notification, attempts, f"{type(exc).__name__}: {exc}", health, notifier)
            return
        now = self._clock()
        health.sent += 1
        if health.failures:
            log.info("notifier %s works again after %d failed attempt(s)", name, health.failures)
        health.failures, health.last_success = 0, now
        await self.store.attempted(notification, status=SENT, attempts=attempts, next_attempt=now, error=None, now=now)
        log.info(
            "notification %s (%d alert event(s)) sent through %s: %s",
            notification.uid,
            len(notification.items),
            name,
            answer,
        )

    async def _failed(
        self, notification: Notification, attempts: int, reason: str, health: NotifierHealth, notifier: Notifier | None
    ) -> None:
        now = self._clock()
        health.failed += 1
        health.failures += 1
        health.last_error, health.last_failure = reason, now
        retries = notifier.config.retries if notifier is not None else 0
        if attempts > retries:
            health.dropped += 1
            status, next_attempt = FAILED, now
            log.error(
                "notification %s through %s given up after %d attempt(s): %s",
                notification.uid,
                notification.notifier,
                attempts,
                reason,
            )
        else:
            status, next_attempt = SENDING, now + backoff(FIRST_BACKOFF, attempts)
            if health.failures == 1:  # on the transition, not on every retry
                log.warning("notifier %s failing: %s (retrying)", notification.notifier, reason)
        await self.store.attempted(
            notification, status=status, attempts=attempts, next_attempt=next_attempt, error=reason, now=now
        )

    def report(self) -> dict[str, dict[str, object]]:
        return {
            name: self.health.get(name, NotifierHealth()).report(self.queued.get(name, 0))
            for name in self.config.notifiers
        }

    def counts(self) -> Mapping[str, NotifierHealth]:
        return self.health
