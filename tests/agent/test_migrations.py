"""Schema migrations that a killed agent or several gateways at once cannot leave half done."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from agent.central import migrate, schema
from agent.central.engine import make_engine
from agent.settings import CentralConfig


def _schema_diff(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), schema.metadata))


def test_an_initial_migration_stopped_halfway_is_completed_by_the_next_start(migrated_engine: Engine) -> None:
    # what an agent killed during its first start leaves on MySQL (each DDL statement commits):
    # some tables, no index on one of them, and no alembic_version row
    with migrated_engine.begin() as conn:
        for table in ("system_metrics", "attack_detections"):
            conn.execute(text(f"DROP TABLE {table}"))
        conn.execute(text("DROP INDEX ix_alerts_created ON alerts" if conn.dialect.name != "sqlite"
                          else "DROP INDEX ix_alerts_created"))
        conn.execute(text("DELETE FROM alembic_version"))
    assert migrate.current_revision(migrated_engine) is None
    assert migrate.upgrade(migrated_engine) == migrate.head_revision()
    assert _schema_diff(migrated_engine) == []
    assert {"system_metrics", "attack_detections"} <= set(inspect(migrated_engine).get_table_names())


def test_gateways_migrating_one_empty_database_at_once_all_succeed(mariadb_url: str) -> None:
    engines = [make_engine(CentralConfig(url=mariadb_url)) for _ in range(3)]
    try:
        with ThreadPoolExecutor(3) as pool:
            heads = list(pool.map(migrate.upgrade, engines))
        assert heads == [migrate.head_revision()] * 3
        assert _schema_diff(engines[0]) == []
    finally:
        for engine in engines:
            engine.dispose()


def test_device_points_start_from_the_points_readings_hold(migrated_engine: Engine) -> None:
    """A database upgraded to 0007 with readings already in it: their points are listed (as numbers)."""
    cfg = migrate.alembic_config()
    with migrated_engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0006")
    assert migrate.current_revision(migrated_engine) == "0006"
    at = datetime(2026, 1, 5, 12)
    with migrated_engine.begin() as conn:
        conn.execute(schema.readings.insert(), [
            {"device_id": device, "point": point, "ts": at + timedelta(seconds=s), "value": 1.0, "quality": "good"}
            for device, point in ((1, "flow"), (1, "level"), (2, "flow")) for s in range(3)])
    migrate.upgrade(migrated_engine)
    with migrated_engine.connect() as conn:
        rows = conn.execute(text("SELECT device_id, point, kind FROM device_points ORDER BY device_id, point")).all()
    assert [tuple(r) for r in rows] == [(1, "flow", "number"), (1, "level", "number"), (2, "flow", "number")]
