"""``hacksky-edge central maintain``: rollups of the hours writers marked, then retention.

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
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, and_, case, delete, func, insert, literal, select, text
from sqlalchemy.engine import Connection, Engine

from agent.central import schema
from agent.central.writer import MARK_TTL, db_now
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
ROLLUP_COLUMNS = ["device_id", "point", "bucket", "count", "good_count", "min", "max", "sum", "first", "last"]


@dataclass
class MaintainReport:
    """What one run did."""

    ran: bool = True  # False: another host held the lock
    hours_rebuilt: int = 0
    marks_removed: int = 0
    readings_rolled_up: int = 0
    seconds: float = 0.0
    deleted: dict[str, int] = field(default_factory=dict)  # table -> rows removed by retention


def _minute(engine: Engine, ts: Any) -> Any:
    """The start of ``ts``'s minute, in the form the dialect stores times."""
    if engine.dialect.name in ("mysql", "mariadb"):
        return func.cast(func.date_format(ts, "%Y-%m-%d %H:%i:00"), schema.Timestamp)
    return func.strftime("%Y-%m-%d %H:%M:00.000000", ts)


def _good(table: Any) -> Any:
    return and_(table.c.quality == "good", table.c.value.is_not(None))


def _rebuild_minutes(conn: Connection, engine: Engine, device: int, hour: datetime) -> int:
    """``readings_1m`` of one device-hour from the raw rows; returns the raw rows read."""
    conn.execute(delete(m1).where(m1.c.device_id == device, m1.c.bucket >= hour,
                                  m1.c.bucket < hour + timedelta(hours=1)))
    good = _good(r)
    bucket = _minute(engine, r.c.ts).label("bucket")
    groups = (select(r.c.device_id, r.c.point, bucket, func.count().label("count"),
                     func.count(case((good, 1))).label("good_count"),
                     func.min(case((good, r.c.value))).label("min"), func.max(case((good, r.c.value))).label("max"),
                     func.sum(case((good, r.c.value))).label("sum"),
                     func.min(case((good, r.c.ts))).label("t_first"), func.max(case((good, r.c.ts))).label("t_last"))
              .where(r.c.device_id == device, r.c.ts >= hour, r.c.ts < hour + timedelta(hours=1))
              .group_by(r.c.device_id, r.c.point, bucket).subquery("g"))
    first, last = r.alias("f"), r.alias("l")
    rows = (select(groups.c.device_id, groups.c.point, groups.c.bucket, groups.c.count, groups.c.good_count,
                   groups.c.min, groups.c.max, groups.c.sum, first.c.value, last.c.value)
            .select_from(groups
                         .outerjoin(first, and_(first.c.device_id == groups.c.device_id,
                                                first.c.point == groups.c.point, first.c.ts == groups.c.t_first))
                         .outerjoin(last, and_(last.c.device_id == groups.c.device_id,
                                               last.c.point == groups.c.point, last.c.ts == groups.c.t_last))))
    conn.execute(insert(m1).from_select(ROLLUP_COLUMNS, rows))
    return int(conn.execute(select(func.coalesce(func.sum(m1.c.count), 0)).where(
        m1.c.device_id == device, m1.c.bucket >= hour, m1.c.bucket < hour + timedelta(hours=1))).scalar_one())


def _rebuild_hour(conn: Connection, device: int, hour: datetime) -> None:
    """``readings_1h`` of one device-hour from its minutes."""
    conn.execute(delete(h1).where(h1.c.device_id == device, h1.c.bucket == hour))
    has_good = m1.c.good_count > 0
    groups = (select(m1.c.device_id, m1.c.point, func.sum(m1.c.count).label("count"),
                     func.sum(m1.c.good_count).label("good_count"), func.min(m1.c.min).label("min"),
                     func.max(m1.c.max).label("max"), func.sum(m1.c.sum).label("sum"),
                     func.min(case((has_good, m1.c.bucket))).label("b_first"),
                     func.max(case((has_good, m1.c.bucket))).label("b_last"))
              .where(m1.c.device_id == device, m1.c.bucket >= hour, m1.c.bucket < hour + timedelta(hours=1))
              .group_by(m1.c.device_id, m1.c.point).subquery("g"))
    first, last = m1.alias("f"), m1.alias("l")
    rows = (select(groups.c.device_id, groups.c.point, literal(hour, schema.Timestamp), groups.c.count,
                   groups.c.good_count, groups.c.min, groups.c.max, groups.c.sum, first.c.first, last.c.last)
            .select_from(groups
                         .outerjoin(first, and_(first.c.device_id == groups.c.device_id,
                                                first.c.point == groups.c.point, first.c.bucket == groups.c.b_first))
                         .outerjoin(last, and_(last.c.device_id == groups.c.device_id,
                                               last.c.point == groups.c.point, last.c.bucket == groups.c.b_last))))
    conn.execute(insert(h1).from_select(ROLLUP_COLUMNS, rows))


