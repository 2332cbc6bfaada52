"""The central database at fleet scale: a month of a plant in MariaDB, the API on it, maintain, Galera.

1. A month of readings (default 50 million: 20 meters x 10 points every ~10 s for 30 days, plus
   a ``power_readings`` row per meter and poll), loaded with ``LOAD DATA LOCAL INFILE`` into the
   day partitions ``central maintain`` keeps, then marked (``maintain --backfill``).
2. ``maintain``: the rollups of every device-hour built from scratch (rows rolled up per second,
   against the 20,000 rows/s the agent writes at the issue's load), then one hour of new data.
3. Retention: dropping the oldest day (``DROP PARTITION``) against deleting a day as large row
   by row (the chunked ``DELETE`` of an unpartitioned table), same run.
4. The API over HTTP (uvicorn, loopback): p95 and max of each endpoint, and where an endpoint
   reads rollups, the raw SQL it replaced on the same data (its p95: the baseline).
5. Galera: the agent's writer (packs of 5,000, the agent's own SQL) into a 3-node cluster on
   loopback against the single server, same run.
"""

from __future__ import annotations

import math
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from agent.api.app import create_app
from agent.buffer.disk import Pack
from agent.central import migrate, partitions
from agent.central.engine import make_engine
from agent.central.maintain import backfill, maintain
from agent.central.writer import CentralWriter, to_datetime
from agent.records import DeviceInfo
from agent.settings import CentralConfig, RetentionConfig
from bench.load import connect, database_of, scratch_database
from drivers.base import Reading
from tests.infra.api_server import TOKEN, serve
from tests.infra.galera import available, running_cluster
from tests.infra.private_mariadb import execute_all

TITLE = "Central database at fleet scale (MariaDB, one month of a plant)"
COLUMNS = ["what", "figure", "unit", "baseline", "vs baseline", "max", "note"]
DEFAULT_ROWS = 50_000_000
METERS, POINTS, DAYS = 20, 10, 30
#: the agent's write rate at the issue's load (500 devices x 20 points at 1 s, docs/performance.md)
AGENT_ROWS_PER_S = 10_000
REQUESTS, RAW_REQUESTS = 20, 3
KEEP_ALL = RetentionConfig.model_validate({"raw": None, "1m": None, "1h": None, "power_readings": None,
                                           "system_metrics": None, "incidents": None})


def run(seconds: float = 10.0, rows: int = DEFAULT_ROWS, days: int = DAYS) -> dict[str, Any]:
    """Every measurement above over ``days`` days of ``rows`` readings; ``seconds`` is the writer
    window of the Galera comparison."""
    results: list[dict[str, Any]] = []
    with scratch_database() as url, tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(CentralConfig(url=url))
        try:
            now = _now(engine)
            shape = _plant(engine, database_of(url), rows, days, now, Path(tmp), results)
            _maintain(engine, shape, now, results)
            _endpoints(engine, database_of(url), now, days, results)
            _retention(engine, database_of(url), now, results)
        finally:
            engine.dispose()
    results += _galera(seconds)
    return {"rows": rows, "days": days, "results": results}


def _now(engine: Engine) -> datetime:
    with engine.connect() as conn:
        return conn.execute(text("SELECT UTC_TIMESTAMP()")).scalar_one().replace(minute=0, second=0)


