"""Aggregates over any time window that read hourly rollups wherever they can and raw rows only
for the rest, so a statistic over a year costs what a day of raw rows costs, and still equals
what the raw rows say.

A window ``[since, until)`` is cut into the whole hours inside it and the partial hours at its
ends. Whole hours come from the rollup table, except the (device, hour) pairs writers marked
since ``central maintain`` last built them (``rollup_pending``): those, and the partial hours,
are aggregated from the raw rows. All three parts are read in one transaction (one snapshot: a
rebuild that commits in between is seen entirely or not at all). Hours never rolled up nor
marked (rows inserted by hand, or before revision 0004 without ``maintain --backfill``) are not
seen; hours whose raw rows retention removed still are, through their rollups.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, Table, and_, case, exists, func, literal, or_, select
from sqlalchemy.engine import Connection

from agent.central import schema
from agent.central.writer import as_datetime

HOUR = timedelta(hours=1)
#: (device, time range) pairs read from raw rows per statement (OR-ed ranges of the (device_id, ts) index)
RANGES_PER_QUERY = 500
pending = schema.rollup_pending


def _floor(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class Cut:
    """A window cut into whole hours ``[lo, hi)`` (None: unbounded) and partial ranges ``edges``."""

    whole: bool
    lo: datetime | None
    hi: datetime | None
    edges: tuple[tuple[datetime | None, datetime | None], ...]


def cut(since: datetime | None, until: datetime | None) -> Cut:
    """``[since, until)`` as whole hours and the partial hours at its ends."""
    lo = None if since is None else _floor(since) + (HOUR if since != _floor(since) else timedelta(0))
    hi = None if until is None else _floor(until)
    if lo is not None and hi is not None and lo >= hi:
        return Cut(False, None, None, ((since, until),))
    edges: list[tuple[datetime | None, datetime | None]] = []
    if since is not None and lo != since:
        edges.append((since, lo))
    if until is not None and hi != until:
        edges.append((hi, until))
    return Cut(True, lo, hi, tuple(edges))


def within(column: Any, start: datetime | None, end: datetime | None) -> list[Any]:
    """``start <= column < end`` as conditions (a None bound: none)."""
    return [*([column >= start] if start is not None else []), *([column < end] if end is not None else [])]


def _of(column: Any, devices: Any) -> list[Any]:
    return [] if devices is None else [column.in_(devices)]


@dataclass(frozen=True)
class Source:
    """A raw table, its time column, and its hourly rollup (``device_id`` and ``bucket`` columns)."""

    raw: Table
    ts: Any
    rollup: Table


READINGS = Source(schema.readings, schema.readings.c.ts, schema.readings_1h)
POWER = Source(schema.power_readings, schema.power_readings.c.timestamp, schema.power_1h)


def parts(conn: Connection, source: Source, raw_columns: Sequence[Any], rollup_columns: Sequence[Any],
          since: datetime | None, until: datetime | None, devices: Any = None) -> list[Any]:
    """Rows (``part``, ``device_id``, *columns) per device and part: ``raw`` (partial and marked
    hours) or ``rollup`` (the whole hours built): the caller combines them. ``raw_columns`` are
    aggregates over raw rows, ``rollup_columns`` the same labels over rollup rows; ``devices``
    restricts to a subquery of device ids."""
    raw, ts, rollup = source.raw, source.ts, source.rollup
    w = cut(since, until)
    queries: list[Select[Any]] = []
    if conn.dialect.name == "sqlite" and not conn.connection.dbapi_connection.in_transaction:  # type: ignore[union-attr]
        conn.exec_driver_sql("BEGIN")  # one snapshot for every part (MySQL: the transaction's own)
    ranges: list[Any] = []  # (device, time range) pairs read from raw rows: ranges of the (device_id, ts) index
    if w.edges:
        every: Select[Any] = devices if devices is not None else select(schema.devices.c.id)
        ids = list(conn.execute(every).scalars())
        ranges += [and_(raw.c.device_id == device, *within(ts, a, b)) for device in ids for a, b in w.edges]
    if w.whole:
        marks = conn.execute(select(pending.c.device_id, pending.c.hour).where(
            *within(pending.c.hour, w.lo, w.hi), *_of(pending.c.device_id, devices))).fetchall()
        runs = device_runs(marks)
        # the marked hours' rollups left out: by the runs just read (compared in memory) while they are
        # few, else row by row against rollup_pending; the same snapshot either way
        skip: list[Any] = []
        if len(runs) > RANGES_PER_QUERY:
            skip.append(~exists().where(pending.c.device_id == rollup.c.device_id, pending.c.hour == rollup.c.bucket))
        elif runs:
            skip.append(~or_(*(and_(rollup.c.device_id == device, rollup.c.bucket >= start, rollup.c.bucket < end)
                               for device, start, end in runs)))
        queries.append(select(literal("rollup").label("part"), rollup.c.device_id, *rollup_columns)
                       .where(*within(rollup.c.bucket, w.lo, w.hi), *skip, *_of(rollup.c.device_id, devices))
                       .group_by(rollup.c.device_id))
        ranges += [and_(raw.c.device_id == device, ts >= start, ts < end) for device, start, end in runs]
    for i in range(0, len(ranges), RANGES_PER_QUERY):  # an index range each: no scan of a whole day
        queries.append(select(literal("raw").label("part"), raw.c.device_id, *raw_columns)
                       .where(or_(*ranges[i:i + RANGES_PER_QUERY])).group_by(raw.c.device_id))
    return [row for q in queries for row in conn.execute(q)]


def hour_runs(hours: Iterable[datetime]) -> list[tuple[datetime, datetime]]:
    """Consecutive hours as ``[start, end)`` ranges: one range per run, not per hour."""
    runs: list[tuple[datetime, datetime]] = []
    for hour in sorted(hours):
        if runs and runs[-1][1] == hour:
            runs[-1] = (runs[-1][0], hour + HOUR)
        else:
            runs.append((hour, hour + HOUR))
    return runs


def device_runs(marks: Iterable[Any]) -> list[tuple[int, datetime, datetime]]:
    """(device, start, end) per run of consecutive marked hours of each device."""
    by_device: dict[int, list[datetime]] = {}
    for device, hour in marks:
        by_device.setdefault(device, []).append(as_datetime(hour))
    return [(device, start, end) for device, hours in sorted(by_device.items()) for start, end in hour_runs(hours)]


def readings_summary(conn: Connection, since: datetime | None, until: datetime | None,
                     devices: Any = None, ends: bool = True) -> dict[str, Any]:
    """Readings in the window: how many, of how many devices, the first and last time stamps
    (to the hour where only rollups are left; not looked up without ``ends``)."""
    r, h = schema.readings, schema.readings_1h
    rows = parts(conn, READINGS, [func.count().label("n"), func.min(r.c.ts).label("first"),
                                  func.max(r.c.ts).label("last")],
                 [func.sum(h.c.count).label("n"), func.min(h.c.bucket).label("first"),
                  func.max(h.c.bucket).label("last")], since, until, devices)
    total = sum(int(row.n) for row in rows)
    found = {row.device_id for row in rows if row.n}
    first = min(((as_datetime(row.first), row.part) for row in rows if row.n), default=None)
    last = max(((as_datetime(row.last), row.part) for row in rows if row.n), default=None)
    if ends and first and first[1] == "rollup":  # an hour's start: the hour's first raw reading, if still there
        first = (_edge(conn, func.min, first[0], devices) or first[0], "raw")
    if ends and last and last[1] == "rollup":
        last = (_edge(conn, func.max, last[0], devices) or last[0], "raw")
    return {"readings": total, "devices": len(found), "first": first and first[0], "last": last and last[0]}


def _edge(conn: Connection, pick: Any, hour: datetime, devices: Any) -> datetime | None:
    """The earliest or latest raw reading time within ``hour`` (per device through the (device_id, ts) index)."""
    r = schema.readings
    per_device = (select(pick(r.c.ts).label("t"))
                  .where(*within(r.c.ts, hour, hour + HOUR), *_of(r.c.device_id, devices))
                  .group_by(r.c.device_id).subquery())
    value = conn.execute(select(pick(per_device.c.t))).scalar()
    return None if value is None else as_datetime(value)


def power_summary(conn: Connection, since: datetime | None, until: datetime | None,
                  devices: Any = None) -> dict[int, dict[str, Any]]:
    """Per meter (device id): samples, average / min / max power (kW) and anomalies in the window."""
    p, h = schema.power_readings, schema.power_1h
    kw = p.c.power_consumption
    rows = parts(conn, POWER,
                 [func.count().label("samples"), func.count(kw).label("kw_count"), func.sum(kw).label("kw_sum"),
                  func.min(kw).label("kw_min"), func.max(kw).label("kw_max"),
                  func.count(case((p.c.is_anomaly.is_(True), 1))).label("anomalies")],
                 [func.sum(h.c.samples).label("samples"), func.sum(h.c.kw_count).label("kw_count"),
                  func.sum(h.c.kw_sum).label("kw_sum"), func.min(h.c.kw_min).label("kw_min"),
                  func.max(h.c.kw_max).label("kw_max"), func.sum(h.c.anomalies).label("anomalies")],
                 since, until, devices)
    out: dict[int, dict[str, Any]] = {}
    for row in rows:
        if not row.samples:
            continue
        m = out.setdefault(row.device_id, {"samples": 0, "kw_count": 0, "kw_sum": 0.0, "min_kw": None,
                                           "max_kw": None, "anomalies": 0})
        m["samples"] += int(row.samples)
        m["anomalies"] += int(row.anomalies)
        if row.kw_count:
            m["kw_count"] += int(row.kw_count)
            m["kw_sum"] += float(row.kw_sum)
            m["min_kw"] = row.kw_min if m["min_kw"] is None else min(m["min_kw"], row.kw_min)
            m["max_kw"] = row.kw_max if m["max_kw"] is None else max(m["max_kw"], row.kw_max)
    for m in out.values():
        n, total = m.pop("kw_count"), m.pop("kw_sum")
        m["avg_kw"] = total / n if n else None
    return out


def oldest(conn: Connection, source: Source) -> datetime | None:
    """The raw table's oldest row time (per device along its (device_id, time) index): where rows
    retention has not removed start."""
    per_device = select(func.min(source.ts).label("t")).group_by(source.raw.c.device_id).subquery()
    value = conn.execute(select(func.min(per_device.c.t))).scalar()
    return None if value is None else as_datetime(value)


def stored_since(conn: Connection, source: Source, since: datetime | None) -> datetime | None:
    """``since``, moved up to the raw table's oldest row: counts of rows that still exist (rollups
    outlive their raw rows)."""
    first = oldest(conn, source)
    return since if first is None or (since is not None and since > first) else first


def power_count(conn: Connection, since: datetime | None, until: datetime | None, devices: Any = None,
                anomalies_only: bool = False) -> int:
    """``power_readings`` rows in the window that still exist (the power list's total), without
    counting them one by one."""
    field = "anomalies" if anomalies_only else "samples"
    start = stored_since(conn, POWER, since)
    return sum(m[field] for m in power_summary(conn, start, until, devices).values())
