"""``hacksky-edge import-csv``: historical readings from a CSV into the central ``readings`` table.

Idempotent: rows are keyed (device, point, ts) like live readings, so re-running an import, or
importing a file that overlaps what the agent already wrote, adds nothing twice.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from weakref import WeakSet

from sqlalchemy import Engine
from sqlalchemy.sql.dml import Insert
from tqdm import tqdm

from agent.central import schema
from agent.central.engine import adjust_connect_params, is_mysql
from agent.central.writer import CentralWriter, hour_of, insert_ignoring_duplicates, to_datetime
from agent.records import DeviceInfo, PointInfo
from agent.units import parse_time

log = logging.getLogger(__name__)

#: MySQL protocol capability flag CLIENT_FOUND_ROWS, which SQLAlchemy's MySQL drivers always ask for.
CLIENT_FOUND_ROWS = 2


class CsvImportError(ValueError):
    """A file that cannot be imported; the message names the file and line."""


@dataclass
class ImportSummary:
    """What an import did."""

    rows: int = 0
    readings: int = 0
    inserted: int = 0
    empty_cells: int = 0
    seconds: float = 0.0

    @property
    def already_present(self) -> int:
        return self.readings - self.inserted

    def text(self, path: str, device: str) -> str:
        rate = self.readings / self.seconds if self.seconds else 0.0
        return (f"{path} -> device {device}: {self.rows:,} rows, {self.readings:,} readings "
                f"({self.inserted:,} new, {self.already_present:,} already present, {self.empty_cells:,} empty cells "
                f"skipped) in {self.seconds:.1f} s ({rate:,.0f} readings/s)\n")


def parse_mapping(text: str | None) -> dict[str, str]:
    """``"L_T1=tank1_level,F_PU1=pump1_flow"`` -> {column: point}."""
    mapping: dict[str, str] = {}
    for item in filter(None, (text or "").split(",")):
        column, sep, point = item.partition("=")
        if not sep or not column.strip() or not point.strip():
            raise CsvImportError(f"--map item {item!r} is not COLUMN=POINT")
        mapping[column.strip()] = point.strip()
    return mapping


def _rows(path: Path, time_column: str) -> Iterator[tuple[int, list[str], int, list[str]]]:
    """(line, header, index of the time column, fields) of every non-empty row."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        if time_column not in header:
            raise CsvImportError(f"{path}:1: no {time_column!r} column (columns: {', '.join(header[:6])}...)")
        at = header.index(time_column)
        for line, row in enumerate(reader, start=2):
            if row and any(c.strip() for c in row):
                yield line, header, at, row


def import_csv(engine: Engine, gateway: str, device: DeviceInfo, path: str | Path, mapping: dict[str, str],
               time_column: str = "DATETIME", skip: frozenset[str] = frozenset({"ATT_FLAG"}),
               batch_rows: int = 2000, progress: bool = True) -> ImportSummary:
    """Load every (time, column) cell as a reading of ``device``; one transaction per batch.

    ``inserted`` counts the rows this import added (readings the agent writes meanwhile are not
    counted). On MySQL/MariaDB the engine's connections are reopened without CLIENT_FOUND_ROWS.
    """
    path = Path(path)
    count_inserted_rows(engine)
    writer = CentralWriter(engine, gateway)
    pk = writer.sync_devices([device])[device.device_id]
    stmt = insert_ignoring_duplicates(engine, schema.readings)
    summary = ImportSummary()
    started = time.perf_counter()
    with open(path, "rb") as f:
        total_lines = sum(1 for _ in f) - 1
    batch: list[dict[str, object]] = []
    hours: set[tuple[str, int]] = set()  # marked for the rollups once their batch committed
    columns: list[str] = []
    bar = tqdm(total=total_lines, unit=" rows", desc=f"import {path.name}", disable=not progress or None,
               mininterval=0.5)
    try:
        for line, header, time_at, row in _rows(path, time_column):
            if not columns:  # the points this file holds, registered once it is in
                columns = [mapping.get(c, c) for c in header if c != time_column and (c not in skip or c in mapping)]
            if len(row) != len(header):
                raise CsvImportError(f"{path}:{line}: {len(row)} fields, header has {len(header)}")
            try:
                ts_us = int(parse_time(row[time_at].strip()).timestamp() * 1e6)
            except ValueError as exc:
                raise CsvImportError(f"{path}:{line}: {exc}") from None
            ts = to_datetime(ts_us)
            hours.add((device.device_id, hour_of(ts_us)))
            for column, cell in zip(header, row, strict=True):
                if column == time_column or (column in skip and column not in mapping):
                    continue
                cell = cell.strip()
                if not cell:
                    summary.empty_cells += 1
                    continue
                try:
                    value: float | None = float(cell)
                    text = None
                except ValueError:
                    value, text = None, cell[:255]
                good = value is None or math.isfinite(value)
                batch.append({"device_id": pk, "point": mapping.get(column, column), "ts": ts,
                              "value": value if good else None, "value_text": text,
                              "quality": "good" if good else "bad:not_finite"})
            summary.rows += 1
            if summary.rows % batch_rows == 0:
                _flush(engine, stmt, batch, summary)
                writer.mark_hours(hours)
                hours.clear()
                bar.update(batch_rows)
        _flush(engine, stmt, batch, summary)
        writer.mark_hours(hours)
        writer.add_points(device.device_id, [PointInfo(name) for name in columns])
        bar.update(summary.rows % batch_rows)
    finally:
        bar.close()
    summary.seconds = time.perf_counter() - started
    log.info("imported %s: %d readings, %d new", path, summary.readings, summary.inserted)
    return summary


def count_inserted_rows(engine: Engine) -> None:
    """Make an INSERT's row count the rows it inserted, duplicates skipped not included.

    SQLite's ``ON CONFLICT DO NOTHING`` counts so already. MySQL/MariaDB count a duplicate that
    ``ON DUPLICATE KEY UPDATE`` left unchanged as 1, like an insert, when the client sets
    CLIENT_FOUND_ROWS (SQLAlchemy always does), 0 without it: so connections drop the flag.
    """
    if not is_mysql(engine) or engine in _COUNTING:
        return
    _COUNTING.add(engine)
    adjust_connect_params(engine, _no_found_rows)
    engine.dispose()  # connections already open keep the flag they were opened with


#: engines whose connections already drop CLIENT_FOUND_ROWS
_COUNTING: WeakSet[Engine] = WeakSet()


def _no_found_rows(cparams: dict[str, Any]) -> None:
    cparams["client_flag"] = cparams.get("client_flag", 0) & ~CLIENT_FOUND_ROWS


def _flush(engine: Engine, stmt: Insert, batch: list[dict[str, object]], summary: ImportSummary) -> None:
    if batch:
        with engine.begin() as conn:
            summary.inserted += conn.execute(stmt, batch).rowcount
        summary.readings += len(batch)
        batch.clear()
