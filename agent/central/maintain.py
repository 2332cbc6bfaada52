"""``hacksky-edge central maintain``: rollups of the hours writers marked, the days of ``readings``
(partitions on MySQL/MariaDB: :mod:`agent.central.partitions`), then retention.

Rollups are rebuilt per (device, hour) from the raw rows, so they always say what the raw rows
say, late data included: the writer marks each hour it writes into (``rollup_pending``), and a
run rebuilds the marked hours' ``readings_1m`` buckets from ``readings`` and their
``readings_1h`` bucket from those. A mark nobody renewed for longer than the writers' MARK_TTL
(plus a margin) is removed in the same transaction as its rebuild; a newer one stays and its
hour is rebuilt again by the next run. Safe to run from several hosts at once: on MySQL/MariaDB
a run holds a named lock, and a second run finds it taken and does nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import Select, Table, and_, case, delete, func, insert, select
from sqlalchemy.engine import Connection, Engine

from agent.central import partitions, schema
from agent.central.engine import is_mysql, named_lock
from agent.central.writer import MARK_TTL, as_datetime, db_now, retrying_lock_conflicts
from agent.settings import RetentionConfig

log = logging.getLogger(__name__)

LOCK_NAME = "hacksky_edge_maintain"
#: a mark older than this (by the database's clock) is one no writer still counts as made
MARK_STALE = timedelta(seconds=MARK_TTL + 300)
#: marks rebuilt per transaction
BATCH = 20
#: rows deleted per statement by retention (bounded transactions, no long locks)
DELETE_CHUNK = 50_000

r, m1, h1, pending = schema.readings, schema.readings_1m, schema.readings_1h, schema.rollup_pending
pw, pw1h = schema.power_readings, schema.power_1h
ROLLUP_COLUMNS = ["device_id", "point", "bucket", "count", "good_count", "min", "max", "sum", "first", "last"]
POWER_COLUMNS = ["device_id", "bucket", "samples", "kw_count", "kw_sum", "kw_min", "kw_max", "anomalies"]


@dataclass
class MaintainReport:
    """What one run did."""

    ran: bool = True  # False: another host held the lock
    hours_rebuilt: int = 0
    marks_removed: int = 0
    marks_expired: int = 0  # of hours before the raw retention's cutoff: dropped, not rebuilt
    marks_backfilled: int = 0
    readings_rolled_up: int = 0
    seconds: float = 0.0
    deleted: dict[str, int] = field(default_factory=dict)  # table -> rows removed by retention
    partitions: partitions.PartitionReport = field(default_factory=partitions.PartitionReport)


def _truncate(engine: Engine, ts: Any, unit: str) -> Any:
    """The start of ``ts``'s minute or hour, in the form the dialect stores times."""
    if is_mysql(engine):
        return func.cast(func.date_format(ts, "%Y-%m-%d %H:%i:00" if unit == "minute" else "%Y-%m-%d %H:00:00"),
                         schema.Timestamp)
    # SQLite keeps 'YYYY-MM-DD HH:MM:SS.ffffff': cut the text (strftime goes through milliseconds and
    # some versions round 59.9996 s into the next minute)
    return func.substr(ts, 1, 16 if unit == "minute" else 13).op("||")(
        ":00.000000" if unit == "minute" else ":00:00.000000")


def _good(table: Any) -> Any:
    return and_(table.c.quality == "good", table.c.value.is_not(None))


def minute_rows(engine: Engine, device: int, start: datetime, end: datetime, point: str | None = None) -> Select[Any]:
    """One device's minute rollup rows (ROLLUP_COLUMNS) over ``[start, end)``, from the raw readings."""
    good = _good(r)
    bucket = _truncate(engine, r.c.ts, "minute").label("bucket")
    where = [r.c.device_id == device, r.c.ts >= start, r.c.ts < end] + ([r.c.point == point] if point else [])
    groups = (select(r.c.device_id, r.c.point, bucket, func.count().label("count"),
                     func.count(case((good, 1))).label("good_count"),
                     func.min(case((good, r.c.value))).label("min"), func.max(case((good, r.c.value))).label("max"),
                     func.sum(case((good, r.c.value))).label("sum"),
                     func.min(case((good, r.c.ts))).label("t_first"), func.max(case((good, r.c.ts))).label("t_last"))
              .where(*where).group_by(r.c.device_id, r.c.point, bucket).subquery("g"))
    return _with_ends(groups, r, "ts", "value", "value")


