"""The alerting tables. Alembic owns the schema (migrations/versions/0003_alerts.py);
these mirror it for queries, on the storage's own MetaData.

- alerts: one row per alert: from the moment its condition began (pending) until it
  resolved; its times, the value and message of its last transition, who
  acknowledged it, which notifiers were told that it fires, and when last.
- alert_events: every transition of an alert (pending, firing, resolved,
  acknowledged), with its time, value, message and who made it.
- alert_outbox: what each notifier is to be told, written in the same transaction as
  the transition that calls for it; `notification_id` is set once it is grouped into
  a notification.
- alert_notifications: one message to one notifier. Its `uid` goes out with it, the
  same on every retry, so that a receiver can drop a repeat.
- alert_silences: ad hoc silences from the API.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, Integer, String, Table, Text

from ..storage.schema import metadata

# INTEGER on SQLite is the rowid alias, as for samples.
_ID = BigInteger().with_variant(Integer, "sqlite")

alerts = Table(
    "alerts",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("widget", String(64), nullable=False),
    Column("condition", String(16), nullable=False),
    Column("severity", String(8), nullable=False),
    Column("state", String(16), nullable=False),  # pending, firing or resolved
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("fired_at", DateTime(timezone=True), nullable=True),
    Column("resolved_at", DateTime(timezone=True), nullable=True),
    Column("value", JSON, nullable=True),
    Column("message", Text, nullable=True),
    Column("acked_by", String(128), nullable=True),
    Column("acked_at", DateTime(timezone=True), nullable=True),
    Column("notified_to", JSON, nullable=True),  # notifier names told that it fires
    Column("notified_at", DateTime(timezone=True), nullable=True),  # the last of those messages: the repeat clock
    Index("ix_alerts_state", "state"),
    Index("ix_alerts_widget_id", "widget", "id"),
)

alert_events = Table(
    "alert_events",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("alert_id", BigInteger, nullable=False),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("state", String(16), nullable=False),  # pending, firing, resolved, acknowledged
    Column("value", JSON, nullable=True),
    Column("message", Text, nullable=True),
    Column("actor", String(128), nullable=True),  # who acknowledged
    Index("ix_alert_events_alert_id", "alert_id", "id"),
)

alert_notifications = Table(
    "alert_notifications",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("uid", String(36), nullable=False, unique=True),
    Column("notifier", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False),  # sending, sent or failed (given up)
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("last_error", Text, nullable=True),
    Column("sent_at", DateTime(timezone=True), nullable=True),
    Index("ix_alert_notifications_status", "status", "notifier"),
)

alert_outbox = Table(
    "alert_outbox",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("notifier", String(64), nullable=False),
    Column("alert_id", BigInteger, nullable=False),
    Column("event", String(16), nullable=False),  # firing, repeat or resolved
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("payload", JSON, nullable=False),  # the alert as it was: what the message says
    Column("notification_id", BigInteger, nullable=True),
    Index("ix_alert_outbox_notification", "notification_id", "notifier"),
)

alert_silences = Table(
    "alert_silences",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("widgets", JSON, nullable=True),  # widget ids; null: every widget
    Column("starts_at", DateTime(timezone=True), nullable=False),
    Column("ends_at", DateTime(timezone=True), nullable=False),
    Column("reason", Text, nullable=True),
    Column("created_by", String(128), nullable=True),
    Column("ended_at", DateTime(timezone=True), nullable=True),  # ended early (DELETE)
    Index("ix_alert_silences_ends_at", "ends_at"),
)
