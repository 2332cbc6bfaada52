"""``central maintain``: rollups equal to what the raw rows say (late data included), marks, retention, lock."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, text, update

from agent.buffer.disk import Pack
from agent.central import schema
from agent.central.engine import named_lock
from agent.central.maintain import LOCK_NAME, maintain
from agent.central.writer import to_datetime
from agent.settings import RetentionConfig
from drivers.base import Reading
from tests.agent.rollup_truth import KEEP_ALL, T0, expected, plant_readings, writer_for
from tests.helpers import device_map

ROOT = Path(__file__).resolve().parents[2]


def stored(engine: Engine, table: Any) -> dict[tuple[str, str, int], tuple[Any, ...]]:
    d = schema.devices
    with engine.connect() as conn:
        rows = conn.execute(select(d.c.device_id_str, table.c.point, table.c.bucket, table.c.count,
                                   table.c.good_count, table.c["min"], table.c["max"], table.c["sum"],
                                   table.c["first"], table.c["last"])
                            .join(d, d.c.id == table.c.device_id)).fetchall()
    return {(dev, point, round((bucket - datetime(1970, 1, 1)) / timedelta(microseconds=1))):
            (count, good, lo, hi, round(total, 6) if total is not None else None, first, last)
            for dev, point, bucket, count, good, lo, hi, total, first, last in rows}


def test_rollups_equal_the_raw_rows_and_late_data_updates_its_buckets(migrated_engine: Engine) -> None:
    writer = writer_for(migrated_engine)
    first = plant_readings(T0, 2 * 3600)  # two hours
    writer.write(Pack(readings=first))
    report = maintain(migrated_engine, KEEP_ALL)
    assert report.ran and report.hours_rebuilt == 4 and report.readings_rolled_up == len(first)
    assert stored(migrated_engine, schema.readings_1m) == expected(first, 60_000_000)
    assert stored(migrated_engine, schema.readings_1h) == expected(first, 3_600_000_000)

    # a gateway back from an outage delivers readings of the first hour, offset in time from the others
    late = plant_readings(T0 + 1_500_000, 1800, every_s=11)
    writer.write(Pack(readings=late))
    assert maintain(migrated_engine, KEEP_ALL).hours_rebuilt == 4, "marks stay while writers may renew them"
    truth = first + late
    assert stored(migrated_engine, schema.readings_1m) == expected(truth, 60_000_000)
    assert stored(migrated_engine, schema.readings_1h) == expected(truth, 3_600_000_000)
    # the rollups are what SQL over the raw table says too
    with migrated_engine.connect() as conn:
        raw = conn.execute(text("SELECT count(*), sum(CASE WHEN quality = 'good' AND value IS NOT NULL "
                                "THEN value END) FROM readings")).one()
        hourly = conn.execute(text("SELECT sum(count), sum(sum) FROM readings_1h")).one()
    assert hourly[0] == raw[0] == len(truth) and hourly[1] == pytest.approx(raw[1])


def test_marks_no_writer_renewed_are_removed_and_a_new_write_marks_again(migrated_engine: Engine) -> None:
    writer = writer_for(migrated_engine)
    writer.write(Pack(readings=plant_readings(T0, 600)))
    pending = schema.rollup_pending
    with migrated_engine.begin() as conn:
        assert conn.execute(select(pending.c.hour)).scalars().all() == [to_datetime(T0)] * 2
        conn.execute(update(pending).values(marked_at=to_datetime(T0)))  # long before the database's now
    report = maintain(migrated_engine, KEEP_ALL)
    assert (report.hours_rebuilt, report.marks_removed) == (2, 2)
    assert maintain(migrated_engine, KEEP_ALL).hours_rebuilt == 0, "nothing marked: nothing to do"
    # a writer that did not mark these hours lately marks them again (another gateway's writer, a restart)
    writer_for(migrated_engine).write(Pack(readings=[Reading("m1", "power", T0 + 700_000_000, 1.5)]))
    assert maintain(migrated_engine, KEEP_ALL).hours_rebuilt == 1
    assert stored(migrated_engine, schema.readings_1h)[("m1", "power", T0)][0] == 1 + expected(
        plant_readings(T0, 600), 3_600_000_000)[("m1", "power", T0)][0]


def test_retention_removes_old_rows_per_table_and_keeps_open_incidents(migrated_engine: Engine) -> None:
    writer = writer_for(migrated_engine)
    old, recent = plant_readings(T0, 600), plant_readings(T0 + 40 * 86_400_000_000, 600)
    writer.write(Pack(readings=old + recent))
    assert maintain(migrated_engine, KEEP_ALL).hours_rebuilt == 4
    a = schema.alerts
    stamp = to_datetime(T0)
    with migrated_engine.begin() as conn:
        conn.execute(insert(a), [
            {"alert_type": "t", "severity": "low", "title": f"a{i}", "event_key": f"k{i}", "resolved": resolved,
             "created_at": stamp, "updated_at": stamp} for i, resolved in enumerate((True, False))])
    now = to_datetime(T0 + 41 * 86_400_000_000 + 1_800_000_000)  # mid-hour: the raw cutoff goes down to the hour
    keep = RetentionConfig.model_validate({"raw": "30d", "1m": "40d", "1h": None, "incidents": "30d"})
    # late data for an hour the raw retention is about to remove: its good rollups are not replaced
    writer.write(Pack(readings=[Reading("m1", "power", T0 + 100_000, 99.0)]))
    before = stored(migrated_engine, schema.readings_1h)[("m1", "power", T0)]
    report = maintain(migrated_engine, keep, now=now)
    assert report.marks_expired == 2, "m1 and m2 of that hour"
    assert stored(migrated_engine, schema.readings_1h)[("m1", "power", T0)] == before
    old.append(Reading("m1", "power", T0 + 100_000, 99.0))
    assert report.deleted["readings"] == len(old) and report.deleted["readings_1m"] == len(expected(
        old, 60_000_000))
    assert "readings_1h" not in report.deleted, "1h: null keeps them for ever"
    assert report.deleted["alerts"] == 1, "the resolved alert goes, the open one stays"
    with migrated_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM readings")).scalar_one() == len(recent)
        assert conn.execute(text("SELECT title FROM alerts")).scalars().all() == ["a1"]
    assert len(stored(migrated_engine, schema.readings_1h)) == len(expected(old + recent, 3_600_000_000))


def test_a_reading_in_the_last_microsecond_of_an_hour_stays_in_that_hour(migrated_engine: Engine) -> None:
    edge = [Reading("m1", "power", T0 + 3_599_999_999, 7.0), Reading("m1", "power", T0 + 3_600_000_000, 8.0)]
    writer_for(migrated_engine).write(Pack(readings=edge))
    assert maintain(migrated_engine, KEEP_ALL).hours_rebuilt == 2
    assert stored(migrated_engine, schema.readings_1m) == expected(edge, 60_000_000)
    assert stored(migrated_engine, schema.readings_1h) == expected(edge, 3_600_000_000)


def test_backfill_marks_every_hour_the_raw_table_holds(migrated_engine: Engine) -> None:
    writer = writer_for(migrated_engine)
    readings = plant_readings(T0, 3 * 3600, every_s=60)
    writer.write(Pack(readings=readings))
    with migrated_engine.begin() as conn:  # as if written before the rollups existed
        conn.execute(text("DELETE FROM rollup_pending"))
    assert maintain(migrated_engine, KEEP_ALL).hours_rebuilt == 0
    report = maintain(migrated_engine, KEEP_ALL, backfill_marks=True)
    assert (report.marks_backfilled, report.hours_rebuilt) == (6, 6)
    assert stored(migrated_engine, schema.readings_1h) == expected(readings, 3_600_000_000)


def test_a_second_host_finds_the_lock_taken_and_does_nothing(mariadb_url: str, mariadb_server: str) -> None:
    from sqlalchemy import create_engine

    from agent.central import migrate

    engine = create_engine(mariadb_url)
    neighbour = create_engine(f"{mariadb_server}/test")  # another database on the same server
    try:
        migrate.upgrade(engine)
        writer_for(engine).write(Pack(readings=plant_readings(T0, 60)))
        with engine.connect() as other, named_lock(other, LOCK_NAME, 0) as got:
            assert got
            assert maintain(engine, KEEP_ALL).ran is False
            with neighbour.connect() as conn, named_lock(conn, LOCK_NAME, 0) as also:
                assert also, "the lock is the database's: another database's maintain runs meanwhile"
        assert maintain(engine, KEEP_ALL).hours_rebuilt == 2
    finally:
        engine.dispose()
        neighbour.dispose()


def test_cli_maintain_prints_what_it_did(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    config = tmp_path / "central.yaml"
    keep_all = {"raw": None, "1m": None, "1h": None, "power_readings": None, "system_metrics": None,
                "incidents": None}
    config.write_text(device_map("gw-roll", f"sqlite:///{db}", str(tmp_path / "buf"), [], retention=keep_all))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, env=env,
                              timeout=120)

    refused = cli("central", "maintain", "-c", str(config))
    assert refused.returncode == 1 and "run `hacksky-edge init-db`" in refused.stderr
    assert cli("init-db", "-c", str(config)).returncode == 0
    from sqlalchemy import create_engine
    engine = create_engine(f"sqlite:///{db}")
    writer_for(engine).write(Pack(readings=plant_readings(T0, 120)))
    engine.dispose()
    done = cli("central", "maintain", "-c", str(config))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"rolled up 2 device-hours ({len(plant_readings(T0, 120))} readings), 0 done; "
                                  "deleted past retention: nothing; ")


def test_a_session_time_zone_away_from_utc_changes_nothing(mariadb_url: str) -> None:
    """Marks, their age and the clock offset use the database's UTC clock, never NOW() (session time)."""
    from sqlalchemy import create_engine

    from agent.central import migrate

    engine = create_engine(mariadb_url, connect_args={"init_command": "SET time_zone = '+05:45'"})
    try:
        migrate.upgrade(engine)
        writer = writer_for(engine)
        writer.write(Pack(readings=plant_readings(T0, 60)))
        assert writer.clock_offset is not None and abs(writer.clock_offset) < 1.0, "not 5 h 45 min"
        with engine.begin() as conn:
            ages = conn.execute(text("SELECT TIMESTAMPDIFF(SECOND, marked_at, UTC_TIMESTAMP()) FROM rollup_pending"))
            assert all(abs(age) < 60 for (age,) in ages)
            registered = conn.execute(text("SELECT TIMESTAMPDIFF(SECOND, created_at, UTC_TIMESTAMP()), "
                                           "TIMESTAMPDIFF(SECOND, updated_at, UTC_TIMESTAMP()) FROM devices"))
            assert all(abs(a) < 60 and abs(b) < 60 for a, b in registered), "devices stamped in UTC too"
        assert maintain(engine, KEEP_ALL).marks_removed == 0, "fresh marks stay"
        with engine.begin() as conn:
            conn.execute(text("UPDATE rollup_pending SET marked_at = UTC_TIMESTAMP() - INTERVAL 16 MINUTE"))
        assert maintain(engine, KEEP_ALL).marks_removed == 2, "marks older than MARK_TTL + 5 min go"
    finally:
        engine.dispose()
