"""``central maintain``: rollups equal to what the raw rows say (late data included), marks, retention, lock."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, text, update

from agent.buffer.disk import Pack
from agent.central import schema
from agent.central.maintain import LOCK_NAME, maintain
from agent.central.writer import CentralWriter, to_datetime
from agent.records import DeviceInfo
from agent.settings import RetentionConfig
from drivers.base import Reading
from tests.helpers import device_map

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_780_000_000_000_000 - 1_780_000_000_000_000 % 3_600_000_000  # µs, an hour's start (pinned)
KEEP_ALL = RetentionConfig.model_validate({"raw": None, "1m": None, "1h": None, "power_readings": None,
                                           "system_metrics": None, "incidents": None})


def plant_readings(start_us: int, seconds: int, every_s: int = 7) -> list[Reading]:
    """Two meters, a number and a text point, some bad and uncertain readings, across the given span."""
    out = []
    for device in ("m1", "m2"):
        for k, t in enumerate(range(0, seconds, every_s)):
            ts = start_us + t * 1_000_000 + (3 if device == "m2" else 0)
            value = round(math.sin(t / 100) * 10 + (5 if device == "m2" else 0), 6)
            quality = "bad:timeout" if k % 11 == 5 else "uncertain:clock" if k % 13 == 7 else "good"
            out.append(Reading(device, "power", ts, None if quality.startswith("bad") else value, None, quality))
            out.append(Reading(device, "mode", ts, None, "auto" if k % 2 else "manual"))
    return out


def expected(readings: list[Reading], bucket_us: int) -> dict[tuple[str, str, int], tuple[Any, ...]]:
    """(device, point, bucket start µs) -> (count, good_count, min, max, sum, first, last), from the raw readings."""
    groups: dict[tuple[str, str, int], list[Reading]] = defaultdict(list)
    for r in readings:
        groups[(r.device, r.point, r.ts_us - r.ts_us % bucket_us)].append(r)
    out = {}
    for key, rows in groups.items():
        good = sorted((r for r in rows if r.quality == "good" and r.value is not None), key=lambda r: r.ts_us)
        values = [r.value for r in good]
        out[key] = (len(rows), len(good), min(values, default=None), max(values, default=None),
                    round(sum(values), 6) if values else None, good[0].value if good else None,
                    good[-1].value if good else None)
    return out


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


def writer_for(engine: Engine) -> CentralWriter:
    writer = CentralWriter(engine, "gw-roll")
    writer.sync_devices([DeviceInfo("m1"), DeviceInfo("m2")])
    return writer


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
    now = to_datetime(T0 + 41 * 86_400_000_000)
    keep = RetentionConfig.model_validate({"raw": "30d", "1m": "40d", "1h": None, "incidents": "30d"})
    report = maintain(migrated_engine, keep, now=now)
    assert report.deleted["readings"] == len(old) and report.deleted["readings_1m"] == len(expected(
        old, 60_000_000))
    assert "readings_1h" not in report.deleted, "1h: null keeps them for ever"
    assert report.deleted["alerts"] == 1, "the resolved alert goes, the open one stays"
    with migrated_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM readings")).scalar_one() == len(recent)
        assert conn.execute(text("SELECT title FROM alerts")).scalars().all() == ["a1"]
    assert len(stored(migrated_engine, schema.readings_1h)) == len(expected(old + recent, 3_600_000_000))


def test_a_second_host_finds_the_lock_taken_and_does_nothing(mariadb_url: str) -> None:
    from sqlalchemy import create_engine

    from agent.central import migrate

    engine = create_engine(mariadb_url)
    try:
        migrate.upgrade(engine)
        writer_for(engine).write(Pack(readings=plant_readings(T0, 60)))
        with engine.connect() as other:
            assert other.execute(text("SELECT GET_LOCK(:n, 0)"), {"n": LOCK_NAME}).scalar() == 1
            assert maintain(engine, KEEP_ALL).ran is False
            other.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": LOCK_NAME})
        assert maintain(engine, KEEP_ALL).hours_rebuilt == 2
    finally:
        engine.dispose()


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
