"""Start-up check of the buffer file: a corrupt file is moved aside and its good rows copied.

A torn WAL write is handled by SQLite itself (frames with a bad checksum are ignored); this
module deals with what SQLite cannot: garbage or damaged pages in the main file.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

#: Tables copied from a damaged buffer, with their key column (None: copy in one go).
_TABLES = {"chunks": "seq", "readings": "seq", "events": "seq", "quarantine": "id", "counters": None, "state": None}
_WINDOW = 512


@dataclass
class SalvageReport:
    """What happened to a damaged buffer file."""

    reason: str
    moved_to: Path
    recovered: dict[str, int] = field(default_factory=dict)
    unreadable_rows: int = 0

    def summary(self) -> str:
        """One line for logs and alerts."""
        got = ", ".join(f"{n} {t}" for t, n in self.recovered.items() if n) or "nothing"
        return (f"buffer file damaged ({self.reason}); moved to {self.moved_to.name}; recovered {got}; "
                f"{self.unreadable_rows} rows unreadable")


def check(path: Path) -> str | None:
    """None when ``path`` is a healthy SQLite file (or absent), else the problem found."""
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            result = [row[0] for row in db.execute("PRAGMA quick_check")]
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return None if result == ["ok"] else "; ".join(result[:3])


def move_aside(path: Path, reason: str) -> SalvageReport:
    """Rename the file (and its WAL/SHM companions) out of the way."""
    target = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):
        companion = Path(f"{path}{suffix}")
        if companion.exists():
            companion.rename(Path(f"{target}{suffix}"))
    return SalvageReport(reason, target)


def copy_readable_rows(report: SalvageReport, into: sqlite3.Connection) -> None:
    """Copy every readable row of the moved file into the fresh buffer ``into``."""
    try:
        old = sqlite3.connect(f"file:{report.moved_to}?mode=ro", uri=True)
        old.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        log.warning("nothing salvageable in %s: %s", report.moved_to, exc)
        return
    try:
        for table, key in _TABLES.items():
            report.recovered[table] = _copy_table(old, into, table, key, report)
    finally:
        old.close()


def _copy_table(old: sqlite3.Connection, new: sqlite3.Connection, table: str, key: str | None,
                report: SalvageReport) -> int:
    try:
        columns = [row[1] for row in old.execute(f"PRAGMA table_info({table})")]
    except sqlite3.DatabaseError:
        return 0
    if not columns:
        return 0
    insert = f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    select = f"SELECT {', '.join(columns)} FROM {table}"
    if key is None:
        try:
            rows = old.execute(select).fetchall()
        except sqlite3.DatabaseError:
            return 0
        new.executemany(insert, rows)
        return len(rows)
    try:
        low, high = old.execute(f"SELECT min({key}), max({key}) FROM {table}").fetchone()
    except sqlite3.DatabaseError:
        low, high = _bounds_from_sequence(old, table)
    if low is None or high is None:
        return 0
    copied = 0
    for start in range(int(low), int(high) + 1, _WINDOW):
        window = f"{select} WHERE {key} >= ? AND {key} < ? ORDER BY {key}"
        try:
            rows = old.execute(window, (start, start + _WINDOW)).fetchall()
        except sqlite3.DatabaseError:
            rows = []
            for one in range(start, min(start + _WINDOW, int(high) + 1)):
                try:
                    rows.extend(old.execute(f"{select} WHERE {key} = ?", (one,)).fetchall())
                except sqlite3.DatabaseError:
                    report.unreadable_rows += 1
        new.executemany(insert, rows)
        copied += len(rows)
    return copied


def _bounds_from_sequence(old: sqlite3.Connection, table: str) -> tuple[int | None, int | None]:
    try:
        row = old.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
    except sqlite3.DatabaseError:
        return None, None
    return (1, int(row[0])) if row else (None, None)