def hour_rows(engine: Engine, minutes: Any, device: int, start: datetime, end: datetime) -> Select[Any]:
    """Hour rollup rows (ROLLUP_COLUMNS) over ``[start, end)`` from minute rows: ``readings_1m`` or a CTE of
    :func:`minute_rows`."""
    has_good = minutes.c.good_count > 0
    hour = _truncate(engine, minutes.c.bucket, "hour").label("bucket")
    groups = (select(minutes.c.device_id, minutes.c.point, hour, func.sum(minutes.c.count).label("count"),
                     func.sum(minutes.c.good_count).label("good_count"), func.min(minutes.c.min).label("min"),
                     func.max(minutes.c.max).label("max"), func.sum(minutes.c.sum).label("sum"),
                     func.min(case((has_good, minutes.c.bucket))).label("t_first"),
                     func.max(case((has_good, minutes.c.bucket))).label("t_last"))
              .where(minutes.c.device_id == device, minutes.c.bucket >= start, minutes.c.bucket < end)
              .group_by(minutes.c.device_id, minutes.c.point, hour).subquery("g"))
    return _with_ends(groups, minutes, "bucket", "first", "last")


def power_hour_rows(engine: Engine, device: int, start: datetime, end: datetime) -> Select[Any]:
    """One meter's ``power_1h`` rows (POWER_COLUMNS) over ``[start, end)`` from ``power_readings``."""
    bucket = _truncate(engine, pw.c.timestamp, "hour").label("bucket")
    kw = pw.c.power_consumption
    return (select(pw.c.device_id, bucket, func.count().label("samples"), func.count(kw).label("kw_count"),
                   func.sum(kw).label("kw_sum"), func.min(kw).label("kw_min"), func.max(kw).label("kw_max"),
                   func.count(case((pw.c.is_anomaly.is_(True), 1))).label("anomalies"))
            .where(pw.c.device_id == device, pw.c.timestamp >= start, pw.c.timestamp < end)
            .group_by(pw.c.device_id, bucket))


def _with_ends(groups: Any, source: Any, key: str, first_value: str, last_value: str) -> Select[Any]:
    """The rollup columns of ``groups`` plus the bucket's first and last good values: ``source``'s rows
    (by device, point and ``key``) at the group's ``t_first`` and ``t_last``."""
    first, last = source.alias("f"), source.alias("l")

    def at(row: Any, mark: str) -> Any:
        return and_(row.c.device_id == groups.c.device_id, row.c.point == groups.c.point,
                    row.c[key] == groups.c[mark])

    return (select(groups.c.device_id, groups.c.point, groups.c.bucket, groups.c.count, groups.c.good_count,
                   groups.c.min, groups.c.max, groups.c.sum, first.c[first_value].label("first"),
                   last.c[last_value].label("last"))
            .select_from(groups.outerjoin(first, at(first, "t_first")).outerjoin(last, at(last, "t_last"))))


def _rebuild(conn: Connection, engine: Engine, device: int, hour: datetime, power: bool = True) -> int:
    """``readings_1m``, ``readings_1h`` and ``power_1h`` of one device-hour from the raw rows; returns the
    raw readings read."""
    end = hour + timedelta(hours=1)
    conn.execute(delete(m1).where(m1.c.device_id == device, m1.c.bucket >= hour, m1.c.bucket < end))
    conn.execute(insert(m1).from_select(ROLLUP_COLUMNS, minute_rows(engine, device, hour, end)))
    conn.execute(delete(h1).where(h1.c.device_id == device, h1.c.bucket == hour))
    conn.execute(insert(h1).from_select(ROLLUP_COLUMNS, hour_rows(engine, m1, device, hour, end)))
    if power:
        _rebuild_power(conn, engine, device, hour)
    return int(conn.execute(select(func.coalesce(func.sum(h1.c.count), 0)).where(
        h1.c.device_id == device, h1.c.bucket == hour)).scalar_one())


