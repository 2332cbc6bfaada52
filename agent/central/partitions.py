"""Daily RANGE partitions of ``readings`` on MySQL/MariaDB (migration 0005 partitions the table).

``p<YYYYMMDD>`` holds the readings of that UTC day (``VALUES LESS THAN`` the next midnight; the
first one made also holds anything older still in the table), ``p_history`` what the table held
when it was partitioned, ``p_future`` (``LESS THAN MAXVALUE``) whatever is later than the last day:
a reading is never refused for its time stamp, even from a gateway whose clock is years ahead.
:func:`manage` keeps AHEAD_DAYS days ready by splitting ``p_future`` (empty then, so the split
moves no rows) and drops whole days older than the raw retention's cutoff: O(1), no row deletes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from agent.central.engine import is_mysql
from agent.central.writer import as_datetime

log = logging.getLogger(__name__)

#: empty days kept ready ahead of the database's today
AHEAD_DAYS = 3
#: the first split of a table starts no earlier than this before today (older rows share the first day)
MAX_BACK_DAYS = 62
#: seconds the DDL waits for writers' transactions (inserts queue behind a waiting ALTER: keep it short)
DDL_LOCK_WAIT = 10
FUTURE = "p_future"


@dataclass(frozen=True)
class Partition:
    """One partition of ``readings`` as the server lists it."""

    name: str
    bound: datetime | None  # exclusive upper bound; None: MAXVALUE
    rows: int  # the server's estimate (information_schema)


@dataclass
class PartitionReport:
    """What one :func:`manage` did."""

    added: list[str] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)  # name -> rows (the server's estimate)
    error: str = ""  # the DDL the server refused this run (a lock wait, a grant): retention goes on by rows


def listed(conn: Connection) -> list[Partition]:
    """The partitions of ``readings`` in order; empty when the table is not partitioned (SQLite, or a
    MySQL database before migration 0005)."""
    if not is_mysql(conn):
        return []
    rows = conn.execute(text(
        "SELECT PARTITION_NAME, PARTITION_DESCRIPTION, TABLE_ROWS FROM information_schema.PARTITIONS "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'readings' AND PARTITION_NAME IS NOT NULL "
        "ORDER BY PARTITION_ORDINAL_POSITION")).fetchall()
    return [Partition(name, None if bound == "MAXVALUE" else as_datetime(bound.strip("'")), int(estimate or 0))
            for name, bound, estimate in rows]


def name_of(day: date) -> str:
    """The partition of ``day``: ``p20261130``."""
    return f"p{day:%Y%m%d}"


def plan(existing: list[Partition], now: datetime, cutoff: datetime | None,
         oldest: datetime | None) -> tuple[list[date], list[str]]:
    """(days to add a partition for, partitions to drop) as of ``now`` (naive UTC).

    Days follow the last bounded partition, or, on a table with only ``p_future``, start at the
    oldest reading it holds (``oldest``) but not before ``cutoff`` nor MAX_BACK_DAYS ago; they run
    to AHEAD_DAYS after today. A partition whose whole range is before ``cutoff`` is dropped.
    """
    today = now.date()
    bounded = [p for p in existing if p.bound is not None]
    if bounded:
        start = max(p.bound for p in bounded if p.bound is not None).date()
    else:
        start = min(today, oldest.date()) if oldest else today
        floor = max(today - timedelta(days=MAX_BACK_DAYS), cutoff.date() if cutoff else date.min)
        start = max(start, floor)
    end = today + timedelta(days=AHEAD_DAYS + 1)
    days = [start + timedelta(days=i) for i in range((end - start).days)]
    drop = [p.name for p in bounded if cutoff is not None and p.bound is not None and p.bound <= cutoff]
    return days, drop


def _oldest_in_future(conn: Connection) -> datetime | None:
    """The oldest reading in ``p_future``, per device through ``ix_readings_device_ts``."""
    value = conn.execute(text(
        f"SELECT MIN(oldest) FROM (SELECT MIN(ts) AS oldest FROM readings PARTITION ({FUTURE}) "
        "GROUP BY device_id) AS per_device")).scalar()
    return None if value is None else as_datetime(value)


def _bound(day: date) -> str:
    return (day + timedelta(days=1)).strftime("'%Y-%m-%d 00:00:00'")


def manage(engine: Engine, now: datetime, cutoff: datetime | None) -> PartitionReport:
    """Add the days ahead, drop the days before ``cutoff`` (``None``: keep every day)."""
    report = PartitionReport()
    with engine.connect() as conn:
        existing = listed(conn)
        if not existing or existing[-1].name != FUTURE:
            return report  # not partitioned, or partitioned by hand: left alone
        oldest = None if any(p.bound for p in existing) else _oldest_in_future(conn)
        days, drop = plan(existing, now, cutoff, oldest)
        conn.execute(text("SET SESSION lock_wait_timeout = :s"), {"s": DDL_LOCK_WAIT})
        try:
            _apply(conn, existing, days, drop, report)
        except OperationalError as exc:  # e.g. 1205: writers' transactions held the table past DDL_LOCK_WAIT
            conn.rollback()
            report.error = str(exc.orig or exc).splitlines()[0][:300]
            log.warning("readings partitions left as they are this run: %s", report.error)
        finally:
            conn.execute(text("SET SESSION lock_wait_timeout = DEFAULT"))
    return report


def _apply(conn: Connection, existing: list[Partition], days: list[date], drop: list[str],
           report: PartitionReport) -> None:
    """The planned REORGANIZE (days ahead) and DROP (expired days), recorded in ``report``."""
    if days:
        parts = [f"PARTITION {name_of(day)} VALUES LESS THAN ({_bound(day)})" for day in days]
        conn.execute(text(f"ALTER TABLE readings REORGANIZE PARTITION {FUTURE} INTO "
                          f"({', '.join(parts)}, PARTITION {FUTURE} VALUES LESS THAN (MAXVALUE))"))
        report.added = [name_of(day) for day in days]
        log.info("readings: added partitions %s .. %s", report.added[0], report.added[-1])
    if drop:
        rows = {p.name: p.rows for p in existing}
        conn.execute(text(f"ALTER TABLE readings DROP PARTITION {', '.join(drop)}"))
        report.dropped = {name: rows[name] for name in drop}
        log.info("readings: dropped partitions %s (about %s rows)", ", ".join(drop), sum(report.dropped.values()))
