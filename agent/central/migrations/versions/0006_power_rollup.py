"""``power_1h``: ``power_readings`` per (device, hour), for the API's power statistics over long ranges.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
DOUBLE = sa.Float(precision=53).with_variant(mysql.DOUBLE(asdecimal=False), "mysql", "mariadb")


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("power_1h"):  # MySQL commits DDL: a run stopped after it
        return
    op.create_table(
        "power_1h",
        sa.Column("device_id", sa.Integer, primary_key=True),
        sa.Column("bucket", TS, primary_key=True),
        sa.Column("samples", sa.Integer, nullable=False),
        sa.Column("kw_count", sa.Integer, nullable=False),
        sa.Column("kw_sum", DOUBLE),
        sa.Column("kw_min", DOUBLE),
        sa.Column("kw_max", DOUBLE),
        sa.Column("anomalies", sa.Integer, nullable=False),
        sa.Index("ix_power_1h_bucket", "bucket"),
    )


def downgrade() -> None:
    op.drop_table("power_1h")
