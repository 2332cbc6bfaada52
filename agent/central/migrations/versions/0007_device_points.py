"""``device_points``: each device's points as its gateway's device map declares them (kind, unit,
role), so the central team and the dashboard know what a reading is without the YAML.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("device_points"):  # MySQL commits DDL: a run stopped after it
        return
    op.create_table(
        "device_points",
        sa.Column("device_id", sa.Integer, primary_key=True),
        sa.Column("point", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(8), nullable=False, server_default="number"),
        sa.Column("unit", sa.String(32)),
        sa.Column("role", sa.String(16)),
        sa.Column("removed_at", TS),
        sa.Column("updated_at", TS, nullable=False),
    )
    # the points readings already hold, as numbers (the next start of each gateway says what they are);
    # DISTINCT over the primary key's prefix: MySQL reads one index entry per (device, point)
    now = datetime.now(UTC).replace(tzinfo=None)
    op.execute(sa.text("INSERT INTO device_points (device_id, point, kind, updated_at) "
                       "SELECT DISTINCT device_id, point, 'number', :now FROM readings").bindparams(now=now))


def downgrade() -> None:
    op.drop_table("device_points")
