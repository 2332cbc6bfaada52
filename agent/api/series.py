"""``/api/series``: one point of one device over time, from raw readings or the rollups, whichever
the range and step call for, always equal to what the raw rows say.

Rollup buckets of hours that writers marked since ``central maintain`` last built them
(``rollup_pending``) are computed from the raw rows on the fly, with the same query maintain
uses, so a chart is never stale for the hour the data is still arriving in, nor for late data.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, case, func, or_, select, text
from sqlalchemy.engine import Connection, Engine

from agent.api.hybrid import hour_runs
from agent.central import schema
from agent.central.engine import is_mysql
from agent.central.maintain import hour_rows, minute_rows
from agent.central.writer import EPOCH, as_datetime

#: ranges up to this long are served from raw readings when no step is asked for ...
RAW_RANGE = timedelta(hours=6)
#: ... up to this long from ``readings_1m``, longer from ``readings_1h``
MINUTE_RANGE = timedelta(days=14)
#: most raw readings one answer holds (``truncated`` says when there were more)
MAX_RAW = 100_000


@dataclass(frozen=True)
class SeriesQuery:
    """A validated request."""

    device_pk: int
    point: str
    since: datetime
    until: datetime
    step: float | None  # seconds; None: chosen by the range


def resolution(since: datetime, until: datetime, step: float | None) -> str:
    """``raw``, ``1m`` or ``1h``: by the step when given, else by the range."""
    if step is not None:
        return "raw" if step < 60 else "1m" if step < 3600 else "1h"
    span = until - since
    return "raw" if span <= RAW_RANGE else "1m" if span <= MINUTE_RANGE else "1h"


def _iso(t: datetime) -> str:
    return t.isoformat() + "Z"


def _json_rows(conn: Connection, query: Select[Any]) -> list[dict[str, Any]]:
    """MySQL/MariaDB: each row built as a JSON object by the server (one text column), parsed in one
    ``json.loads``: PyMySQL would otherwise parse every value in Python (~15 µs a 1m bucket).
    The server writes doubles exactly (shortest round-trip form)."""
    texts = conn.execute(query).scalars().all()
    return json.loads("[" + ",".join(texts) + "]") if texts else []


def _iso_sql(column: Any, fraction: bool) -> Any:
    """The server's ISO 8601 text of a time, as :func:`_iso` writes it (microseconds only when there are)."""
    whole = func.date_format(column, "%Y-%m-%dT%H:%i:%sZ")
    return case((func.microsecond(column) == 0, whole), else_=func.date_format(column, "%Y-%m-%dT%H:%i:%s.%fZ")) \
        if fraction else whole


def _newest(q: SeriesQuery, *columns: Any) -> Select[Any]:
    """``columns`` of the range's newest MAX_RAW readings and one more (it tells a truncated range), newest first."""
    r = schema.readings
    return (select(*columns).where(r.c.device_id == q.device_pk, r.c.point == q.point, r.c.ts >= q.since,
                                   r.c.ts < q.until).order_by(r.c.ts.desc()).limit(MAX_RAW + 1))


def _oldest_first(rows: Sequence[Any]) -> tuple[list[Any], bool]:
    """:func:`_newest`'s rows oldest first, at most MAX_RAW, and whether the range had more
    (a long range loses its start, not its end)."""
    return list(rows[:MAX_RAW][::-1]), len(rows) > MAX_RAW


def _raw(conn: Connection, q: SeriesQuery) -> dict[str, Any]:
    """The newest MAX_RAW readings of the range, oldest first."""
    r = schema.readings
    if is_mysql(conn):
        points, truncated = _oldest_first(_json_rows(conn, _newest(q, func.json_object(
            "ts", _iso_sql(r.c.ts, True), "value", r.c.value, "text", r.c.value_text, "quality", r.c.quality))))
        return {"points": points, "truncated": truncated}
    rows, truncated = _oldest_first(conn.execute(_newest(q, r.c.ts, r.c.value, r.c.value_text, r.c.quality)).all())
    return {"points": [{"ts": _iso(ts), "value": value, "text": text, "quality": quality}
                       for ts, value, text, quality in rows], "truncated": truncated}