def rollup(engine: Engine, report: MaintainReport) -> None:
    """Rebuild every marked device-hour; remove the marks no writer renewed lately."""
    with engine.connect() as conn:
        now = conn.execute(select(db_now(engine))).scalar_one()
        marks = conn.execute(select(pending.c.device_id, pending.c.hour, pending.c.marked_at)
                             .order_by(pending.c.hour, pending.c.device_id)).fetchall()
    stale_before = _as_datetime(now) - MARK_STALE
    for start in range(0, len(marks), BATCH):
        with engine.begin() as conn:
            for device, hour, marked_at in marks[start:start + BATCH]:
                if _as_datetime(marked_at) < stale_before:
                    # first, so that a writer marking this hour again waits for this rebuild's commit
                    removed = conn.execute(delete(pending).where(
                        pending.c.device_id == device, pending.c.hour == hour, pending.c.marked_at == marked_at))
                    report.marks_removed += removed.rowcount
                report.readings_rolled_up += _rebuild_minutes(conn, engine, device, _as_datetime(hour))
                _rebuild_hour(conn, device, _as_datetime(hour))
                report.hours_rebuilt += 1


def _as_datetime(value: Any) -> datetime:
    """A time read back from either backend (SQLite may hand a raw text for an expression)."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _delete_before(engine: Engine, table: Table, column: Any, before: datetime, *extra: Any) -> int:
    """Delete rows with ``column < before`` in chunks; returns how many."""
    total = 0
    while True:
        with engine.begin() as conn:
            if engine.dialect.name in ("mysql", "mariadb"):
                condition = and_(column < before, *extra)
                done = conn.execute(delete(table).where(condition).execution_options(
                    synchronize_session=False).with_dialect_options(mysql_limit=DELETE_CHUNK)).rowcount
            else:
                done = conn.execute(delete(table).where(column < before, *extra)).rowcount
        total += done
        if engine.dialect.name not in ("mysql", "mariadb") or done < DELETE_CHUNK:
            return total


def retention(engine: Engine, cfg: RetentionConfig, now: datetime, report: MaintainReport) -> None:
    """Remove what is older than each table's retention (``None``: kept for ever)."""
    a, x = schema.alerts, schema.attack_detections
    plan: list[tuple[str, Table, Any, float | None, tuple[Any, ...]]] = [
        ("readings", r, r.c.ts, cfg.raw, ()),
        ("readings_1m", m1, m1.c.bucket, cfg.minutes, ()),
        ("readings_1h", h1, h1.c.bucket, cfg.hours, ()),
        ("power_readings", schema.power_readings, schema.power_readings.c.timestamp, cfg.power_readings, ()),
        ("system_metrics", schema.system_metrics, schema.system_metrics.c.timestamp, cfg.system_metrics, ()),
        # incidents go once closed: an alert still open, or an attack still going, is kept whatever its age
        ("alerts", a, a.c.updated_at, cfg.incidents, (a.c.resolved.is_(True),)),
        ("attack_detections", x, x.c.updated_at, cfg.incidents, (x.c.ended_at.is_not(None),)),
    ]
    for name, table, column, keep, extra in plan:
        if keep is not None:
            report.deleted[name] = _delete_before(engine, table, column, now - timedelta(seconds=keep), *extra)


def maintain(engine: Engine, cfg: RetentionConfig, now: datetime | None = None) -> MaintainReport:
    """One run: rollups, then retention as of ``now`` (naive UTC; default: the database's clock)."""
    report = MaintainReport()
    started = time.perf_counter()
    mysql = engine.dialect.name in ("mysql", "mariadb")
    with engine.connect() as lock:
        if mysql and lock.execute(text("SELECT GET_LOCK(:name, 0)"), {"name": LOCK_NAME}).scalar() != 1:
            log.info("another maintain run holds %s; nothing to do", LOCK_NAME)
            return MaintainReport(ran=False)
        try:
            rollup(engine, report)
            if now is None:
                now = _as_datetime(lock.execute(select(db_now(engine))).scalar_one())
            retention(engine, cfg, now, report)
        finally:
            if mysql:
                lock.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": LOCK_NAME})
            lock.commit()
    report.seconds = time.perf_counter() - started
    return report
