"""Statistics from rollups plus raw rows equal what the raw rows say, for every window (SQLite and MariaDB)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import case, func, select
from sqlalchemy.engine import Engine

from agent.api import hybrid
from agent.buffer.disk import Pack
from agent.central import schema
from agent.central.maintain import maintain
from agent.central.writer import as_datetime, to_datetime
from agent.records import power_event
from agent.settings import RetentionConfig
from drivers.base import Reading
from tests.agent.rollup_truth import KEEP_ALL, T0, plant_readings, writer_for

H = 3_600_000_000
START = to_datetime(T0)


def power_rows(start_us: int, seconds: int) -> list[Any]:
    """m1 a meter every 30 s (every fifth sample an anomaly, every seventh without a power value)."""
    return [power_event({"device": "m1", "ts_us": start_us + t * 1_000_000,
                         "fields": {"power_consumption": None if k % 7 == 3 else 10.0 + k % 13,
                                    "is_anomaly": k % 5 == 0}})
            for k, t in enumerate(range(0, seconds, 30))]


@pytest.fixture
def plant(migrated_engine: Engine) -> Engine:
    """Five hours of two devices, rolled up; then late data in hour 1 and new data in hour 5 (marked only)."""
    writer = writer_for(migrated_engine)
    writer.write(Pack(readings=plant_readings(T0, 5 * 3600, every_s=61), events=power_rows(T0, 5 * 3600)))
    assert maintain(migrated_engine, KEEP_ALL).hours_rebuilt == 10
    late = [Reading("m2", "power", T0 + H + 999, 4.25), Reading("m1", "power", T0 + 5 * H + 5, 1.0)]
    writer_for(migrated_engine).write(Pack(readings=late, events=power_rows(T0 + 5 * H, 600)))
    return migrated_engine


def truth(engine: Engine, since: datetime | None, until: datetime | None, device: int | None) -> tuple[Any, Any]:
    r, p = schema.readings, schema.power_readings

    def within(ts: Any) -> list[Any]:
        return [*([ts >= since] if since else []), *([ts < until] if until else [])]

    with engine.connect() as conn:
        dev_r = [r.c.device_id == device] if device else []
        n, devices, first, last = conn.execute(select(func.count(), func.count(func.distinct(r.c.device_id)),
                                                      func.min(r.c.ts), func.max(r.c.ts))
                                               .where(*within(r.c.ts), *dev_r)).one()
        kw = p.c.power_consumption
        dev_p = [p.c.device_id == device] if device else []
        power = {row[0]: {"samples": row[1], "avg_kw": row[2], "min_kw": row[3], "max_kw": row[4],
                          "anomalies": row[5]} for row in conn.execute(
            select(p.c.device_id, func.count(), func.avg(kw), func.min(kw), func.max(kw),
                   func.count(case((p.c.is_anomaly.is_(True), 1))))
            .where(*within(p.c.timestamp), *dev_p).group_by(p.c.device_id))}
    readings = {"readings": n, "devices": devices, "first": first and as_datetime(first),
                "last": last and as_datetime(last)}
    return readings, power


MINUTE = timedelta(minutes=1)
WINDOWS = [(None, None), (START, None), (None, START + timedelta(hours=3)),
           (START + timedelta(minutes=17), START + timedelta(hours=4, minutes=3)),  # partial ends, whole middle
           (START + timedelta(hours=1), START + timedelta(hours=2)),  # one whole hour, late data in it
           (START + timedelta(hours=2, minutes=5), START + timedelta(hours=2, minutes=50)),  # inside one hour
           (START + timedelta(hours=4, seconds=1), None),  # the marked, never rolled-up hour 5
           (START - timedelta(days=1), START - timedelta(hours=1))]  # nothing


@pytest.mark.parametrize("window", WINDOWS, ids=range(len(WINDOWS)))
def test_statistics_equal_the_raw_aggregates_for_any_window(plant: Engine, window: tuple[Any, Any]) -> None:
    since, until = window
    for device in (None, 1):
        devices = None if device is None else select(schema.devices.c.id).where(schema.devices.c.id == device)
        readings, power = truth(plant, since, until, device)
        with plant.connect() as conn:
            assert hybrid.readings_summary(conn, since, until, devices) == readings
            got = hybrid.power_summary(conn, since, until, devices)
        assert got.keys() == power.keys()
        for pk, want in power.items():
            assert got[pk] == {**want, "avg_kw": pytest.approx(want["avg_kw"])}


def test_hours_past_the_raw_retention_are_still_counted_from_their_rollups(plant: Engine) -> None:
    everything, _ = truth(plant, None, None, None)
    now = START + timedelta(days=3, hours=3)  # raw kept 3 days: hours 0-2 of the plant's raw rows go
    maintain(plant, RetentionConfig.model_validate({"raw": "3d", "1m": None, "1h": None}), now=now)
    remaining, _ = truth(plant, None, None, None)
    assert remaining["readings"] < everything["readings"]
    with plant.connect() as conn:
        summary = hybrid.readings_summary(conn, None, None)
    # all but the late reading of hour 1: marked, but its hour was past the cutoff at the next run, so
    # its rollups were kept as they were and the raw row went (README: "Data that lasts")
    assert summary["readings"] == everything["readings"] - 1 and summary["devices"] == 2
    assert summary["first"] == START, "no raw row left in the first hour: its start"
    assert summary["last"] == everything["last"]


def test_power_history_from_before_its_rollup_is_backfilled_and_totals_count_only_stored_rows(
        migrated_engine: Engine) -> None:
    """Power rows inserted with no mark (a database upgraded to revision 0006 with a year of them):
    ``maintain --backfill`` builds their ``power_1h``; once retention removed the oldest, the list's
    total counts the rows left, while statistics keep what the rollups say."""
    writer = writer_for(migrated_engine)
    writer.sync_devices([])
    with migrated_engine.begin() as conn:
        m1 = conn.execute(select(schema.devices.c.id).where(schema.devices.c.device_id_str == "m1")).scalar_one()
        conn.execute(schema.power_readings.insert(), [
            {"device_id": m1, "timestamp": to_datetime(T0 + k * 600_000_000), "power_consumption": float(k),
             "is_anomaly": False} for k in range(6 * 24 * 3)])  # three days, every 10 minutes
    report = maintain(migrated_engine, KEEP_ALL, backfill_marks=True)
    assert report.marks_backfilled == 72 and report.hours_rebuilt == 72
    with migrated_engine.connect() as conn:
        assert hybrid.power_count(conn, None, None) == 432
    now = START + timedelta(days=3, minutes=30)
    keep = RetentionConfig.model_validate({"raw": None, "power_readings": "1d", "1m": None, "1h": None})
    assert maintain(migrated_engine, keep, now=now).deleted["power_readings"] == 6 * 24 * 2 + 3
    with migrated_engine.begin() as conn:  # 15 minutes later: no writer renews the marks, maintain drops them
        conn.execute(schema.rollup_pending.delete())
    assert maintain(migrated_engine, keep, now=now).hours_rebuilt == 0
    with migrated_engine.connect() as conn:
        assert hybrid.power_count(conn, None, None) == 432 - 6 * 24 * 2 - 3, "the rows left, not the rollups'"
        assert hybrid.power_summary(conn, None, None)[m1]["samples"] == 432, "statistics: the rollups' history"
