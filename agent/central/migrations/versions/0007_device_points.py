"""``device_points``: each device's points as its gateway's device map declares them (kind, unit,
role), so the central team and the dashboard know what a reading is without the YAML.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

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


def downgrade() -> None:
    op.drop_table("device_points")
