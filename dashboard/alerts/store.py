"""The alerting tables, read and written: alerts and their transitions, the outbox of
notifications, silences.

Every change of an alert is written in one transaction with what it calls for (its
transition row, the outbox rows of the notifications it needs): a notification is
never lost between a commit and a send, and never invented by a transition that
rolled back. The outbox is then grouped into notifications (each with its uid) in a
transaction of its own, before anything is sent: a notification sent again after a
crash is the same one, with the same uid.

Writes start with a write statement, never a read: on SQLite, a transaction that
reads first and writes later may be refused outright when another connection wrote
in between, where one that writes first waits its turn (busy_timeout).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..core.samples import format_ts, utc
from ..storage.store import Store
from .schema import alert_events, alert_notifications, alert_outbox, alert_silences, alerts
from .silences import Silence

SENDING, SENT, FAILED = "sending", "sent", "failed"


def to_datetime(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def to_seconds(ts: datetime | None) -> float | None:
    return None if ts is None else utc(ts).timestamp()


def iso(seconds: float | None) -> str | None:
    return None if seconds is None else format_ts(datetime.fromtimestamp(seconds, UTC))


@dataclass
class AlertRecord:
    """One alert, as its row says (times in epoch seconds)."""

    widget: str
    condition: str
    severity: str
    state: str
    started_at: float
    id: int | None = None
    fired_at: float | None = None
    resolved_at: float | None = None
    value: Any = None
    message: str | None = None
    acked_by: str | None = None
    acked_at: float | None = None
    notified_to: tuple[str, ...] = ()
    notified_at: float | None = None

    @property
    def key(self) -> str:
        return f"{self.widget}:{self.condition}"

    def copy(self) -> AlertRecord:
        return dataclasses.replace(self)

    def public(self, *, title: str, silenced: str | None = None) -> dict[str, Any]:
        """The alert as the API, the page and the notifications show it."""
        return {
            "id": self.id,
            "widget": self.widget,
            "title": title,
            "condition": self.condition,
            "severity": self.severity,
            "state": self.state,
            "started_at": iso(self.started_at),
            "fired_at": iso(self.fired_at),
            "resolved_at": iso(self.resolved_at),
            "value": self.value,
            "message": self.message,
            "acked_by": self.acked_by,
            "acked_at": iso(self.acked_at),
            "silenced": silenced,
        }

    def row(self, *, acknowledgement: bool = True) -> dict[str, Any]:
        """The row's values; without the acknowledgement for an update, which must never
        undo one that another process (or request) wrote meanwhile."""
        row = {
            "widget": self.widget,
            "condition": self.condition,
            "severity": self.severity,
            "state": self.state,
            "started_at": to_datetime(self.started_at),
            "fired_at": to_datetime(self.fired_at),
            "resolved_at": to_datetime(self.resolved_at),
            "value": self.value,
            "message": self.message,
            "acked_by": self.acked_by,
            "acked_at": to_datetime(self.acked_at),
            "notified_to": list(self.notified_to),
            "notified_at": to_datetime(self.notified_at),
        }
        if not acknowledgement:
            del row["acked_by"], row["acked_at"]
        return row


def _new_id(result: Any) -> int:
    key = result.inserted_primary_key
    if not key:
        raise RuntimeError("the database gave no id for a new row")
    return int(key[0])


def _record(row: Any) -> AlertRecord:
    return AlertRecord(
        id=row.id,
        widget=row.widget,
        condition=row.condition,
        severity=row.severity,
        state=row.state,
        started_at=to_seconds(row.started_at) or 0.0,
        fired_at=to_seconds(row.fired_at),
        resolved_at=to_seconds(row.resolved_at),
        value=row.value,
        message=row.message,
        acked_by=row.acked_by,
        acked_at=to_seconds(row.acked_at),
        notified_to=tuple(row.notified_to or ()),
        notified_at=to_seconds(row.notified_at),
    )


@dataclass
class Writes:
    """The writes of one evaluation round, in order, for one transaction."""

    steps: list[tuple[str, Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.steps)

    def save(self, record: AlertRecord) -> None:
        """Insert the alert (its id is set at commit) or update it."""
        self.steps.append(("save", record))

    def acknowledge(self, record: AlertRecord, by: str, at: float) -> None:
        """Set who acknowledged the alert, unless somebody did already."""
        self.steps.append(("ack", (record, by, at)))

    def drop(self, record: AlertRecord) -> None:
        """A pending alert that never fired: it and its transitions go."""
        self.steps.append(("drop", record))

    def event(
        self, record: AlertRecord, state: str, ts: float, value: Any, message: str | None, actor: str | None = None
    ) -> None:
        self.steps.append(("event", (record, state, ts, value, message, actor)))

    def notify(self, record: AlertRecord, notifier: str, event: str, payload: dict[str, Any], ts: float) -> None:
        self.steps.append(("outbox", (record, notifier, event, payload, ts)))

    @property
    def notifies(self) -> bool:
        return any(kind == "outbox" for kind, _ in self.steps)


@dataclass(frozen=True)
class OutboxItem:
    id: int
    notifier: str
    alert_id: int
    event: str  # firing, repeat, resolved
    created_at: float
    payload: dict[str, Any]


@dataclass(frozen=True)
class Notification:
    """One message to one notifier: its outbox items, grouped once, sent until it went
    (or was given up); `uid` is the same on every attempt."""

    id: int
    uid: str
    notifier: str
    created_at: float
    attempts: int
    next_attempt_at: float
    status: str = SENDING
    last_error: str | None = None
    items: tuple[OutboxItem, ...] = ()


def _item(row: Any) -> OutboxItem:
    return OutboxItem(
        row.id, row.notifier, row.alert_id, row.event, to_seconds(row.created_at) or 0.0, dict(row.payload or {})
    )


def _silence(row: Any) -> Silence:
    ends = to_seconds(row.ends_at) or 0.0
    if row.ended_at is not None:
        ends = min(ends, to_seconds(row.ended_at) or ends)
    widgets = tuple(row.widgets) if row.widgets is not None else None
    return Silence(row.id, widgets, to_seconds(row.starts_at) or 0.0, ends, row.reason, row.created_by)


class AlertStore:
    """The alerting tables, through the Store's engine (opened and migrated by it)."""

    def __init__(self, store: Store):
        self.store = store

    @property
    def engine(self) -> AsyncEngine:
        engine = self.store.engine
        if engine is None:
            raise RuntimeError("the store is not open")
        return engine

    # --- alerts -------------------------------------------------------------------

    async def open_alerts(self) -> list[AlertRecord]:
        """Every alert that is pending or firing."""
        query = select(alerts).where(alerts.c.state.in_(("pending", "firing"))).order_by(alerts.c.id)
        async with self.engine.connect() as conn:
            return [_record(row) for row in (await conn.execute(query)).all()]

    async def apply(self, writes: Writes) -> None:
        """The writes of a round, in one transaction; ids of new alerts are set on them."""
        async with self.engine.begin() as conn:
            for kind, step in writes.steps:
                await self._step(conn, kind, step)

    async def _step(self, conn: AsyncConnection, kind: str, step: Any) -> None:
        if kind == "save":
            record: AlertRecord = step
            if record.id is None:
                result = await conn.execute(insert(alerts).values(**record.row()))
                record.id = _new_id(result)
            else:
                values = record.row(acknowledgement=False)
                await conn.execute(update(alerts).where(alerts.c.id == record.id).values(**values))
        elif kind == "ack":
            record, by, at = step
            await conn.execute(
                update(alerts)
                .where(alerts.c.id == record.id, alerts.c.acked_by.is_(None))
                .values(acked_by=by, acked_at=to_datetime(at))
            )
        elif kind == "drop":
            if step.id is not None:
                await conn.execute(delete(alert_events).where(alert_events.c.alert_id == step.id))
                await conn.execute(delete(alerts).where(alerts.c.id == step.id))
        elif kind == "event":
            record, state, ts, value, message, actor = step
            await conn.execute(
                insert(alert_events).values(
                    alert_id=record.id, ts=to_datetime(ts), state=state, value=value, message=message, actor=actor
                )
            )
        elif kind == "outbox":
            record, notifier, event, payload, ts = step
            payload = {**payload, "id": record.id}
            await conn.execute(
                insert(alert_outbox).values(
                    notifier=notifier, alert_id=record.id, event=event, created_at=to_datetime(ts), payload=payload
                )
            )

    async def acknowledgements(self, alert_ids: Iterable[int]) -> dict[int, tuple[str, float]]:
        """Who acknowledged which of these alerts, and when (another process may have)."""
        ids = list(alert_ids)
        if not ids:
            return {}
        query = select(alerts.c.id, alerts.c.acked_by, alerts.c.acked_at).where(
            alerts.c.id.in_(ids), alerts.c.acked_by.is_not(None)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {row.id: (row.acked_by, to_seconds(row.acked_at) or 0.0) for row in rows}

    async def get(self, alert_id: int) -> AlertRecord | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(alerts).where(alerts.c.id == alert_id))).first()
        return _record(row) if row is not None else None

    async def find(
        self, *, states: Sequence[str] | None = None, widgets: Iterable[str] | None = None, limit: int = 100
    ) -> list[AlertRecord]:
        """Alerts, newest first: of these states and widgets (None: any)."""
        query = select(alerts)
        if states is not None:
            query = query.where(alerts.c.state.in_(list(states)))
        if widgets is not None:
            query = query.where(alerts.c.widget.in_(list(widgets)))
        query = query.order_by(alerts.c.id.desc()).limit(limit)
        async with self.engine.connect() as conn:
            return [_record(row) for row in (await conn.execute(query)).all()]

    async def events(self, alert_id: int) -> list[dict[str, Any]]:
        """An alert's transitions, oldest first."""
        query = select(alert_events).where(alert_events.c.alert_id == alert_id).order_by(alert_events.c.id)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            {"state": r.state, "ts": iso(to_seconds(r.ts)), "value": r.value, "message": r.message, "by": r.actor}
            for r in rows
        ]

    # --- the outbox -----------------------------------------------------------------

    async def unsent_items(self) -> list[OutboxItem]:
        """Outbox items not yet grouped into a notification, oldest first."""
        query = select(alert_outbox).where(alert_outbox.c.notification_id.is_(None)).order_by(alert_outbox.c.id)
        async with self.engine.connect() as conn:
            return [_item(row) for row in (await conn.execute(query)).all()]

    async def group(self, notifier: str, items: Sequence[OutboxItem], now: float) -> Notification:
        """Make one notification of these items, before anything is sent."""
        uid = str(uuid.uuid4())
        async with self.engine.begin() as conn:
            result = await conn.execute(
                insert(alert_notifications).values(
                    uid=uid,
                    notifier=notifier,
                    created_at=to_datetime(now),
                    status=SENDING,
                    attempts=0,
                    next_attempt_at=to_datetime(now),
                )
            )
            notification_id = _new_id(result)
            await conn.execute(
                update(alert_outbox)
                .where(alert_outbox.c.id.in_([item.id for item in items]))
                .values(notification_id=notification_id)
            )
        return Notification(notification_id, uid, notifier, now, 0, now, items=tuple(items))

    async def sending(self) -> list[Notification]:
        """Notifications not yet sent nor given up, oldest first, with their items."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(alert_notifications)
                    .where(alert_notifications.c.status == SENDING)
                    .order_by(alert_notifications.c.id)
                )
            ).all()
            if not rows:
                return []
            items = (
                await conn.execute(
                    select(alert_outbox)
                    .where(alert_outbox.c.notification_id.in_([row.id for row in rows]))
                    .order_by(alert_outbox.c.id)
                )
            ).all()
        by_notification: dict[int, list[OutboxItem]] = {}
        for row in items:
            by_notification.setdefault(row.notification_id, []).append(_item(row))
        return [
            Notification(
                row.id,
                row.uid,
                row.notifier,
                to_seconds(row.created_at) or 0.0,
                row.attempts,
                to_seconds(row.next_attempt_at) or 0.0,
                row.status,
                row.last_error,
                tuple(by_notification.get(row.id, ())),
            )
            for row in rows
        ]

    async def attempted(
        self,
        notification: Notification,
        *,
        status: str,
        attempts: int,
        next_attempt: float,
        error: str | None,
        now: float,
    ) -> None:
        values: dict[str, Any] = {
            "status": status,
            "attempts": attempts,
            "next_attempt_at": to_datetime(next_attempt),
            "last_error": error,
        }
        if status == SENT:
            values["sent_at"] = to_datetime(now)
        async with self.engine.begin() as conn:
            await conn.execute(
                update(alert_notifications).where(alert_notifications.c.id == notification.id).values(**values)
            )

    async def notifications(self, limit: int = 100) -> list[dict[str, Any]]:
        """Recent notifications, newest first (for the curious and the tests)."""
        query = select(alert_notifications).order_by(alert_notifications.c.id.desc()).limit(limit)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            {
                "id": row.id,
                "uid": row.uid,
                "notifier": row.notifier,
                "status": row.status,
                "attempts": row.attempts,
                "last_error": row.last_error,
            }
            for row in rows
        ]

    # --- silences -----------------------------------------------------------------

    async def add_silence(
        self, widgets: Sequence[str] | None, starts: float, ends: float, reason: str | None, created_by: str | None
    ) -> Silence:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                insert(alert_silences).values(
                    widgets=list(widgets) if widgets is not None else None,
                    starts_at=to_datetime(starts),
                    ends_at=to_datetime(ends),
                    reason=reason,
                    created_by=created_by,
                )
            )
            silence_id = _new_id(result)
        return Silence(silence_id, tuple(widgets) if widgets is not None else None, starts, ends, reason, created_by)

    async def end_silence(self, silence_id: int, now: float) -> Silence | None:
        """End a silence now (if it has not ended already); None when there is no such silence."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(alert_silences)
                .where(
                    alert_silences.c.id == silence_id,
                    alert_silences.c.ended_at.is_(None),
                    alert_silences.c.ends_at > to_datetime(now),
                )
                .values(ended_at=to_datetime(now))
            )
            row = (await conn.execute(select(alert_silences).where(alert_silences.c.id == silence_id))).first()
        return _silence(row) if row is not None else None

    async def silences(self, *, active_at: float | None = None, limit: int = 1000) -> list[Silence]:
        """Silences that have not ended at `active_at` (None: all, newest first)."""
        query = select(alert_silences)
        if active_at is not None:
            moment = to_datetime(active_at)
            query = query.where(
                alert_silences.c.ends_at > moment,
                or_(alert_silences.c.ended_at.is_(None), alert_silences.c.ended_at > moment),
            )
        query = query.order_by(alert_silences.c.id.desc()).limit(limit)
        async with self.engine.connect() as conn:
            return [_silence(row) for row in (await conn.execute(query)).all()]

    # --- retention -----------------------------------------------------------------

    async def prune(self, before: float) -> int:
        """Forget resolved alerts, finished notifications and silences that ended before `before`."""
        moment = to_datetime(before)
        async with self.engine.begin() as conn:
            old = select(alerts.c.id).where(alerts.c.state == "resolved", alerts.c.resolved_at < moment)
            await conn.execute(delete(alert_events).where(alert_events.c.alert_id.in_(old)))
            done = select(alert_notifications.c.id).where(
                alert_notifications.c.status != SENDING, alert_notifications.c.created_at < moment
            )
            await conn.execute(delete(alert_outbox).where(alert_outbox.c.notification_id.in_(done)))
            await conn.execute(delete(alert_notifications).where(alert_notifications.c.id.in_(done)))
            result = await conn.execute(
                delete(alerts).where(alerts.c.state == "resolved", alerts.c.resolved_at < moment)
            )
            await conn.execute(delete(alert_silences).where(alert_silences.c.ends_at < moment))
            return int(result.rowcount or 0)
