"""Schema migrations that a killed agent or several gateways at once cannot leave half done."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

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
