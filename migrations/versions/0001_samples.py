"""samples table

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "samples",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
        ),
        sa.Column("widget", sa.String(64), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_samples"),
    )
    op.create_index("ix_samples_widget_id", "samples", ["widget", "id"])
    op.create_index("ix_samples_ts", "samples", ["ts"])


def downgrade() -> None:
    op.drop_index("ix_samples_ts", table_name="samples")
    op.drop_index("ix_samples_widget_id", table_name="samples")
    op.drop_table("samples")
