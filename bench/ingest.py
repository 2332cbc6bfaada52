"""Ingest into MariaDB: the agent's delivery path (disk buffer -> pack -> writer -> ack) vs raw PyMySQL.

The same 200,000 readings (100 devices x 20 points x 100 polls) go into the ``readings`` table
of a fresh database three ways: (a) PyMySQL ``executemany`` of 5,000-row batches, one commit
each - the baseline; (b) ``LOAD DATA LOCAL INFILE`` of a CSV; (c) the agent: readings put in
the disk buffer as polls would, then drained pack by pack exactly as after an outage.
"""

from __future__ import annotations

import csv
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine

from agent.buffer.disk import DiskBuffer
from agent.central import migrate
from agent.central.writer import CentralWriter, to_datetime
from agent.records import DeviceInfo
from bench.load import connect, database_of, scratch_database
from drivers.base import Reading

DEVICES, POINTS, POLLS, BATCH = 100, 20, 100, 5000
TITLE = f"Ingest into MariaDB, {DEVICES * POINTS * POLLS:,} readings"
COLUMNS = ["path", "rows/s", "vs baseline", "note"]


def _readings() -> list[Reading]:
    t0 = 1_790_000_000_000_000
    return [Reading(f"d{d:03d}", f"p{p:02d}", t0 + k * 1_000_000 + d, float(k * p + d))
            for k in range(POLLS) for d in range(DEVICES) for p in range(POINTS)]


def _rows(readings: list[Reading], pk: dict[str, int]) -> list[tuple[Any, ...]]:
    return [(pk[r.device], r.point, to_datetime(r.ts_us), r.value, r.text, r.quality) for r in readings]


def executemany_rate(db: str, rows: list[tuple[Any, ...]]) -> float:
    """Rows/s of PyMySQL ``executemany`` into ``db.readings``, 5,000-row batches, commit each."""
    conn = connect(db)
    started = time.perf_counter()
    with conn.cursor() as cur:
        for i in range(0, len(rows), BATCH):
            cur.executemany("INSERT INTO readings (device_id, point, ts, value, value_text, quality) "
                            "VALUES (%s, %s, %s, %s, %s, %s)", rows[i:i + BATCH])
            conn.commit()
    seconds = time.perf_counter() - started
    conn.close()
    return len(rows) / seconds


def load_data_rate(db: str, rows: list[tuple[Any, ...]], tmp: Path) -> float:
    """Rows/s of writing ``rows`` as CSV and ``LOAD DATA LOCAL INFILE`` into ``db.readings``."""
    path = tmp / "readings.csv"
    started = time.perf_counter()
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        for r in rows:
            w.writerow([r[0], r[1], r[2].isoformat(sep=" "), r[3], "\\N", r[5]])
    conn = connect(db, local_infile=True)
    with conn.cursor() as cur:
        cur.execute(f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE readings FIELDS TERMINATED BY ',' "
                    "(device_id, point, ts, value, value_text, quality)")
    conn.commit()
    seconds = time.perf_counter() - started
    conn.close()
    return len(rows) / seconds


def truncate(db: str) -> None:
    """Empty ``db.readings``."""
    conn = connect(db)
    with conn.cursor() as cur:
        cur.execute("TRUNCATE TABLE readings")
    conn.commit()
    conn.close()


def run(seconds: float = 3.0) -> dict[str, Any]:
    """Measure and return the figures (``seconds`` is unused: the data set is fixed)."""
    with scratch_database() as url:
        return _measure(database_of(url), create_engine(url))


def _measure(db: str, engine: Engine) -> dict[str, Any]:
    try:
        migrate.upgrade(engine)
        writer = CentralWriter(engine, "bench-gw")
        pk = writer.sync_devices([DeviceInfo(f"d{d:03d}") for d in range(DEVICES)])
        readings = _readings()
        rows = _rows(readings, pk)
        base = executemany_rate(db, rows)
        truncate(db)
        with tempfile.TemporaryDirectory() as tmp:
            load = load_data_rate(db, rows, Path(tmp))
            truncate(db)
            buffer = DiskBuffer(Path(tmp) / "buf", 2**31)
            started = time.perf_counter()
            for i in range(0, len(readings), DEVICES * POINTS):
                buffer.put(readings[i:i + DEVICES * POINTS])
            put_rate = len(readings) / (time.perf_counter() - started)
            started = time.perf_counter()
            while True:
                pack = buffer.get_pack(BATCH)
                if not pack:
                    break
                writer.write(pack)
                buffer.ack(pack)
            drain = len(readings) / (time.perf_counter() - started)
            buffer.close()
        with engine.connect() as conn:
            stored = conn.exec_driver_sql("SELECT count(*) FROM readings").scalar_one()
        assert stored == len(readings), f"{stored} rows stored of {len(readings)}"
    finally:
        engine.dispose()
    return {"readings": len(readings), "results": [
        {"path": "PyMySQL executemany, 5,000-row batches (baseline)", "rows/s": base, "vs baseline": 1.0,
         "note": "raw rows, no buffer"},
        {"path": "LOAD DATA LOCAL INFILE", "rows/s": load, "vs baseline": load / base, "note": "CSV written + loaded"},
        {"path": "agent: disk buffer put (fsync per poll batch)", "rows/s": put_rate, "vs baseline": put_rate / base,
         "note": f"{DEVICES * POINTS} readings per put"},
        {"path": "agent: drain buffer -> writer -> MariaDB", "rows/s": drain, "vs baseline": drain / base,
         "note": "idempotent upsert, one transaction per 5,000"},
    ]}