def _timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _plant(engine: Engine, db: str, rows: int, days: int, now: datetime, tmp: Path,
           results: list[dict[str, Any]]) -> dict[str, Any]:
    """Devices, day partitions, then the month loaded day by day with LOAD DATA; returns its shape."""
    migrate.upgrade(engine)
    writer = CentralWriter(engine, "gw-bench")
    pk = writer.sync_devices([DeviceInfo(f"meter-{m:02d}", type="power_meter") for m in range(METERS)])
    interval = days * 86_400 * METERS * POINTS / rows  # seconds between polls of a meter
    start = now - timedelta(days=days)
    # one reading at the month's start, so that the first maintain lays out the month's days (as a
    # maintain timer running all month would have), then the loads land in their own partitions
    writer.write(Pack(readings=[Reading("meter-00", "p0", round((start - datetime(1970, 1, 1)).total_seconds()
                                                                * 1e6), 1.0)]))
    partitions.manage(engine, now, None)
    loaded = power = 0
    seconds = 0.0
    polls_per_day = int(86_400 / interval)
    path, power_path = tmp / "readings.csv", tmp / "power.csv"
    for day in range(days):
        n, p = _write_day(path, power_path, pk, start + timedelta(days=day), polls_per_day, interval)
        seconds += _timed(lambda: _load(db, path, power_path))
        loaded, power = loaded + n, power + p
    results.append({"what": "load a month: LOAD DATA LOCAL INFILE into day partitions", "figure": loaded / seconds,
                    "unit": "rows/s", "note": f"{loaded:,} readings + {power:,} power rows, {METERS} meters x "
                    f"{POINTS} points every {interval:.1f} s for {days} days"})
    return {"readings": loaded, "power": power, "interval": interval, "start": start}


def _write_day(path: Path, power_path: Path, pk: dict[str, int], day: datetime, polls: int,
               interval: float) -> tuple[int, int]:
    base = (day - datetime(1970, 1, 1)).total_seconds()
    n = p = 0
    with open(path, "w") as f, open(power_path, "w") as g:
        for k in range(polls):
            t = base + k * interval
            for m in range(METERS):
                stamp = to_datetime(round((t + m * 0.001) * 1e6)).isoformat(" ")
                load = 50 + 30 * math.sin(2 * math.pi * ((t / 86_400) % 1)) + m
                f.write("".join(f"{pk[f'meter-{m:02d}']},p{j},{stamp},{load * (1 + j / 10):.3f},\\N,good\n"
                                for j in range(POINTS)))
                g.write(f"{pk[f'meter-{m:02d}']},{stamp},{load:.3f},{230 + m % 3:.1f},{load / 0.4:.2f},"
                        f"50.0,{int(k % 997 == 0)}\n")
                n, p = n + POINTS, p + 1
    return n, p


def _load(db: str, path: Path, power_path: Path) -> None:
    conn = connect(db, local_infile=True)
    with conn.cursor() as cur:
        cur.execute(f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE readings FIELDS TERMINATED BY ',' "
                    "(device_id, point, ts, value, value_text, quality)")
        cur.execute(f"LOAD DATA LOCAL INFILE '{power_path}' IGNORE INTO TABLE power_readings FIELDS TERMINATED BY ',' "
                    "(device_id, timestamp, power_consumption, voltage, current, frequency, is_anomaly)")
    conn.commit()
    conn.close()


def _maintain(engine: Engine, shape: dict[str, Any], now: datetime, results: list[dict[str, Any]]) -> None:
    """Rollups of the whole month from scratch, then of one hour of new data."""
    marks = backfill(engine)
    report = maintain(engine, KEEP_ALL, now=now)
    rate = report.readings_rolled_up / report.seconds
    results.append({"what": "maintain: rollups of a month from scratch (readings_1m, _1h, power_1h)",
                    "figure": rate, "unit": "rows/s", "baseline": AGENT_ROWS_PER_S,
                    "vs baseline": rate / AGENT_ROWS_PER_S,
                    "note": f"{marks:,} device-hours, {report.readings_rolled_up:,} readings in "
                            f"{report.seconds:.0f} s; baseline: what the agent writes at 500 x 20 per second"})
    with engine.begin() as conn:  # the month's marks, once no writer renews them (15 minutes later)
        conn.execute(text("DELETE FROM rollup_pending"))
    writer = CentralWriter(engine, "gw-bench")
    hour = round((now - datetime(1970, 1, 1)).total_seconds() * 1e6)
    polls = int(3600 / shape["interval"])
    readings = [Reading(f"meter-{m:02d}", f"p{j}", hour + round(k * shape["interval"] * 1e6) + m, float(k + j))
                for k in range(polls) for m in range(METERS) for j in range(POINTS)]
    for i in range(0, len(readings), 5000):
        writer.write(Pack(readings=readings[i:i + 5000]))
    report = maintain(engine, KEEP_ALL, now=now)
    results.append({"what": "maintain: one new hour of the plant", "figure": report.seconds, "unit": "s",
                    "note": f"{report.hours_rebuilt} device-hours, {report.readings_rolled_up:,} readings "
                            f"(a 5-minute timer spends this share of its period: {report.seconds / 300:.1%})"})