def _rebuild_power(conn: Connection, engine: Engine, device: int, hour: datetime) -> None:
    """``power_1h`` of one device-hour from ``power_readings``."""
    conn.execute(delete(pw1h).where(pw1h.c.device_id == device, pw1h.c.bucket == hour))
    conn.execute(insert(pw1h).from_select(POWER_COLUMNS, power_hour_rows(engine, device, hour,
                                                                         hour + timedelta(hours=1))))


def rollup(engine: Engine, report: MaintainReport, raw_from: datetime | None = None,
           power_from: datetime | None = None) -> None:
    """Rebuild every marked device-hour; remove the marks no writer renewed lately.

    Hours before ``raw_from`` (the raw retention's cutoff, on an hour) keep the readings rollups
    they have: their raw rows are gone or going, and a rebuild would replace good buckets with a
    part of them. Their marks are dropped (late data that old is in the raw table until retention
    removes it); their ``power_1h`` row is still rebuilt while ``power_readings`` keeps the hour
    (``power_from``, its own retention's cutoff; None: kept for ever): an hour that retention has
    begun to delete keeps its ``power_1h`` row as built.
    Reads run at READ COMMITTED: rebuilding takes no shared locks on the readings writers insert.
    """
    engine = engine.execution_options(isolation_level="READ COMMITTED") if is_mysql(engine) else engine
    with engine.connect() as conn:
        now = as_datetime(conn.execute(select(db_now(engine))).scalar_one())
        marks = conn.execute(select(pending.c.device_id, pending.c.hour, pending.c.marked_at)
                             .order_by(pending.c.device_id, pending.c.hour)).fetchall()
    stale_before = now - MARK_STALE
    for start in range(0, len(marks), BATCH):
        batch = marks[start:start + BATCH]  # a writer marking the same hour: the batch is tried again
        retrying_lock_conflicts(partial(_rebuild_batch, engine, batch, stale_before, (raw_from, power_from),
                                        report))


def _rebuild_batch(engine: Engine, batch: Sequence[Any], stale_before: datetime,
                   cutoffs: tuple[datetime | None, datetime | None], report: MaintainReport) -> None:
    raw_from, power_from = cutoffs
    rebuilt = removed = expired = rolled = 0
    with engine.begin() as conn:
        for device, hour, marked_at in batch:
            hour = as_datetime(hour)
            too_old = raw_from is not None and hour < raw_from
            if too_old or as_datetime(marked_at) < stale_before:
                # first, so that a writer marking this hour again waits for this rebuild's commit
                gone = conn.execute(delete(pending).where(
                    pending.c.device_id == device, pending.c.hour == hour, pending.c.marked_at == marked_at)).rowcount
                removed += gone
                expired += gone if too_old else 0
            power_kept = power_from is None or hour >= power_from  # every power row of the hour still there
            if not too_old:
                rolled += _rebuild(conn, engine, device, hour, power_kept)
                rebuilt += 1
            elif power_kept:
                _rebuild_power(conn, engine, device, hour)
    report.hours_rebuilt += rebuilt
    report.marks_removed += removed
    report.marks_expired += expired
    report.readings_rolled_up += rolled


def backfill(engine: Engine) -> int:
    """Mark every hour the raw tables hold (once, after upgrading a database that had readings
    before the rollups existed, or power rows before ``power_1h``); returns the marks made. One
    statement per table, device and day, along a (device_id, time) index: bounded statements
    whatever the tables' size."""
    marked = 0
    for table, ts in ((r, r.c.ts), (pw, pw.c.timestamp)):
        hour = _truncate(engine, ts, "hour")
        with engine.connect() as conn:  # per device through the index: no scan of the table
            spans = conn.execute(select(table.c.device_id, func.min(ts), func.max(ts))
                                 .group_by(table.c.device_id)).all()
        for device, first, last in spans:
            day = as_datetime(first).replace(hour=0, minute=0, second=0, microsecond=0)
            while day <= as_datetime(last):
                hours = (select(table.c.device_id, hour, db_now(engine)).distinct()
                         .where(table.c.device_id == device, ts >= day, ts < day + timedelta(days=1)))
                with engine.begin() as conn:
                    marked += int(conn.execute(
                        insert(pending).from_select(["device_id", "hour", "marked_at"], hours)
                        .prefix_with("IGNORE" if is_mysql(engine) else "OR IGNORE")).rowcount)
                day += timedelta(days=1)
    return marked


