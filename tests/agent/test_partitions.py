"""Daily partitions of ``readings`` on real MariaDB: days added ahead, whole days dropped past the
raw retention, nothing else lost; the plan itself on every shape of table."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from agent.buffer.disk import Pack
from agent.central import migrate, partitions
from agent.central.engine import make_engine
from agent.central.maintain import maintain
from agent.central.partitions import AHEAD_DAYS, MAX_BACK_DAYS, Partition, listed, plan
from agent.central.writer import to_datetime
from agent.settings import CentralConfig, RetentionConfig
from drivers.base import Reading
from tests.agent.rollup_truth import KEEP_ALL, T0, expected, plant_readings, writer_for

DAY_US = 86_400_000_000
NOW = datetime(2026, 11, 30, 9, 30)
FUTURE = Partition("p_future", None, 0)


def day(d: str) -> datetime:
    return datetime.fromisoformat(d)


def test_a_new_table_is_split_from_its_oldest_reading_to_the_days_ahead() -> None:
    days, drop = plan([FUTURE], NOW, None, oldest=day("2026-11-28 13:00"))
    assert days == [date(2026, 11, 28) + timedelta(days=i) for i in range(3 + AHEAD_DAYS)] and drop == []
    assert plan([FUTURE], NOW, None, None)[0][0] == NOW.date(), "empty: from today"
    assert plan([FUTURE], NOW, None, day("2031-01-01"))[0][0] == NOW.date(), "a clock years ahead: from today"


def test_the_first_split_starts_no_earlier_than_the_cutoff_nor_max_back_days() -> None:
    assert plan([FUTURE], NOW, day("2026-11-20 09:00"), day("2026-01-01"))[0][0] == date(2026, 11, 20)
    assert plan([FUTURE], NOW, None, day("2020-01-01"))[0][0] == NOW.date() - timedelta(days=MAX_BACK_DAYS)


def test_later_runs_continue_after_the_last_day_and_drop_whole_days_before_the_cutoff() -> None:
    existing = [Partition("p_history", day("2026-11-25"), 10), Partition("p20261125", day("2026-11-26"), 5),
                Partition("p20261126", day("2026-11-27"), 5), Partition("p20261127", day("2026-11-28"), 5),
                FUTURE]
    days, drop = plan(existing, NOW, day("2026-11-27 00:00"), None)
    assert days == [date(2026, 11, 28) + timedelta(days=i) for i in range(3 + AHEAD_DAYS)]
    assert drop == ["p_history", "p20261125", "p20261126"], "a day ending at the cutoff goes; the next stays"
    assert plan([*existing[:-1], Partition("p20261203", day("2026-12-04"), 0), FUTURE], NOW, None, None) == ([], [])


@pytest.fixture
def engine(mariadb_url: str) -> Iterator[Engine]:
    engine = make_engine(CentralConfig(url=mariadb_url))
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


def _rows(engine: Engine, partition: str | None = None) -> int:
    where = f" PARTITION ({partition})" if partition else ""
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT COUNT(*) FROM readings{where}")).scalar_one())


def _names(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [p.name for p in listed(conn)]


def _day_name(ts_us: int, days: int = 0) -> str:
    return f"p{to_datetime(ts_us + days * DAY_US):%Y%m%d}"


def test_maintain_adds_days_ahead_drops_expired_days_and_loses_nothing_else(engine: Engine) -> None:
    assert _names(engine) == ["p_future"], "a new database: one partition for everything"
    writer = writer_for(engine)
    readings = [r for d in range(6) for r in plant_readings(T0 + d * DAY_US, 1200, every_s=60)]
    ahead = Reading("m1", "power", T0 + 3650 * DAY_US, 1.0)  # a gateway clock ten years ahead
    writer.write(Pack(readings=[*readings, ahead]))
    now = to_datetime(T0 + 5 * DAY_US + 3_600_000_000)

    first = maintain(engine, KEEP_ALL, now=now)
    days = [_day_name(T0, d) for d in range(6 + AHEAD_DAYS)]
    assert first.partitions.added == days and first.partitions.dropped == {}
    assert _names(engine) == [*days, "p_future"]
    per_day = len(readings) // 6
    assert [_rows(engine, name) for name in days[:6]] == [per_day] * 6, "each day's readings in its partition"
    assert _rows(engine, "p_future") == 1, "the reading from the future stays where it fits"
    assert maintain(engine, KEEP_ALL, now=now).partitions.added == [], "a second run: nothing to add"

    # two days later with 4 days of raw retention: T0 is at 20:00 UTC, so the partitions of days 0-2
    # end before the cutoff (day 3, 21:00) and day 3's readings (20:00-20:20) go row by row
    later = now + timedelta(days=2)
    keep = RetentionConfig.model_validate({"raw": "4d", "1m": None, "1h": None})
    report = maintain(engine, keep, now=later)
    cutoff = later - timedelta(days=4)  # on an hour already
    assert to_datetime(T0).hour == 20
    assert list(report.partitions.dropped) == days[:3], "days ending at or before the cutoff, as whole partitions"
    assert report.partitions.added == [_day_name(T0, 6 + AHEAD_DAYS + d) for d in range(2)]
    kept = [r for r in readings if to_datetime(r.ts_us) >= cutoff] + [ahead]
    assert _rows(engine) == len(kept)
    assert report.deleted["readings"] == per_day, "the rest row by row"
    with engine.connect() as conn:  # the rollups of the dropped days stay
        hours = conn.execute(text("SELECT COALESCE(SUM(count), 0) FROM readings_1h")).scalar_one()
    assert hours == len(readings) + 1 == sum(v[0] for v in expected([*readings, ahead], 3_600_000_000).values())


def test_maintain_leaves_an_unpartitioned_table_alone(migrated_engine: Engine) -> None:
    """SQLite (no partitions) and MariaDB alike: the rows past retention go either way."""
    writer = writer_for(migrated_engine)
    writer.write(Pack(readings=plant_readings(T0, 600) + plant_readings(T0 + 10 * DAY_US, 600)))
    with migrated_engine.begin() as conn:
        if migrated_engine.dialect.name != "sqlite":
            conn.execute(text("ALTER TABLE readings REMOVE PARTITIONING"))
    report = maintain(migrated_engine, RetentionConfig.model_validate({"raw": "5d"}),
                      now=to_datetime(T0 + 10 * DAY_US + 3_600_000_000))
    assert report.partitions.added == [] and report.partitions.dropped == {}
    assert report.deleted["readings"] == len(plant_readings(T0, 600))
    assert _rows(migrated_engine) == len(plant_readings(T0, 600))


def test_partition_ddl_that_waits_too_long_is_skipped_and_retention_goes_on(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = writer_for(engine)
    writer.write(Pack(readings=plant_readings(T0, 600) + plant_readings(T0 + 10 * DAY_US, 600)))
    monkeypatch.setattr(partitions, "DDL_LOCK_WAIT", 1)
    with engine.connect() as reader:  # an open transaction that read the table holds its metadata lock
        reader.execute(text("SELECT COUNT(*) FROM readings")).scalar_one()
        report = maintain(engine, RetentionConfig.model_validate({"raw": "5d"}),
                          now=to_datetime(T0 + 10 * DAY_US + 3_600_000_000))
        reader.rollback()
    assert "Lock wait timeout" in report.partitions.error and report.partitions.added == []
    assert report.deleted["readings"] == len(plant_readings(T0, 600)), "retention went on, row by row"
    assert maintain(engine, KEEP_ALL, now=to_datetime(T0 + 10 * DAY_US)).partitions.added, "the next run adds them"


def test_a_future_row_does_not_push_the_history_partition_past_today(mariadb_url: str) -> None:
    """A table partitioned while it held a row from a clock years ahead: history ends tomorrow at
    the latest, and the row waits in p_future."""
    from alembic import command

    engine = make_engine(CentralConfig(url=mariadb_url))
    cfg = migrate.alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0004")
    writer = writer_for(engine)
    writer.write(Pack(readings=[Reading("m1", "power", T0, 1.0), Reading("m1", "power", T0 + 3650 * DAY_US, 2.0)]))
    migrate.upgrade(engine)
    with engine.connect() as conn:
        history, future = listed(conn)
        today = conn.execute(text("SELECT UTC_DATE()")).scalar_one()
    engine.dispose()
    assert history.name == "p_history" and history.bound is not None
    assert history.bound.date() <= today + timedelta(days=1) and future.rows >= 0
