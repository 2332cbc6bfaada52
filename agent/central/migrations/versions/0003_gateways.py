"""Fleet health: one ``gateways`` row per gateway (version, device map, last seen, clock offset).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
DOUBLE = sa.Float(precision=53).with_variant(mysql.DOUBLE(asdecimal=False), "mysql", "mariadb")


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("gateways"):  # MySQL commits DDL: a run stopped after it
        return
    op.create_table(
        "gateways",
        sa.Column("gateway_id", sa.String(64), primary_key=True),
        sa.Column("agent_version", sa.String(32)),
        sa.Column("device_map_hash", sa.String(64)),
        sa.Column("host", sa.String(255)),
        sa.Column("started_at", TS),
        sa.Column("last_seen", TS),
        sa.Column("beat_seq", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("stopped_at", TS),
        sa.Column("heartbeat_interval", DOUBLE),
        sa.Column("last_reload_at", TS),
        sa.Column("last_reload_result", sa.String(255)),
        sa.Column("devices_up", sa.Integer, nullable=False, server_default="0"),
        sa.Column("devices_degraded", sa.Integer, nullable=False, server_default="0"),
        sa.Column("devices_down", sa.Integer, nullable=False, server_default="0"),
        sa.Column("buffer_readings", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("clock_offset", DOUBLE),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
    )


def downgrade() -> None:
    op.drop_table("gateways")