def _p(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def _raw_sql(db: str, sql: str, params: tuple[Any, ...]) -> list[float]:
    """Latencies (ms) of a raw SQL query: the baseline a rollup replaced."""
    conn = connect(db)
    out = []
    try:
        for _ in range(RAW_REQUESTS):
            started = time.perf_counter()
            with conn.cursor() as cur:
                cur.execute(sql, params)
                cur.fetchall()
            out.append(1000 * (time.perf_counter() - started))
    finally:
        conn.close()
    return out


def _endpoints(engine: Engine, db: str, now: datetime, days: int, results: list[dict[str, Any]]) -> None:
    """p95 / max of each endpoint over HTTP; the raw SQL baseline where rollups replaced it."""
    iso = lambda t: urllib.parse.quote(t.isoformat())  # noqa: E731
    day, week, month = now - timedelta(days=1), now - timedelta(days=7), now - timedelta(days=days + 1)
    odd = (now - timedelta(days=8, minutes=17), now - timedelta(days=1, minutes=43))
    pk = _pk(engine, "meter-03")
    series_raw = ("SELECT {b} AS b, COUNT(*), MIN(value), MAX(value), SUM(value) FROM readings "
                  "WHERE device_id = %s AND point = 'p2' AND ts >= %s AND ts < %s GROUP BY b")
    stats_raw = ("SELECT COUNT(*), COUNT(DISTINCT r.device_id), MIN(r.ts), MAX(r.ts) FROM readings r "
                 "JOIN devices d ON d.id = r.device_id WHERE r.ts >= %s AND r.ts < %s")
    power_raw = ("SELECT device_id, COUNT(*), AVG(power_consumption), MIN(power_consumption), "
                 "MAX(power_consumption), SUM(is_anomaly) FROM power_readings WHERE timestamp >= %s "
                 "AND timestamp < %s GROUP BY device_id")
    cases: list[tuple[str, str, Any]] = [
        (f"/api/statistics (all {days} days)", "/api/statistics",
         lambda: _raw_sql(db, stats_raw, (month, now + timedelta(days=1)))
         + _raw_sql(db, power_raw, (month, now + timedelta(days=1)))),
        ("/api/statistics (one day)", f"/api/statistics?since={iso(day)}",
         lambda: _raw_sql(db, stats_raw, (day, now + timedelta(days=1)))),
        ("/api/statistics (7 days, partial hours at both ends)",
         f"/api/statistics?since={iso(odd[0])}&until={iso(odd[1])}", lambda: _raw_sql(db, stats_raw, odd)),
        ("/api/series raw (6 h)", f"/api/series?device=meter-03&point=p2&since={iso(now - timedelta(hours=6))}",
         None),
        ("/api/series 1m (7 days)", f"/api/series?device=meter-03&point=p2&since={iso(week)}",
         lambda: _raw_sql(db, series_raw.format(b="DATE_FORMAT(ts, '%%Y-%%m-%%d %%H:%%i')"), (pk, week, now))),
        (f"/api/series 1h ({days} days)", f"/api/series?device=meter-03&point=p2&since={iso(month)}",
         lambda: _raw_sql(db, series_raw.format(b="DATE_FORMAT(ts, '%%Y-%%m-%%d %%H')"), (pk, month, now))),
        (f"/api/series 1d steps ({days} days)", f"/api/series?device=meter-03&point=p2&since={iso(month)}&step=86400",
         lambda: _raw_sql(db, series_raw.format(b="DATE(ts)"), (pk, month, now))),
        ("/api/power-data (page of 100 + total)", "/api/power-data?limit=100",
         lambda: _raw_sql(db, "SELECT COUNT(*) FROM power_readings", ())),
        ("/api/database/status", "/api/database/status",
         lambda: _raw_sql(db, "SELECT COUNT(*) FROM readings", ())),
        ("/api/devices", "/api/devices", None),
        ("/api/alerts", "/api/alerts", None),
        ("/api/gateways", "/api/gateways", None),
        ("/api/system-status", "/api/system-status", None),
    ]
    with serve(create_app(engine, TOKEN)) as api:
        for name, path, baseline in cases:
            api.get(path)  # warm: pools, plans, the buffer pool's pages
            samples = []
            for _ in range(REQUESTS):
                started = time.perf_counter()
                api.get(path)
                samples.append(1000 * (time.perf_counter() - started))
            raw = baseline() if baseline else None
            p95 = _p(samples, 0.95)
            results.append({"what": f"GET {name}", "figure": p95, "unit": "ms p95", "max": max(samples),
                            "baseline": raw and _p(raw, 0.95), "vs baseline": raw and _p(raw, 0.95) / p95,
                            "note": "baseline: the raw SQL this replaces (p95 of 3)" if raw else ""})


def _pk(engine: Engine, device: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT id FROM devices WHERE device_id_str = :d"), {"d": device}).scalar_one())


def _retention(engine: Engine, db: str, now: datetime, results: list[dict[str, Any]]) -> None:
    """Drop the oldest full day as a partition; delete the next day row by row (as an unpartitioned table must)."""
    with engine.connect() as conn:
        days = [p for p in partitions.listed(conn) if p.bound is not None]
    oldest, second = days[1], days[2]  # days[0] holds only the month's first reading
    rows = _count(db, oldest.name)
    dropped = _timed(lambda: execute_all(connect(db), (f"ALTER TABLE readings DROP PARTITION {oldest.name}",)))
    deleted_rows = _count(db, second.name)
    assert second.bound is not None
    start = second.bound - timedelta(days=1)

    def delete_day() -> None:
        conn = connect(db)
        with conn.cursor() as cur:
            while cur.execute("DELETE FROM readings WHERE ts >= %s AND ts < %s LIMIT 50000", (start, second.bound)):
                conn.commit()
        conn.commit()
        conn.close()

    deleted = _timed(delete_day)
    results.append({"what": "retention: drop one day (DROP PARTITION)", "figure": dropped, "unit": "s",
                    "baseline": deleted, "vs baseline": deleted / dropped,
                    "note": f"{rows:,} rows dropped; baseline: DELETE of the next day's {deleted_rows:,} rows in "
                            "50,000-row chunks"})


def _count(db: str, partition: str) -> int:
    conn = connect(db)
    with conn.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM readings PARTITION ({partition})")
        (n,) = cur.fetchone()
    conn.close()
    return int(n)


def writer_rate(url: str, seconds: float, failover: list[str] | None = None) -> float:
    """Rows/s of the agent's writer, packs of 5,000 back to back for ``seconds``, into a fresh schema."""
    engine = make_engine(CentralConfig(url=url, failover=failover or []))
    try:
        migrate.upgrade(engine)
        writer = CentralWriter(engine, "gw-bench")
        writer.sync_devices([DeviceInfo(f"d{d:03d}") for d in range(100)])
        t0, written, k = 1_790_000_000_000_000, 0, 0
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()
        while time.perf_counter() < deadline:
            writer.write(Pack(readings=[Reading(f"d{d:03d}", f"p{p:02d}", t0 + (k * 1000 + d) * 1000, float(p))
                                        for d in range(100) for p in range(50)]))
            written, k = written + 5000, k + 1
        return written / (time.perf_counter() - started)
    finally:
        engine.dispose()


def _galera(seconds: float) -> list[dict[str, Any]]:
    if not available():
        return [{"what": "Galera", "note": "galera-4 or rsync not installed: not measured"}]
    with scratch_database() as url:
        single = writer_rate(url, seconds)
    with running_cluster() as cluster:
        cluster.execute("CREATE DATABASE hacksky")
        first, *others = cluster.nodes
        galera = writer_rate(first.url(), seconds, [f"127.0.0.1:{n.port}" for n in others])
    return [{"what": "agent's writer into a 3-node Galera cluster (loopback, same machine)", "figure": galera,
             "unit": "rows/s", "baseline": single, "vs baseline": galera / single,
             "note": f"baseline: the same writer into the single server, {seconds:g} s each, packs of 5,000"}]
