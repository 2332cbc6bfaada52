"""Initial central schema: HackSky dashboard tables plus the gateway's readings.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
DOUBLE = sa.Float(precision=53).with_variant(mysql.DOUBLE(asdecimal=False), "mysql", "mariadb")
LEVELS = ("low", "medium", "high", "critical")


def _stamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
    ]


def _incident(prefix: str) -> list[sa.Column | sa.UniqueConstraint]:
    return [
        *_stamps(),
        sa.Column("gateway_id", sa.String(64)),
        sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id", name=f"fk_{prefix}_device")),
        sa.Column("event_key", sa.String(191), nullable=False),
        sa.UniqueConstraint("event_key", name=f"uq_{prefix}_event_key"),
    ]


def _create_table(name: str, *parts: Any) -> None:
    """Create ``name`` unless a previous run created it: MySQL commits each DDL statement, so an
    agent stopped (or a second gateway racing) halfway through this revision left some tables."""
    if not sa.inspect(op.get_bind()).has_table(name):
        op.create_table(name, *parts)


def _create_index(name: str, table: str, columns: list[str]) -> None:
    """Create the index unless it exists (see :func:`_create_table`)."""
    if name not in {ix["name"] for ix in sa.inspect(op.get_bind()).get_indexes(table)}:
        op.create_index(name, table, columns)


def upgrade() -> None:
    _create_table(
        "devices",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("gateway_id", sa.String(64), nullable=False),
        sa.Column("device_id_str", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128)),
        sa.Column("type", sa.String(32), nullable=False, server_default="other"),
        sa.Column("location", sa.String(128)),
        sa.Column("protocol", sa.String(16), nullable=False, server_default="modbus"),
        sa.Column("address", sa.String(255)),
        sa.Column("status", sa.Enum("online", "degraded", "offline", "unknown", name="device_status"),
                  nullable=False, server_default="unknown"),
        sa.Column("status_reason", sa.String(255)),
        sa.Column("last_seen", TS),
        *_stamps(),
        sa.UniqueConstraint("gateway_id", "device_id_str", name="uq_devices_gateway_device"),
    )
    _create_table(
        "readings",
        sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id", name="fk_readings_device"),
                  primary_key=True),
        sa.Column("point", sa.String(64), primary_key=True),
        sa.Column("ts", TS, primary_key=True),
        sa.Column("value", DOUBLE),
        sa.Column("value_text", sa.String(255)),
        sa.Column("quality", sa.String(32), nullable=False, server_default="good"),
    )
    _create_index("ix_readings_device_ts", "readings", ["device_id", "ts"])
    _create_table(
        "power_readings",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id", name="fk_power_device"),
                  nullable=False),
        sa.Column("timestamp", TS, nullable=False),
        *[sa.Column(name, DOUBLE) for name in
          ("power_consumption", "voltage", "current", "frequency", "temperature", "humidity")],
        sa.Column("is_anomaly", sa.Boolean, nullable=False, server_default="0"),
        sa.Column("anomaly_score", DOUBLE),
        sa.UniqueConstraint("device_id", "timestamp", name="uq_power_device_ts"),
    )
    _create_index("ix_power_timestamp", "power_readings", ["timestamp"])
    _create_table(
        "alerts",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("alert_type", sa.String(64), nullable=False),
        sa.Column("severity", sa.Enum(*LEVELS, name="alert_severity"), nullable=False),
        sa.Column("title", sa.String(255), nullable=False),
        sa.Column("message", sa.Text),
        sa.Column("system", sa.String(64)),
        sa.Column("acknowledged", sa.Boolean, nullable=False, server_default="0"),
        sa.Column("acknowledged_by", sa.String(64)),
        sa.Column("acknowledged_at", TS),
        sa.Column("resolved", sa.Boolean, nullable=False, server_default="0"),
        sa.Column("resolved_at", TS),
        *_incident("alerts"),
        sa.Column("point", sa.String(64)),
        sa.Column("last_value", DOUBLE),
    )
    _create_index("ix_alerts_open", "alerts", ["resolved", "severity"])
    _create_index("ix_alerts_created", "alerts", ["created_at"])
    _create_table(
        "attack_detections",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("attack_type", sa.String(64), nullable=False),
        sa.Column("confidence", DOUBLE, nullable=False),
        sa.Column("threat_level", sa.Enum(*LEVELS, name="threat_level"), nullable=False),
        sa.Column("source_ip", sa.String(45)),
        sa.Column("target_system", sa.String(128)),
        sa.Column("description", sa.Text),
        sa.Column("indicators", sa.JSON),
        sa.Column("mitigated", sa.Boolean, nullable=False, server_default="0"),
        sa.Column("mitigation_action", sa.String(255)),
        sa.Column("detected_at", TS, nullable=False),
        sa.Column("ended_at", TS),
        *_incident("attacks"),
        sa.CheckConstraint("confidence >= 0 AND confidence <= 100", name="ck_attacks_confidence"),
    )
    _create_index("ix_attacks_detected", "attack_detections", ["detected_at"])
    _create_table(
        "system_metrics",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("metric_name", sa.String(64), nullable=False),
        sa.Column("value", DOUBLE, nullable=False),
        sa.Column("unit", sa.String(16)),
        sa.Column("category", sa.String(32)),
        sa.Column("timestamp", TS, nullable=False),
        sa.Column("gateway_id", sa.String(64), nullable=False, server_default=""),
        sa.UniqueConstraint("gateway_id", "metric_name", "timestamp", name="uq_metrics_gateway_name_ts"),
    )


def downgrade() -> None:
    for table in ("system_metrics", "attack_detections", "alerts", "power_readings", "readings", "devices"):
        op.drop_table(table)
