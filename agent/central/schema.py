"""The central schema (SQLAlchemy Core): the HackSky dashboard tables plus what the gateway adds.

The same tables are created in MySQL/MariaDB and in the embedded SQLite file by the Alembic
migrations in ``agent/central/migrations``; a test pins the two together.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects import mysql

SEVERITIES = ("low", "medium", "high", "critical")
DEVICE_STATUSES = ("online", "degraded", "offline", "unknown")
#: readings.quality: ``good``, ``bad:<reason>``, ``uncertain:<OPC UA status name>`` (migration 0002)
QUALITY_LENGTH = 63

#: Microsecond timestamps on MySQL/MariaDB; SQLite keeps the full ISO text.
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
#: Auto-increment 64-bit keys (SQLite needs plain INTEGER for its rowid alias).
BigId = BigInteger().with_variant(Integer(), "sqlite")
Double = Float(precision=53).with_variant(mysql.DOUBLE(asdecimal=False), "mysql", "mariadb")

metadata = MetaData()


def _incident_columns(prefix: str) -> list[Column | UniqueConstraint]:
    """Columns alerts and attack detections share: timestamps, origin and the idempotency key."""
    return [
        Column("created_at", Timestamp, nullable=False, server_default=func.now()),
        Column("updated_at", Timestamp, nullable=False, server_default=func.now()),
        Column("gateway_id", String(64)),
        Column("device_id", Integer, ForeignKey("devices.id", name=f"fk_{prefix}_device")),
        Column("event_key", String(191), nullable=False),
        UniqueConstraint("event_key", name=f"uq_{prefix}_event_key"),
    ]


devices = Table(
    "devices", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("gateway_id", String(64), nullable=False),
    Column("device_id_str", String(64), nullable=False),
    Column("name", String(128)),
    Column("type", String(32), nullable=False, server_default="other"),
    Column("location", String(128)),
    Column("protocol", String(16), nullable=False, server_default="modbus"),
    Column("address", String(255)),
    Column("status", Enum(*DEVICE_STATUSES, name="device_status"), nullable=False, server_default="unknown"),
    Column("status_reason", String(255)),
    Column("last_seen", Timestamp),
    Column("created_at", Timestamp, nullable=False, server_default=func.now()),
    Column("updated_at", Timestamp, nullable=False, server_default=func.now()),
    UniqueConstraint("gateway_id", "device_id_str", name="uq_devices_gateway_device"),
)

readings = Table(
    "readings", metadata,
    # no foreign key: partitioned tables cannot have one (migration 0005); devices.id all the same
    Column("device_id", Integer, primary_key=True),
    Column("point", String(64), primary_key=True),
    Column("ts", Timestamp, primary_key=True),
    Column("value", Double),
    Column("value_text", String(255)),
    Column("quality", String(QUALITY_LENGTH), nullable=False, server_default="good"),
    Index("ix_readings_device_ts", "device_id", "ts"),
)

power_readings = Table(
    "power_readings", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("device_id", Integer, ForeignKey("devices.id", name="fk_power_device"), nullable=False),
    Column("timestamp", Timestamp, nullable=False),
    Column("power_consumption", Double),
    Column("voltage", Double),
    Column("current", Double),
    Column("frequency", Double),
    Column("temperature", Double),
    Column("humidity", Double),
    Column("is_anomaly", Boolean, nullable=False, server_default="0"),
    Column("anomaly_score", Double),
    UniqueConstraint("device_id", "timestamp", name="uq_power_device_ts"),
    Index("ix_power_timestamp", "timestamp"),
)

alerts = Table(
    "alerts", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("alert_type", String(64), nullable=False),
    Column("severity", Enum(*SEVERITIES, name="alert_severity"), nullable=False),
    Column("title", String(255), nullable=False),
    Column("message", Text),
    Column("system", String(64)),
    Column("acknowledged", Boolean, nullable=False, server_default="0"),
    Column("acknowledged_by", String(64)),
    Column("acknowledged_at", Timestamp),
    Column("resolved", Boolean, nullable=False, server_default="0"),
    Column("resolved_at", Timestamp),
    *_incident_columns("alerts"),
    Column("point", String(64)),
    Column("last_value", Double),
    Index("ix_alerts_open", "resolved", "severity"),
    Index("ix_alerts_created", "created_at"),
)

attack_detections = Table(
    "attack_detections", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("attack_type", String(64), nullable=False),
    Column("confidence", Double, nullable=False),
    Column("threat_level", Enum(*SEVERITIES, name="threat_level"), nullable=False),
    Column("source_ip", String(45)),
    Column("target_system", String(128)),
    Column("description", Text),
    Column("indicators", JSON),
    Column("mitigated", Boolean, nullable=False, server_default="0"),
    Column("mitigation_action", String(255)),
    Column("detected_at", Timestamp, nullable=False),
    Column("ended_at", Timestamp),
    *_incident_columns("attacks"),
    CheckConstraint("confidence >= 0 AND confidence <= 100", name="ck_attacks_confidence"),
    Index("ix_attacks_detected", "detected_at"),
)

system_metrics = Table(
    "system_metrics", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("metric_name", String(64), nullable=False),
    Column("value", Double, nullable=False),
    Column("unit", String(16)),
    Column("category", String(32)),
    Column("timestamp", Timestamp, nullable=False),
    Column("gateway_id", String(64), nullable=False, server_default=""),
    UniqueConstraint("gateway_id", "metric_name", "timestamp", name="uq_metrics_gateway_name_ts"),
)

#: One row per gateway, upserted by its agent at start, at each reload and every metrics_interval
#: (migration 0003): what the central team needs to tell which gateways are alive and right.
gateways = Table(
    "gateways", metadata,
    Column("gateway_id", String(64), primary_key=True),
    Column("agent_version", String(32)),
    Column("device_map_hash", String(64)),
    Column("host", String(255)),
    Column("started_at", Timestamp),
    Column("last_seen", Timestamp),
    Column("beat_seq", BigInteger, nullable=False, server_default="0"),
    Column("stopped_at", Timestamp),  # set by the beat of a clean stop, cleared by the next start
    Column("heartbeat_interval", Double),
    Column("last_reload_at", Timestamp),
    Column("last_reload_result", String(255)),
    Column("devices_up", Integer, nullable=False, server_default="0"),
    Column("devices_degraded", Integer, nullable=False, server_default="0"),
    Column("devices_down", Integer, nullable=False, server_default="0"),
    Column("buffer_readings", BigInteger, nullable=False, server_default="0"),
    Column("clock_offset", Double),
    Column("created_at", Timestamp, nullable=False, server_default=func.now()),
    Column("updated_at", Timestamp, nullable=False, server_default=func.now()),
)


def _rollup(name: str) -> Table:
    """Readings summarised per (device, point, bucket): counts, and min/max/sum/first/last of the good values."""
    return Table(
        name, metadata,
        Column("device_id", Integer, primary_key=True),
        Column("point", String(64), primary_key=True),
        Column("bucket", Timestamp, primary_key=True),  # the bucket's start, UTC
        Column("count", Integer, nullable=False),  # every reading, whatever its quality
        Column("good_count", Integer, nullable=False),  # readings with quality good and a value
        Column("min", Double),
        Column("max", Double),
        Column("sum", Double),
        Column("first", Double),  # the bucket's earliest good value
        Column("last", Double),  # its latest
        Index(f"ix_{name}_bucket", "bucket"),
    )


#: Rollups of ``readings`` (migration 0004), built by ``hacksky-edge central maintain``.
readings_1m = _rollup("readings_1m")
readings_1h = _rollup("readings_1h")

#: (device, hour) pairs whose readings changed since their rollups were built: the writer marks
#: each hour it writes into (again at least every ``writer.MARK_TTL`` while it keeps writing it),
#: ``maintain`` rebuilds the marked hours and removes marks nobody renewed for longer than that.
rollup_pending = Table(
    "rollup_pending", metadata,
    Column("device_id", Integer, primary_key=True),
    Column("hour", Timestamp, primary_key=True),
    Column("marked_at", Timestamp, nullable=False),  # the database's clock (UTC) at the latest mark
)

#: ``power_readings`` per (device, hour) (migration 0006), rebuilt by ``maintain`` for the same
#: marked device-hours as the readings' rollups (a meter's power row comes from its readings).
power_1h = Table(
    "power_1h", metadata,
    Column("device_id", Integer, primary_key=True),
    Column("bucket", Timestamp, primary_key=True),  # the hour's start, UTC
    Column("samples", Integer, nullable=False),  # rows
    Column("kw_count", Integer, nullable=False),  # rows with a power_consumption
    Column("kw_sum", Double),
    Column("kw_min", Double),
    Column("kw_max", Double),
    Column("anomalies", Integer, nullable=False),
    Index("ix_power_1h_bucket", "bucket"),
)

#: Each device's points as its gateway's device map declares them (migration 0007), kept in step by
#: the writer at every start and reload; a point gone from the map keeps its row with ``removed_at``.
device_points = Table(
    "device_points", metadata,
    Column("device_id", Integer, primary_key=True),
    Column("point", String(64), primary_key=True),
    Column("kind", String(8), nullable=False, server_default="number"),  # number, boolean or text
    Column("unit", String(32)),
    Column("role", String(16)),  # power, voltage, current, frequency, energy, ... (a meter's power row)
    Column("removed_at", Timestamp),
    Column("updated_at", Timestamp, nullable=False),
)
