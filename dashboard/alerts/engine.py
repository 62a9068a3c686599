"""The alert engine: evaluates every widget's rules as its samples are written, and on a
timer (holds that end, staleness, repeats, silences that end); commits each change
with the notifications it calls for; tells open pages.

Deliberate oddities, please read before "fixing":
- observe() is called by the recorder right after a commit, between the samples
  being written and the hub, in the tickers' and the push handlers' own call: it
  must not wait for anything. It only queues the samples (those of widgets with
  rules) and wakes the engine's task, which does the rest.
- The engine's clock is its own (`clock`, injectable): a condition begins when the
  engine sees its sample, not at the sample's timestamp, so that tests can drive
  time and a restart does not count the downtime twice.
- Transitions are decided in memory, then committed in one transaction with their
  transition rows and outbox items; only then are they announced. If the commit
  fails (the database is away), the round is undone in memory and tried again on
  the next tick from the newest samples.
- Notifications are decided from state, not from events: a firing alert that is
  not silenced, not acknowledged and not kept quiet by a firing crit of its widget
  is told to every notifier of its route that has not heard of it yet. So an alert
  that fired during a silence is told once the silence ends, one whose notifier
  was added by a reload is told to it, and nothing is told twice, whatever the
  restarts in between: who was told is in the alert's row.
- A resolved alert is told to the notifiers that heard it fire, and to them only,
  silence or not: nobody is left believing that something still fires.
- Several processes (the Redis hub): one judges, the one holding the tickers' lease,
  and it reads the samples from the database (`tail`), since pushes are written by
  web processes whose samples it never sees otherwise; each round it also reads the
  acknowledgements and silences that other processes wrote. The web processes
  `follow`: they read the open alerts every tick, tell their pages what changed,
  and write acknowledgements and silences for the judge to find.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ..config import Config, DashboardConfig
from ..core.events import Alert
from ..core.samples import Sample
from ..core.tasks import cancel_until_done
from ..core.views import VIEWS
from .delivery import Delivery
from .rules import CANCELLED, FIRING, INHIBITS, PENDING, RESOLVED, Rule, Watch, route_of, rules_of
from .silences import Silence, silenced_by
from .store import AlertRecord, AlertStore, Writes

log = logging.getLogger("dashboard.alerts")

TICK = 1.0  # seconds between rounds without samples: holds, staleness, repeats, silences
TAIL_BATCH = 1000  # samples read from the database at once, by a judge that reads them there
JUDGE, FOLLOW = "judge", "follow"
ALERTS_VIEW = "alerts"
SendControl = Callable[[Iterable[str], Alert], None]


def status_views() -> frozenset[str]:
    return frozenset(name for name, view in VIEWS.items() if view.states is not None)


def alert_scope(config: Config, dashboard: DashboardConfig) -> frozenset[str]:
    """The widgets whose alerts a dashboard may show: its own, and those of every public
    dashboard. Never a widget that only a dashboard with other viewers shows."""
    public = {w for d in config.dashboards if d.auth == "public" for w in d.widgets}
    return frozenset(dashboard.widgets) | frozenset(public)


def alert_topics(config: Config) -> dict[str, tuple[str, ...]]:
    """widget -> the dashboards (hub topics) told of its alerts: those showing the widget,
    and those with an alerts view whose scope holds it."""
    out: dict[str, list[str]] = {}
    for dashboard in config.dashboards:
        views = {config.widgets[w].view for w in dashboard.widgets if w in config.widgets}
        scope = alert_scope(config, dashboard) if ALERTS_VIEW in views else frozenset(dashboard.widgets)
        for widget in scope:
            out.setdefault(widget, []).append(dashboard.id)
    return {widget: tuple(topics) for widget, topics in out.items()}


class AlertEngine:
    def __init__(
        self,
        config: Config,
        store: AlertStore,
        *,
        send_control: SendControl | None = None,
        clock: Callable[[], float] = time.time,
        delivery: Delivery | None = None,
        tick: float = TICK,
    ):
        self.store = store
        self.clock = clock
        self.tick = tick
        self.send_control = send_control
        self.delivery = delivery if delivery is not None else Delivery(store, config, clock=clock)
        self.config = config
        self.rules: dict[str, Rule] = {}
        self.by_widget: dict[str, list[Rule]] = {}
        self.topics: dict[str, tuple[str, ...]] = {}
        self.watches: dict[str, Watch] = {}
        self.records: dict[str, AlertRecord] = {}  # key -> its open alert (pending or firing)
        self.silences: list[Silence] = []
        self.last: dict[str, Sample] = {}  # widget -> its newest sample
        self.seen: dict[str, float] = {}  # widget -> when it last updated (engine clock)
        self._silenced: dict[str, str | None] = {}  # key -> what silenced it at the last round
        self._queue: deque[Sample] = deque()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self._last_prune = 0.0
        self.mode: str | None = None  # judge (evaluates and notifies), follow (reads what a judge wrote), or off
        self.tail = False  # a judge that reads the samples from the database (several processes)
        self._tail_id = 0  # the newest sample id read from there
        self._accepting = False  # samples are queued from the start of start() on
        self._configure(config)

    # --- configuration ----------------------------------------------------------------

    def _configure(self, config: Config) -> None:
        self.config = config
        self.rules = rules_of(config, status_views())
        self.by_widget = {}
        for rule in self.rules.values():
            self.by_widget.setdefault(rule.widget, []).append(rule)
        self.topics = alert_topics(config)
        now = self.clock()
        for key, rule in self.rules.items():
            watch = self.watches.get(key)
            if watch is None:
                self.watches[key] = Watch(rule)
            else:
                watch.rule = rule
            self.seen.setdefault(rule.widget, now)
        for key in [key for key in self.watches if key not in self.rules and key not in self.records]:
            del self.watches[key]

    @property
    def idle(self) -> bool:
        """No rule and no open alert: a round has nothing to read, judge or show."""
        return not self.rules and not self.records

    @property
    def active(self) -> bool:
        """This process knows the open alerts (it judges them, or follows the judge)."""
        return self.mode is not None

    def apply(self, config: Config) -> None:
        """A reload: new rules are watched from now, changed ones keep their alert, and the
        open alerts of removed rules are resolved at the next round."""
        self._configure(config)
        self.delivery.apply(config)
        self.wake()

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self, latest: Mapping[str, Sample] | None = None, *, run: bool = True, tail: bool = False) -> None:
        """Load the open alerts and silences, judge the newest samples, then evaluate on
        every sample and every tick (run=False: tests call evaluate() themselves). With
        `tail`, samples are read from the database instead of observed."""
        await self.stop()  # a follower that becomes the judge
        self.tail = tail
        self._accepting = not tail  # before any await: no sample written from now on is missed
        if tail:
            self._tail_id = await self.store.store.last_id()
        now = self.clock()
        records = await self.store.open_alerts()
        self.silences = await self.store.silences(active_at=now)
        for record in records:
            self.records[record.key] = record
            watch = self.watches.get(record.key)
            if watch is not None:
                watch.state = record.state
                watch.started = record.started_at
                watch.fired = record.fired_at
            self._silenced[record.key] = self.silenced(record.widget, now)
        for widget, sample in (latest or {}).items():
            if widget in self.by_widget:
                self.last[widget] = sample
        # Nothing has updated since before the start: staleness counts from now.
        for widget in self.by_widget:
            self.seen[widget] = now
        self.mode = JUDGE
        await self.evaluate()
        if run:
            self.delivery.start()
            self._task = asyncio.create_task(self._run(), name="alerts")

    async def follow(self, *, run: bool = True) -> None:
        """Show what the judge (another process) decides: read the open alerts and the
        silences now and every tick, and tell the pages what changed."""
        await self.stop()
        self.mode = FOLLOW
        await self.refresh()
        if run:
            self._task = asyncio.create_task(self._follow(), name="alerts-follow")

    async def stop(self) -> None:
        """Stop judging and sending (a notification cut short is sent again by whoever
        starts next, with the same id), or following; what is open stays in the database."""
        self._accepting = False
        self.mode = None
        if self._task is not None:
            await cancel_until_done([self._task])
            self._task = None
        await self.delivery.stop()
        self._queue.clear()
        self.records.clear()
        self._silenced.clear()
        self.watches = {key: Watch(rule) for key, rule in self.rules.items()}

    def wake(self) -> None:
        self._wake.set()

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database is away for a moment: the next tick tries again
                log.warning("reading the alerts failed", exc_info=True)

    async def refresh(self) -> None:
        """A follower's round: the open alerts and silences as the database has them."""
        if self.idle:
            return
        async with self._lock:
            now = self.clock()
            records = {record.key: record for record in await self.store.open_alerts()}
            self.silences = await self.store.silences(active_at=now)
            changed: dict[str, AlertRecord] = {}
            for key, record in records.items():
                old = self.records.get(key)
                if old is None or _shown(old) != _shown(record):
                    changed[key] = record
            for key, old in self.records.items():
                if key not in records or records[key].id != old.id:
                    gone = await self.store.get(old.id) if old.id is not None else None
                    if gone is None:  # a pending alert that never fired is deleted
                        gone = old.copy()
                        gone.state = CANCELLED
                    changed[f"{key}#{old.id}"] = gone
            self.records = records
            self._announce(now, changed)

    async def _pull(self) -> None:
        """A judge of several processes: the samples written since the last round, by
        any process, in id order (the writers' lock makes ids visible in that order)."""
        while self.by_widget:
            samples = await self.store.store.since(list(self.by_widget), self._tail_id, limit=TAIL_BATCH)
            for sample in samples[:TAIL_BATCH]:
                self._queue.append(sample)
                self._tail_id = sample.id
            if len(samples) <= TAIL_BATCH:
                return

    async def _shared_state(self, now: float, changed: dict[str, AlertRecord]) -> None:
        """A judge of several processes: what the others wrote (acknowledgements, silences)."""
        firing = {r.id: r for r in self.records.values() if r.id is not None and r.acked_by is None}
        for alert_id, (by, at) in (await self.store.acknowledgements(firing)).items():
            record = firing[alert_id]
            record.acked_by, record.acked_at = by, at
            changed[record.key] = record
        self.silences = await self.store.silences(active_at=now)

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.tick)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.evaluate()
                await self._maintain()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug: say so, and carry on with the next round
                log.exception("evaluating alerts failed")

    # --- input --------------------------------------------------------------------------

    def observe(self, samples: Iterable[Sample]) -> None:
        """Committed samples, in id order (the recorder's publish). Queues those of
        widgets with rules and wakes the engine; never waits (see the module docstring)."""
        by_widget = self.by_widget
        if not self._accepting or not by_widget:
            return  # not judging here (another process does, or not yet), or nothing to judge
        queued = False
        for sample in samples:
            if sample.widget in by_widget:
                self._queue.append(sample)
                queued = True
        if queued:
            self._wake.set()

    # --- a round ------------------------------------------------------------------------

    async def evaluate(self) -> None:
        """One round: the queued samples in order, then time (holds, staleness), then who
        must be told what; committed in one transaction, then announced."""
        if self.idle:
            return
        async with self._lock:
            now = self.clock()
            changed: dict[str, AlertRecord] = {}
            if self.tail:
                await self._pull()
                await self._shared_state(now, changed)
            watches = {
                key: Watch(w.rule, w.state, w.started, w.fired, w.clear_since) for key, w in self.watches.items()
            }
            records = {key: record.copy() for key, record in self.records.items()}
            writes = Writes()
            while self._queue:
                sample = self._queue.popleft()
                self.last[sample.widget] = sample
                self.seen[sample.widget] = now
                for rule in self.by_widget.get(sample.widget, ()):
                    self._step(rule, sample, now, writes, changed)
            for rule in self.rules.values():
                self._step(rule, self.last.get(rule.widget), now, writes, changed)
            self._retire(now, writes, changed)
            self._notify(now, writes, changed)
            if writes:
                try:
                    await self.store.apply(writes)
                except Exception:
                    self.watches, self.records = watches, records  # undone: tried again next round
                    if not self._failing:
                        log.exception("could not store alert changes; retrying every %gs", self.tick)
                    self._failing = True
                    return
                if self._failing:
                    log.info("alert changes stored again")
                self._failing = False
            self._announce(now, changed)
            if writes.notifies:
                self.delivery.wake()

    def _step(
        self, rule: Rule, sample: Sample | None, now: float, writes: Writes, changed: dict[str, AlertRecord]
    ) -> None:
        watch = self.watches[rule.key]
        seen = self.seen.get(rule.widget, now)
        transition = watch.evaluate(sample, seen, now)
        if transition is None:
            return
        record = self.records.get(rule.key)
        stale_for = now - seen
        value = sample.value if sample is not None else None
        if transition == CANCELLED:
            if record is not None:
                writes.drop(record)
                record.state = CANCELLED
                changed[rule.key] = record
                del self.records[rule.key]
            return
        if record is None:
            record = AlertRecord(
                rule.widget,
                rule.condition,
                rule.severity,
                PENDING,
                started_at=watch.started if watch.started is not None else now,
            )
            self.records[rule.key] = record
        firing = transition in (PENDING, FIRING)
        record.value = value
        record.message = rule.message(sample, firing=firing, stale_for=stale_for)
        record.state = transition
        if transition == FIRING:
            record.fired_at = now
        if transition == RESOLVED:
            record.resolved_at = now
            del self.records[rule.key]
        writes.save(record)
        writes.event(record, transition, now, value, record.message)
        changed[rule.key] = record
        if transition == RESOLVED:
            self._tell_resolved(rule, record, now, writes)

    def _tell_resolved(self, rule: Rule, record: AlertRecord, now: float, writes: Writes) -> None:
        payload = record.public(title=rule.title)
        for notifier in record.notified_to:
            if notifier in self.config.notifiers:
                writes.notify(record, notifier, RESOLVED, payload, now)

    def _retire(self, now: float, writes: Writes, changed: dict[str, AlertRecord]) -> None:
        """Open alerts whose rule is gone (a reload, a restart with another config) resolve."""
        for key, record in list(self.records.items()):
            if key in self.rules:
                continue
            del self.records[key]
            self.watches.pop(key, None)
            if record.state == PENDING:
                writes.drop(record)
                record.state = CANCELLED
            else:
                record.state, record.resolved_at = RESOLVED, now
                record.message = f"{record.message or record.key}: no longer watched (the configuration changed)"
                writes.save(record)
                writes.event(record, RESOLVED, now, record.value, record.message)
                payload = record.public(title=self._title(record.widget))
                for notifier in record.notified_to:
                    if notifier in self.config.notifiers:
                        writes.notify(record, notifier, RESOLVED, payload, now)
            changed[key] = record

    def _notify(self, now: float, writes: Writes, changed: dict[str, AlertRecord]) -> None:
        """Who must be told that an alert fires, or fires still (see the module docstring)."""
        repeat = self.config.alerts.repeat_interval
        for key, record in self.records.items():
            if record.state != FIRING or record.acked_by is not None:
                continue
            if self.silenced(record.widget, now) or self.inhibited(record):
                continue
            rule = self.rules[key]
            route = [name for name in route_of(self.config, record.widget) if name in self.config.notifiers]
            targets = [name for name in route if name not in record.notified_to]
            if targets:
                event = "firing"
            elif record.notified_to and repeat > 0 and now - (record.notified_at or now) >= repeat:
                targets, event = [n for n in record.notified_to if n in self.config.notifiers], "repeat"
            else:
                continue
            payload = record.public(title=rule.title)
            for notifier in targets:
                writes.notify(record, notifier, event, payload, now)
            if event == "firing":
                record.notified_to = (*record.notified_to, *targets)
            record.notified_at = now
            writes.save(record)
            changed.setdefault(key, record)

    def inhibited(self, record: AlertRecord) -> bool:
        """A warn kept quiet by the crit (or down) of the same widget, firing."""
        for stronger, weaker in INHIBITS.items():
            if record.condition == weaker:
                other = self.records.get(f"{record.widget}:{stronger}")
                if other is not None and other.state == FIRING:
                    return True
        return False

    def silenced(self, widget: str, now: float | None = None) -> str | None:
        return silenced_by(widget, self.clock() if now is None else now, self.config.maintenance, self.silences)

    def _title(self, widget: str) -> str:
        config = self.config.widgets.get(widget)
        return config.title if config is not None else widget

    def public(self, record: AlertRecord, now: float | None = None) -> dict[str, Any]:
        return record.public(title=self._title(record.widget), silenced=self.silenced(record.widget, now))

    def _announce(self, now: float, changed: dict[str, AlertRecord]) -> None:
        """Tell open pages what changed: alerts that moved, and those whose silence began
        or ended."""
        for key, record in self.records.items():
            silenced = self.silenced(record.widget, now)
            if self._silenced.get(key, None) != silenced:
                changed.setdefault(key, record)
            self._silenced[key] = silenced
        for key in list(self._silenced):
            if key not in self.records:
                del self._silenced[key]
        if self.send_control is None:
            return
        for record in changed.values():
            topics = self.topics.get(record.widget, ())
            if topics and record.id is not None:
                self.send_control(topics, Alert((self.public(record, now),)))

    async def _maintain(self) -> None:
        """Now and then: forget what is older than the retention; re-read the silences
        (another process may have added one)."""
        now = self.clock()
        storage = self.config.storage
        if now - self._last_prune < storage.prune_every:
            return
        self._last_prune = now
        try:
            await self.store.prune(now - storage.retention)
            self.silences = await self.store.silences(active_at=now)
        except Exception:
            log.warning("pruning old alerts failed", exc_info=True)

    # --- what is open -------------------------------------------------------------------

    def current(self, widgets: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """The open alerts (pending and firing), crit first, then the oldest first."""
        wanted = None if widgets is None else set(widgets)
        now = self.clock()
        records = [r for r in self.records.values() if r.id is not None and (wanted is None or r.widget in wanted)]
        records.sort(key=lambda r: (r.state != FIRING, r.severity != "crit", r.fired_at or r.started_at))
        return [self.public(record, now) for record in records]

    def opening(self, dashboard: DashboardConfig) -> list[bytes]:
        """What a stream of this dashboard opens with: every open alert in its scope (the
        page replaces what it had), or nothing when no alert concerns it (or when another
        process judges the alerts)."""
        if not self.active:
            return []
        scope = alert_scope(self.config, dashboard) if self._has_view(dashboard) else frozenset(dashboard.widgets)
        if not any(widget in self.by_widget for widget in scope):
            return []
        return [Alert(tuple(self.current(scope)), complete=True).encode()]

    def _has_view(self, dashboard: DashboardConfig) -> bool:
        return any(w in self.config.widgets and self.config.widgets[w].view == ALERTS_VIEW for w in dashboard.widgets)

    def page_alerts(self, dashboard: DashboardConfig) -> list[dict[str, Any]]:
        scope = alert_scope(self.config, dashboard) if self._has_view(dashboard) else frozenset(dashboard.widgets)
        return self.current(scope)

    def firing_by_severity(self) -> dict[str, int]:
        counts = {"warn": 0, "crit": 0}
        for record in self.records.values():
            if record.state == FIRING:
                counts[record.severity] = counts.get(record.severity, 0) + 1
        return counts

    def report(self) -> dict[str, Any]:
        """For /healthz."""
        firing = self.firing_by_severity()
        if self.mode == FOLLOW:  # another process judges, and sends
            return {"mode": FOLLOW, "rules": len(self.rules), "firing": sum(firing.values())}
        return {
            "mode": JUDGE,
            "rules": len(self.rules),
            "firing": sum(firing.values()),
            "pending": sum(1 for r in self.records.values() if r.state == PENDING),
            "storing": "failing" if self._failing else "ok",
            "notifiers": self.delivery.report(),
        }

    # --- operations -------------------------------------------------------------------

    async def acknowledge(self, alert_id: int, by: str) -> dict[str, Any] | None:
        """Acknowledge a firing alert: it stops repeating, and the page says by whom.
        None when no open alert has this id; the alert as it is otherwise (acknowledging
        twice keeps the first)."""
        async with self._lock:
            record = next((r for r in self.records.values() if r.id == alert_id), None)
            if record is None and self.mode == FOLLOW:  # it may have fired since the last refresh
                record = await self.store.get(alert_id)
                if record is None or record.state not in (PENDING, FIRING):
                    return None
                self.records[record.key] = record
            if record is None:
                return None
            if record.acked_by is None and record.state == FIRING:
                now = self.clock()
                writes = Writes()
                writes.acknowledge(record, by, now)
                writes.event(record, "acknowledged", now, record.value, record.message, actor=by)
                await self.store.apply(writes)
                record.acked_by, record.acked_at = by, now
                log.info("alert %d (%s) acknowledged by %s", alert_id, record.key, by)
                self._announce(now, {record.key: record})
            return self.public(record)

    async def silence(
        self, widgets: Sequence[str] | None, duration: float, reason: str | None, by: str | None
    ) -> Silence:
        async with self._lock:
            now = self.clock()
            silence = await self.store.add_silence(widgets, now, now + duration, reason, by)
            self.silences.append(silence)
            log.info("silence %d: %s for %gs by %s", silence.id, ", ".join(widgets or ["every widget"]), duration, by)
            self._announce(now, {})
        return silence

    async def end_silence(self, silence_id: int) -> Silence | None:
        async with self._lock:
            now = self.clock()
            silence = await self.store.end_silence(silence_id, now)
            if silence is None:
                return None
            self.silences = [s if s.id != silence_id else silence for s in self.silences]
            self.silences = [s for s in self.silences if s.ends > now]
            log.info("silence %d ended", silence_id)
        self.wake()  # alerts it kept quiet are told now
        return silence


def _shown(record: AlertRecord) -> tuple[Any, ...]:
    """What a page shows of an alert: a change of any of it is announced."""
    return (record.id, record.state, record.severity, record.message, record.acked_by, record.fired_at)
