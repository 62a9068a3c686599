"""The tables. Alembic (migrations/) owns the schema; these mirror it for queries."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

samples = Table(
    "samples",
    metadata,
    # INTEGER on SQLite makes it the rowid alias. Without AUTOINCREMENT SQLite hands out
    # max(rowid) + 1, which only grows because retention never deletes a widget's newest row.
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("widget", String(64), nullable=False),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("value", JSON, nullable=True),
    Column("status", String(16), nullable=False),
    Column("message", Text, nullable=True),
    # "latest per widget" and "history of a widget since an id" both walk this one.
    Index("ix_samples_widget_id", "widget", "id"),
    Index("ix_samples_ts", "ts"),
)
