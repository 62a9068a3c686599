"""The tables. Alembic (migrations/) owns the schema; these mirror it for queries."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

metadata = MetaData()

samples = Table(
    "samples",
    metadata,
    # INTEGER on SQLite makes it the rowid alias. The SQLite writer hands out ids itself
    # (max(id) + 1 under the write lock, see storage/writer.py); PostgreSQL's come from
    # the sequence. Imported rows take ids below zero: they are history, not events.
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("widget", String(64), nullable=False),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("value", JSON, nullable=True),
    Column("status", String(16), nullable=False),
    Column("message", Text, nullable=True),
    # A widget's samples by time: its latest, its history, the series of the last minutes.
    # (One index per widget key, not two: each costs a page per widget in every commit.)
    Index("ix_samples_widget_ts", "widget", "ts"),
    # Retention walks the oldest samples first.
    Index("ix_samples_ts", "ts"),
)

# Per-bucket aggregates of each widget's samples, one row per (widget, step, bucket):
# `step` is the tier (60: minutes, 3600: hours), `bucket` the start of the bucket in
# Unix seconds (a multiple of step). What counts and how: storage/rollups.py.
rollups = Table(
    "rollups",
    metadata,
    Column("widget", String(64), nullable=False),
    Column("step", Integer, nullable=False),
    Column("bucket", BigInteger, nullable=False),
    Column("n", Integer, nullable=False),  # samples counted
    Column("measured", Integer, nullable=False),  # of those, with a number (the value, or a status's latency)
    Column("total", Float, nullable=False),  # the sum of those numbers
    Column("low", Float, nullable=True),
    Column("high", Float, nullable=True),
    Column("ok", Integer, nullable=False),  # status widgets: samples per state
    Column("warn", Integer, nullable=False),
    Column("down", Integer, nullable=False),
    PrimaryKeyConstraint("widget", "step", "bucket", name="pk_rollups"),
    # Retention deletes a tier's oldest buckets, whatever the widget.
    Index("ix_rollups_step_bucket", "step", "bucket"),
    sqlite_with_rowid=False,  # rows live in the primary key's order: a widget's buckets side by side
)

# One row: the samples with 0 < id <= upto are in the rollups (storage/rollups.py).
rollup_state = Table(
    "rollup_state",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("upto", BigInteger, nullable=False),
)
