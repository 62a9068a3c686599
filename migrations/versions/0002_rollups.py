"""rollups: per-10-second, per-minute and per-hour aggregates of each widget's samples; samples indexed by (widget, ts)

Builds the tiers from the samples already stored, in SQL, by the rule of
dashboard/storage/rollups.py, written out here as it stands at this revision: a
migration must do tomorrow what it does today. The 10-second buckets are made for the
last two days and the minutes for the last 90 (the default retentions, which prune
older ones anyway), the hours for everything.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# A sample's Unix second, its number (the value, or a status's latency) and state.
# PostgreSQL's json refuses to look inside an object holding a NUL escape: it is swapped
# for a space's first.
PG_OBJECT = "CAST(replace(CAST(value AS TEXT), '\\u0000', '\\u0020') AS json)"
TERMS = {
    "sqlite": {
        "seconds": "CAST(strftime('%s', ts) AS INTEGER)",
        "is_number": "typeof(value) IN ('integer', 'real')",
        "number": "CAST(value AS REAL)",
        "state": "(CASE WHEN typeof(value) = 'text' AND substr(value, 1, 1) = '{' THEN json_extract(value, '$.state') END)",
        "has_latency": "json_type(value, '$.latency_ms') IN ('integer', 'real')",
        "latency": "json_extract(value, '$.latency_ms')",
    },
    "postgresql": {
        "seconds": "CAST(floor(extract(epoch FROM ts)) AS BIGINT)",
        "is_number": "json_typeof(value) = 'number'",
        "number": "CAST(CAST(value AS TEXT) AS DOUBLE PRECISION)",
        "state": f"(CASE WHEN json_typeof(value) = 'object' THEN {PG_OBJECT} ->> 'state' END)",
        "has_latency": f"json_typeof({PG_OBJECT} -> 'latency_ms') = 'number'",
        "latency": f"CAST({PG_OBJECT} ->> 'latency_ms' AS DOUBLE PRECISION)",
    },
}


def backfill(dialect: str, step: int, upto: int, since: str) -> str:
    """The tier's buckets of the samples up to id `upto` and from time `since` on."""
    t = TERMS["postgresql" if dialect == "postgresql" else "sqlite"]
    valid = f"{t['state']} IN ('ok', 'warn', 'down')"
    return f"""
    INSERT INTO rollups (widget, step, bucket, n, measured, total, low, high, ok, warn, down)
    SELECT widget, {step}, seconds / {step} * {step} AS bucket,
        count(*), count(x), coalesce(sum(x), 0), min(x), max(x),
        sum(CASE WHEN state = 'ok' THEN 1 ELSE 0 END),
        sum(CASE WHEN state = 'warn' THEN 1 ELSE 0 END),
        sum(CASE WHEN state = 'down' THEN 1 ELSE 0 END)
    FROM (
        SELECT widget, {t["seconds"]} AS seconds,
            CASE WHEN {t["is_number"]} THEN {t["number"]}
                 WHEN {valid} THEN (CASE WHEN {t["has_latency"]} THEN {t["latency"]} END) END AS x,
            CASE WHEN {valid} THEN {t["state"]} END AS state
        FROM samples WHERE status = 'ok' AND id <= {upto} AND ts >= '{since}'
    ) AS measured_samples
    WHERE x IS NOT NULL OR state IS NOT NULL
    GROUP BY widget, bucket
    """


def upgrade() -> None:
    op.create_table(
        "rollups",
        sa.Column("widget", sa.String(64), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("measured", sa.Integer(), nullable=False),
        sa.Column("total", sa.Float(), nullable=False),
        sa.Column("low", sa.Float(), nullable=True),
        sa.Column("high", sa.Float(), nullable=True),
        sa.Column("ok", sa.Integer(), nullable=False),
        sa.Column("warn", sa.Integer(), nullable=False),
        sa.Column("down", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("widget", "step", "bucket", name="pk_rollups"),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_rollups_step_bucket", "rollups", ["step", "bucket"])
    # Samples by (widget, ts) replaces (widget, id): a widget's latest is its newest by
    # time, history and series go by time, and each per-widget index costs every commit
    # a page per widget written.
    op.create_index("ix_samples_widget_ts", "samples", ["widget", "ts"])
    op.drop_index("ix_samples_widget_id", table_name="samples")
    # The samples rolled up so far: the running server's roll-up pass goes on from here.
    op.create_table(
        "rollup_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("upto", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rollup_state"),
    )
    bind = op.get_bind()
    upto = max(bind.execute(sa.text("SELECT max(id) FROM samples")).scalar() or 0, 0)
    now = datetime.now(UTC)
    for step, kept in ((10, timedelta(days=2)), (60, timedelta(days=90)), (3600, None)):
        since = (now - kept).replace(tzinfo=None) if kept else datetime(1970, 1, 1)
        # The text SQLite compares with stored times; PostgreSQL reads it as UTC.
        text_since = since.isoformat(" ", "microseconds") + ("+00:00" if bind.dialect.name == "postgresql" else "")
        op.execute(backfill(bind.dialect.name, step, upto, text_since))
    op.execute(sa.text(f"INSERT INTO rollup_state (id, upto) VALUES (1, {upto})"))


def downgrade() -> None:
    op.drop_table("rollup_state")
    op.create_index("ix_samples_widget_id", "samples", ["widget", "id"])
    op.drop_index("ix_samples_widget_ts", table_name="samples")
    op.drop_index("ix_rollups_step_bucket", table_name="rollups")
    op.drop_table("rollups")