def _delete_before(engine: Engine, table: Table, column: Any, before: datetime, *extra: Any) -> int:
    """Delete rows with ``column < before`` in chunks; returns how many."""
    total = 0
    while True:
        statement = delete(table).where(column < before, *extra)
        with engine.begin() as conn:
            if is_mysql(engine):
                statement = statement.with_dialect_options(mysql_limit=DELETE_CHUNK)
            done = conn.execute(statement).rowcount
        total += done
        if not is_mysql(engine) or done < DELETE_CHUNK:
            return total


def raw_cutoff(cfg: RetentionConfig, now: datetime) -> datetime | None:
    """Raw readings before this go (the retention's age rounded down to an hour, so that an hour's
    raw rows go together and the rollups of the hours kept stay whole)."""
    if cfg.raw is None:
        return None
    return (now - timedelta(seconds=cfg.raw)).replace(minute=0, second=0, microsecond=0)


def retention(engine: Engine, cfg: RetentionConfig, now: datetime, report: MaintainReport) -> None:
    """Remove what is older than each table's retention (``None``: kept for ever)."""
    a, x = schema.alerts, schema.attack_detections
    plan: list[tuple[str, Table, Any, float | None, tuple[Any, ...]]] = [
        ("readings", r, r.c.ts, cfg.raw, ()),
        ("readings_1m", m1, m1.c.bucket, cfg.minutes, ()),
        ("readings_1h", h1, h1.c.bucket, cfg.hours, ()),
        ("power_1h", pw1h, pw1h.c.bucket, cfg.hours, ()),
        ("power_readings", schema.power_readings, schema.power_readings.c.timestamp, cfg.power_readings, ()),
        ("system_metrics", schema.system_metrics, schema.system_metrics.c.timestamp, cfg.system_metrics, ()),
        # incidents go once closed: an alert still open, or an attack still going, is kept whatever its age
        ("alerts", a, a.c.updated_at, cfg.incidents, (a.c.resolved.is_(True),)),
        ("attack_detections", x, x.c.updated_at, cfg.incidents, (x.c.ended_at.is_not(None),)),
    ]
    for name, table, column, keep, extra in plan:
        if keep is not None:
            before = raw_cutoff(cfg, now) if table is r else now - timedelta(seconds=keep)
            assert before is not None
            report.deleted[name] = _delete_before(engine, table, column, before, *extra)


def maintain(engine: Engine, cfg: RetentionConfig, now: datetime | None = None,
             backfill_marks: bool = False) -> MaintainReport:
    """One run: rollups, then retention as of ``now`` (naive UTC; default: the database's clock);
    ``backfill_marks`` first marks every hour the raw table holds (see :func:`backfill`)."""
    report = MaintainReport()
    started = time.perf_counter()
    with engine.connect() as conn, named_lock(conn, LOCK_NAME, 0) as got:
        if not got:
            log.info("another maintain run holds %s; nothing to do", LOCK_NAME)
            return MaintainReport(ran=False)
        if now is None:
            now = as_datetime(conn.execute(select(db_now(engine))).scalar_one())
        if backfill_marks:
            report.marks_backfilled = backfill(engine)
        raw_from = raw_cutoff(cfg, now)
        power_from = None if cfg.power_readings is None else now - timedelta(seconds=cfg.power_readings)
        rollup(engine, report, raw_from, power_from)
        report.partitions = partitions.manage(engine, now, raw_from)
        retention(engine, cfg, now, report)
    report.seconds = time.perf_counter() - started
    return report
