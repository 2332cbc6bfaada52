"""Rollups: ``readings_1m`` and ``readings_1h`` per (device, point, bucket), and ``rollup_pending``,
the (device, hour) pairs the writer changed since ``hacksky-edge central maintain`` last built them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
DOUBLE = sa.Float(precision=53).with_variant(mysql.DOUBLE(asdecimal=False), "mysql", "mariadb")


def _missing(name: str) -> bool:
    """MySQL commits each DDL statement: a run stopped halfway left some tables."""
    return not sa.inspect(op.get_bind()).has_table(name)


def upgrade() -> None:
    for name in ("readings_1m", "readings_1h"):
        if _missing(name):
            op.create_table(
                name,
                sa.Column("device_id", sa.Integer, primary_key=True),
                sa.Column("point", sa.String(64), primary_key=True),
                sa.Column("bucket", TS, primary_key=True),
                sa.Column("count", sa.Integer, nullable=False),
                sa.Column("good_count", sa.Integer, nullable=False),
                sa.Column("min", DOUBLE),
                sa.Column("max", DOUBLE),
                sa.Column("sum", DOUBLE),
                sa.Column("first", DOUBLE),
                sa.Column("last", DOUBLE),
                sa.Index(f"ix_{name}_bucket", "bucket"),
            )
    if _missing("rollup_pending"):
        op.create_table(
            "rollup_pending",
            sa.Column("device_id", sa.Integer, primary_key=True),
            sa.Column("hour", TS, primary_key=True),
            sa.Column("marked_at", TS, nullable=False),
        )


def downgrade() -> None:
    for name in ("rollup_pending", "readings_1h", "readings_1m"):
        op.drop_table(name)