def _stale_hours(conn: Connection, q: SeriesQuery) -> set[datetime]:
    """Hours of the range writers marked since ``maintain`` built them: computed from raw rows."""
    pending = schema.rollup_pending
    first_hour = q.since.replace(minute=0, second=0, microsecond=0)
    return {as_datetime(h) for h in conn.execute(select(pending.c.hour).where(
        pending.c.device_id == q.device_pk, pending.c.hour >= first_hour, pending.c.hour < q.until)).scalars()}


def _points_json(conn: Connection, engine: Engine, q: SeriesQuery, level: str) -> list[dict[str, Any]]:
    """MySQL/MariaDB, buckets as stored: the rollup rows as the answer's points, built by the server,
    plus the marked hours' buckets computed from raw rows."""
    t = schema.readings_1m if level == "1m" else schema.readings_1h
    stale = _stale_hours(conn, q)
    runs = hour_runs(stale)
    skip = [~or_(*(and_(t.c.bucket >= a, t.c.bucket < b) for a, b in runs))] if runs else []
    points = _json_rows(conn, select(func.json_object(
        "bucket", _iso_sql(t.c.bucket, False), "count", t.c.count, "good_count", t.c.good_count, "min", t.c.min,
        "max", t.c.max, "sum", t.c.sum, "first", t.c.first, "last", t.c.last,
        "mean", t.c.sum / func.nullif(t.c.good_count, 0)))
        .where(t.c.device_id == q.device_pk, t.c.point == q.point, t.c.bucket >= q.since, t.c.bucket < q.until, *skip)
        .order_by(t.c.bucket))
    if stale:
        points = sorted(points + _as_points(_fresh(conn, engine, q, level, runs)), key=lambda p: p["bucket"])
    return points


def _bucket(row: Any) -> dict[str, Any]:
    """A rollup row as a bucket: ints and floats whatever the backend (MariaDB sums integers as DECIMAL)."""
    b = row._mapping
    return {"bucket": as_datetime(b["bucket"]), "count": int(b["count"]), "good_count": int(b["good_count"]),
            "min": b["min"], "max": b["max"], "sum": None if b["sum"] is None else float(b["sum"]),
            "first": b["first"], "last": b["last"]}


def _fresh(conn: Connection, engine: Engine, q: SeriesQuery, level: str,
           runs: list[tuple[datetime, datetime]]) -> list[dict[str, Any]]:
    """Buckets of the marked hours (``runs``), from the raw rows with maintain's own queries."""
    out = []
    for start, end in runs:  # hours whose rollups may not say what the raw rows say yet
        fresh = minute_rows(engine, q.device_pk, start, end, q.point)
        if level == "1h":
            fresh = hour_rows(engine, fresh.cte("minutes"), q.device_pk, start, end)
        out += [_bucket(row) for row in conn.execute(fresh) if q.since <= as_datetime(row.bucket) < q.until]
    return out


def _rollup(conn: Connection, engine: Engine, q: SeriesQuery, level: str) -> list[dict[str, Any]]:
    table = schema.readings_1m if level == "1m" else schema.readings_1h
    stale = _stale_hours(conn, q)
    out = [_bucket(row) for row in conn.execute(select(table).where(
        table.c.device_id == q.device_pk, table.c.point == q.point, table.c.bucket >= q.since,
        table.c.bucket < q.until)) if row.bucket.replace(minute=0, second=0, microsecond=0) not in stale]
    out += _fresh(conn, engine, q, level, hour_runs(stale))
    return sorted(out, key=lambda b: b["bucket"])


