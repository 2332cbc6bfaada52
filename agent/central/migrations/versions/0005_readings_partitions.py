"""``readings`` RANGE-partitioned by day of ``ts`` on MySQL/MariaDB, so that retention drops a day
in O(1) (``hacksky-edge central maintain`` adds the days ahead and drops the expired ones).

MySQL and MariaDB refuse foreign keys on partitioned tables: ``fk_readings_device`` goes, on every
backend so that the schema is one (the writer only stores readings of devices it upserted first).

The table is partitioned as it is: empty (a new database), one ``p_future`` partition
(``LESS THAN MAXVALUE``) that maintain splits into days; holding rows, a ``p_history`` partition
up to the day after the newest row (today at the latest), then ``p_future``. Either way the table is rebuilt once: on a
large table, run ``hacksky-edge init-db`` in a maintenance window rather than from an agent.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from datetime import datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

FK = "fk_readings_device"


def _has_fk(bind: sa.engine.Connection) -> bool:
    return any(fk["name"] == FK for fk in sa.inspect(bind).get_foreign_keys("readings"))


def _partitioned(bind: sa.engine.Connection) -> bool:
    return bool(bind.execute(sa.text(
        "SELECT COUNT(*) FROM information_schema.PARTITIONS WHERE TABLE_SCHEMA = DATABASE() "
        "AND TABLE_NAME = 'readings' AND PARTITION_NAME IS NOT NULL")).scalar())


def _newest(bind: sa.engine.Connection) -> datetime | None:
    """The newest reading's time, per device through ``ix_readings_device_ts`` (no full scan)."""
    value = bind.execute(sa.text(
        "SELECT MAX(newest) FROM (SELECT MAX(ts) AS newest FROM readings GROUP BY device_id) AS per_device")).scalar()
    return value if isinstance(value, datetime) or value is None else datetime.fromisoformat(str(value))


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name not in ("mysql", "mariadb"):
        if _has_fk(bind):  # SQLite: the table is copied without the constraint
            with op.batch_alter_table("readings", recreate="always") as batch:
                batch.drop_constraint(FK, type_="foreignkey")
        return
    if _has_fk(bind):  # each DDL statement commits: a run stopped between them resumes here
        op.execute(f"ALTER TABLE readings DROP FOREIGN KEY {FK}")
    if _partitioned(bind):
        return
    newest = _newest(bind)
    partitions = ["PARTITION p_future VALUES LESS THAN (MAXVALUE)"]
    if newest is not None:  # not beyond today: rows of a gateway clock years ahead go to p_future
        today = bind.execute(sa.text("SELECT UTC_TIMESTAMP()")).scalar()
        newest = min(newest, today if isinstance(today, datetime) else datetime.fromisoformat(str(today)))
        bound = (newest + timedelta(days=1)).strftime("%Y-%m-%d 00:00:00")
        partitions.insert(0, f"PARTITION p_history VALUES LESS THAN ('{bound}')")
    op.execute(f"ALTER TABLE readings PARTITION BY RANGE COLUMNS(ts) ({', '.join(partitions)})")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name in ("mysql", "mariadb"):
        op.execute("ALTER TABLE readings REMOVE PARTITIONING")
        op.execute(f"ALTER TABLE readings ADD CONSTRAINT {FK} FOREIGN KEY (device_id) REFERENCES devices (id)")
    else:
        with op.batch_alter_table("readings", recreate="always") as batch:
            batch.create_foreign_key(FK, "devices", ["device_id"], ["id"])