def _as_points(buckets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Buckets as the answer's points: ISO times and the mean of the good values."""
    return [{**b, "bucket": _iso(b["bucket"]),
             "mean": b["sum"] / b["good_count"] if b["good_count"] and b["sum"] is not None else None}
            for b in buckets]


def _regroup(buckets: list[dict[str, Any]], step: float) -> list[dict[str, Any]]:
    """Buckets merged into ``step``-second ones (aligned to the epoch): a day of hours, a week of days."""
    out: list[dict[str, Any]] = []
    for b in buckets:
        start = EPOCH + timedelta(seconds=((b["bucket"] - EPOCH).total_seconds() // step) * step)
        if out and out[-1]["bucket"] == start:
            last = out[-1]
            last["count"] += b["count"]
            last["good_count"] += b["good_count"]
            for key, pick in (("min", min), ("max", max)):
                values = [v for v in (last[key], b[key]) if v is not None]
                last[key] = pick(values) if values else None
            last["sum"] = None if last["sum"] is None and b["sum"] is None else (last["sum"] or 0) + (b["sum"] or 0)
            last["first"] = last["first"] if last["first"] is not None else b["first"]
            last["last"] = b["last"] if b["last"] is not None else last["last"]
        else:
            out.append({**b, "bucket": start})
    return out


#: the columns of a bucket answer in ``format=columns``, beside ``t``
BUCKET_COLUMNS = ("count", "good_count", "min", "max", "mean", "first", "last")


def _epoch(iso: str) -> float:
    """Seconds since the epoch of an answer's ISO time (``...Z``)."""
    return (datetime.fromisoformat(iso[:-1]) - EPOCH).total_seconds()


def as_columns(answer: dict[str, Any]) -> dict[str, Any]:
    """An answer with its points as columns: ``t`` (epoch seconds) and, for raw readings, ``value``,
    ``text`` (only when some reading has text) and ``not_good`` ([index, quality] of the readings
    whose quality is not good); for buckets, :data:`BUCKET_COLUMNS`. A chart's data as it is drawn,
    a third of the bytes."""
    points = answer["points"]
    answer = {k: v for k, v in answer.items() if k != "points"}
    if answer["resolution"] == "raw":
        answer["t"] = [_epoch(p["ts"]) for p in points]
        answer["value"] = [p["value"] for p in points]
        if any(p["text"] is not None for p in points):
            answer["text"] = [p["text"] for p in points]
        answer["not_good"] = [[i, p["quality"]] for i, p in enumerate(points) if p["quality"] != "good"]
    else:
        answer["t"] = [_epoch(p["bucket"]) for p in points]
        for key in BUCKET_COLUMNS:
            answer[key] = [p[key] for p in points]
    return answer


def _raw_columns(conn: Connection, q: SeriesQuery) -> dict[str, Any]:
    """MySQL/MariaDB, raw readings as columns: each row a short JSON array built by the server
    (microseconds since the epoch, value, text, quality unless good), turned into columns by ``zip``."""
    r = schema.readings
    micros = func.timestampdiff(text("MICROSECOND"), EPOCH, r.c.ts)
    rows, truncated = _oldest_first(_json_rows(conn, _newest(q, func.json_array(
        micros, r.c.value, r.c.value_text, case((r.c.quality == "good", None), else_=r.c.quality)))))
    stamps, values, texts, qualities = (list(c) for c in zip(*rows, strict=True)) if rows else ([], [], [], [])
    answer: dict[str, Any] = {"t": [us / 1e6 for us in stamps], "value": values}
    if any(t is not None for t in texts):
        answer["text"] = texts
    answer["not_good"] = [[i, quality] for i, quality in enumerate(qualities) if quality is not None]
    answer["truncated"] = truncated
    return answer


def series(conn: Connection, engine: Engine, q: SeriesQuery, columns: bool = False) -> dict[str, Any]:
    """The answer: ``resolution`` and its points (raw readings, or buckets with count, min, max, mean ...);
    with ``columns``, the same as columns (:func:`as_columns`)."""
    level = resolution(q.since, q.until, q.step)
    answer: dict[str, Any] = {"resolution": level, "since": _iso(q.since), "until": _iso(q.until)}
    if columns:
        if level == "raw" and is_mysql(conn):
            return answer | _raw_columns(conn, q)
        return as_columns(series(conn, engine, q))
    native = 60 if level == "1m" else 3600
    if level != "raw" and q.step is not None and q.step % native:
        raise ValueError(f"step: {q.step:g} s is not a whole number of the {level} buckets it is made of")
    if level == "raw":
        return answer | _raw(conn, q)
    if q.step is not None and q.step > native:
        answer["points"] = _as_points(_regroup(_rollup(conn, engine, q, level), q.step))
    elif is_mysql(conn):
        answer["points"] = _points_json(conn, engine, q, level)
    else:
        answer["points"] = _as_points(_rollup(conn, engine, q, level))
    answer["truncated"] = False
    return answer
