"""Durable on-disk buffer between polling and the central writer (SQLite in WAL mode).

Readings and events are appended in one transaction per group commit. The readings of one
commit are stored as one *chunk* (a ``marshal``-encoded list of row tuples: repeated device
and point names are written once per chunk), so a commit costs one row insert whatever the
number of readings; a buffer of the older one-row-per-reading format is converted at open.
Each output (*sink*) reads the buffer through its own cursor: it takes *packs* (oldest first)
and a pack is only acknowledged with :meth:`DiskBuffer.ack` after the sink committed it, so
delivery is at-least-once (the central unique keys make it exactly-once). A record is deleted
once every sink's cursor has passed it, so an outage of one output holds back no other.

The agent appends from one process and its writer process takes and acknowledges packs on a
second connection to the same file (``attach=True``); SQLite's WAL locking keeps them apart,
and the cursors table tells the appender which chunks a sink has taken but not yet
acknowledged (the size policy never drops those). Not thread-safe: use one object from one thread.
"""

from __future__ import annotations

import contextlib
import json
import logging
import marshal
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

from agent.buffer import salvage
from agent.buffer.private_files import private_directory, refuse_links
from agent.records import Event
from drivers.base import Reading, now_us

log = logging.getLogger(__name__)

FILE_NAME = "buffer.sqlite3"
DEFAULT_ROW_BYTES = 64
#: A full buffer counts as having room again below this fraction of its capacity (no flapping
#: between "full" and "not full" while it sits at the cap).
ROOM_AGAIN = 0.9
#: Room kept free on the disk for the WAL (auto-checkpointed at 256 pages, ~1 MiB).
WAL_HEADROOM = 2 * 2**20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER NOT NULL, first_ts_us INTEGER NOT NULL, data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS readings (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    device TEXT NOT NULL, point TEXT NOT NULL, ts_us INTEGER NOT NULL,
    value REAL, text TEXT, quality TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cursors (
    sink TEXT PRIMARY KEY, seq INTEGER NOT NULL, skip INTEGER NOT NULL, event_seq INTEGER NOT NULL,
    taken INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, payload TEXT NOT NULL,
    error TEXT NOT NULL, ts_us INTEGER NOT NULL
);
"""


#: The sink a buffer serves when none is named (the central database).
DEFAULT_SINK = "central"
#: persistent counter of the readings one sink will never get (the buffer was full): prefix + sink
DROPPED_PREFIX = "dropped_readings:"
#: Milliseconds a connection waits for the other process's write lock before failing.
BUSY_TIMEOUT_MS = 30_000

#: A place in the readings: the chunk ``seq`` (or the first after it) and readings to skip in it.
Position = tuple[int, int]


@dataclass
class Pack:
    """Oldest records a sink has not acknowledged; ack it after the sink committed it."""

    readings: list[Reading] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    sink: str = DEFAULT_SINK
    #: where the sink's cursor goes once the pack is acknowledged
    end: Position = (0, 0)
    last_event_seq: int = 0
    #: the pack stopped at its size limit: more records wait behind it
    more: bool = False

    def __len__(self) -> int:
        return len(self.readings) + len(self.events)


@dataclass(frozen=True)
class PutResult:
    """What happened to one append: rows stored and rows dropped by the size policy."""

    stored: int
    dropped: int
    events_stored: bool = True
    #: the buffer is at its cap: set by a drop, cleared once the central drain made room again
    full: bool = False


def _chunk(rows: list[tuple[Any, ...]]) -> tuple[int, int, bytes]:
    """A chunk row's ``(n, first_ts_us, data)`` for reading tuples (device, point, ts_us, ...)."""
    return len(rows), min(r[2] for r in rows), marshal.dumps(rows, 4)


def _disk_full(exc: sqlite3.OperationalError) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "full" in str(exc)


class DiskBuffer:
    """SQLite-backed FIFO of readings and events with a size cap and a drop policy."""

    def __init__(self, directory: Path, max_bytes: int,
                 when_full: Literal["drop_oldest", "drop_newest"] = "drop_oldest", *,
                 sinks: Sequence[str] = (DEFAULT_SINK,), attach: bool = False) -> None:
        """Open (or recover) the buffer for ``sinks``; ``attach``: a second connection that only
        takes and acknowledges packs (the writer process), while the appender has it open."""
        private_directory(directory)
        self.path = directory / FILE_NAME
        refuse_links(self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm"))
        self.max_bytes = max_bytes
        self.when_full = when_full
        self.sinks = tuple(sinks)
        self._attached = attach
        #: per sink, the highest chunk this connection handed to it (the file has it when attached)
        self._taken: dict[str, int] = {}
        self.salvage: salvage.SalvageReport | None = None
        self._unpersisted_drops = 0
        self.overflowing = False
        problem = None if attach else salvage.check(self.path)
        if problem is not None:
            self.salvage = salvage.move_aside(self.path, problem)
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        self._db.execute("PRAGMA journal_mode=WAL")
        # an acknowledgement lost in a power cut only means a pack is delivered again (idempotent)
        self._db.execute(f"PRAGMA synchronous={'NORMAL' if attach else 'FULL'}")
        self._db.execute("PRAGMA wal_autocheckpoint=256")  # keep the WAL near 1 MiB
        self._db.execute("PRAGMA journal_size_limit=1048576")  # and truncate it after checkpoints
        self._db.executescript(_SCHEMA)
        if self.salvage is not None:
            self._db.execute("BEGIN")
            salvage.copy_readable_rows(self.salvage, self._db)
            self._db.execute("COMMIT")
            log.error("%s", self.salvage.summary())
        self._page_size = int(self._db.execute("PRAGMA page_size").fetchone()[0])
        if not attach:
            self._convert_row_format()
        self._open_cursors(forget_others=not attach)
        self.pending: dict[str, int] = {}
        self.pending_events: dict[str, int] = {}
        self.recount()
        if not attach and (self.reading_rows or self.event_rows):
            log.info("buffer %s holds %d readings and %d events from before", self.path,
                     self.reading_rows, self.event_rows)

    def _convert_row_format(self) -> None:
        """Move readings of the one-row-per-reading format (earlier versions) into chunks, in order."""
        moved = 0
        while True:
            rows = self._db.execute("SELECT seq, device, point, ts_us, value, text, quality FROM readings "
                                    "ORDER BY seq LIMIT 10000").fetchall()
            if not rows:
                break
            self._db.execute("BEGIN IMMEDIATE")
            self._insert_chunk([tuple(row[1:]) for row in rows])
            self._db.execute("DELETE FROM readings WHERE seq <= ?", (rows[-1][0],))
            self._db.execute("COMMIT")
            moved += len(rows)
        if moved:
            log.info("buffer: %d readings of the earlier row format converted to chunks", moved)

    def _open_cursors(self, forget_others: bool) -> None:
        """A cursor per sink (a new sink starts at the oldest record); nothing is in flight yet.

        ``forget_others``: cursors of sinks no longer configured are removed, so they hold no
        record back.
        """
        self._db.execute("BEGIN IMMEDIATE")
        self._db.executemany("INSERT OR IGNORE INTO cursors(sink, seq, skip, event_seq, taken) VALUES (?, 0, 0, 0, 0)",
                             [(sink,) for sink in self.sinks])
        marks = ",".join("?" * len(self.sinks))
        self._db.execute(f"UPDATE cursors SET taken = seq WHERE sink IN ({marks})", self.sinks)
        if forget_others:
            self._db.execute(f"DELETE FROM cursors WHERE sink NOT IN ({marks})", self.sinks)
            self._forget_delivered()
        self._db.execute("COMMIT")

    def _forget_delivered(self) -> None:
        """Delete what every sink has acknowledged (inside a write transaction)."""
        self._db.execute("DELETE FROM chunks WHERE seq < (SELECT min(seq) FROM cursors)")
        self._db.execute("DELETE FROM events WHERE seq <= (SELECT min(event_seq) FROM cursors)")

    def position(self, sink: str) -> tuple[Position, int]:
        """Where ``sink``'s cursor stands: its readings position and the last event it acknowledged."""
        row = self._db.execute("SELECT seq, skip, event_seq FROM cursors WHERE sink = ?", (sink,)).fetchone()
        if row is None:
            raise KeyError(f"the buffer has no cursor for sink {sink!r}")
        return (int(row[0]), int(row[1])), int(row[2])

    def recount(self) -> None:
        """Count what each sink has not acknowledged from the file (after another process acknowledged
        packs it may not have reported: a writer process that died)."""
        #: readings and events each sink has not acknowledged
        self.pending = {sink: self._pending_readings(sink) for sink in self.sinks}
        self.pending_events = {sink: self._pending_events(sink) for sink in self.sinks}

    def _pending_readings(self, sink: str) -> int:
        (seq, skip), _ = self.position(sink)
        total = int(self._db.execute("SELECT coalesce(sum(n), 0) FROM chunks WHERE seq >= ?", (seq,)).fetchone()[0])
        return total - skip

    def _pending_events(self, sink: str) -> int:
        _, event_seq = self.position(sink)
        return int(self._db.execute("SELECT count(*) FROM events WHERE seq > ?", (event_seq,)).fetchone()[0])

    @property
    def reading_rows(self) -> int:
        """Readings some sink has not acknowledged yet."""
        return max(self.pending.values(), default=0)

    @property
    def event_rows(self) -> int:
        """Events some sink has not acknowledged yet."""
        return max(self.pending_events.values(), default=0)

    def acked(self, sink: str, readings: int, events: int) -> None:
        """Count a pack another connection (the writer process) acknowledged for ``sink``."""
        self.pending[sink] = max(0, self.pending[sink] - readings)
        self.pending_events[sink] = max(0, self.pending_events[sink] - events)

    def _insert_chunk(self, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            self._db.execute("INSERT INTO chunks(n, first_ts_us, data) VALUES (?, ?, ?)", _chunk(rows))

    def close(self) -> None:
        """Checkpoint and close the file (on a full disk the WAL simply stays; nothing is lost)."""
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError as exc:
            log.warning("buffer checkpoint at close failed (%s); the WAL is kept and replayed on start", exc)
        self._db.close()

    def used_bytes(self) -> int:
        """Bytes taken by live pages (free pages are reused, so they do not count)."""
        pages = int(self._db.execute("PRAGMA page_count").fetchone()[0])
        free = int(self._db.execute("PRAGMA freelist_count").fetchone()[0])
        return (pages - free) * self._page_size

    def counter(self, name: str) -> int:
        """A persistent counter (e.g. ``dropped_readings``)."""
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def load_state(self, name: str) -> Any:
        """State saved with :meth:`put` (e.g. open alerts), or None."""
        row = self._db.execute("SELECT value FROM state WHERE name = ?", (name,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, readings: Sequence[Reading], events: Sequence[Event] = (),
            state: dict[str, Any] | None = None) -> PutResult:
        """Append in one durable transaction, applying the size policy to readings.

        ``state`` (name -> JSON-able value) is saved in the same transaction, so state that
        describes the events (open alerts) can never disagree with them after a crash. If the
        disk fills up anyway (another process took the space), the new readings are dropped and
        counted; events are kept if they still fit (``events_stored`` says whether they did).
        """
        rows = list(readings)
        try:
            return self._append(rows, events, state)
        except sqlite3.OperationalError as exc:
            if not _disk_full(exc):
                raise
            log.error("buffer disk full (%s): dropping %d new readings", exc, len(rows))
        self._unpersisted_drops += len(rows)
        try:
            result = self._append([], events, state)
        except sqlite3.OperationalError as exc:
            if not _disk_full(exc):
                raise
            return PutResult(stored=0, dropped=len(rows), events_stored=False, full=True)
        return PutResult(stored=0, dropped=len(rows) + result.dropped, full=True)

    def _append(self, rows: list[Reading], events: Sequence[Event], state: dict[str, Any] | None) -> PutResult:
        dropped = 0
        removed: dict[str, int] = {}
        self._db.execute("BEGIN IMMEDIATE")
        try:
            excess = self._excess_rows(len(rows))
            new_cut = 0  # new readings not stored: every sink loses them
            if excess > 0:
                if self.when_full == "drop_newest":
                    dropped = new_cut = min(excess, len(rows))
                    rows = rows[: len(rows) - dropped]
                else:
                    dropped, removed = self._drop_oldest(excess)
                    if dropped < excess:  # the backlog alone does not make room: drop new ones too
                        new_cut = min(excess - dropped, len(rows))
                        rows, dropped = rows[new_cut:], dropped + new_cut
            if dropped or self._unpersisted_drops:
                self._count("dropped_readings", dropped + self._unpersisted_drops)
            for sink in self.sinks:  # what each sink will never get
                lost = removed.get(sink, 0) + new_cut
                if lost:
                    self._count(f"{DROPPED_PREFIX}{sink}", lost)
            self._insert_chunk(list(map(tuple, rows)))  # marshal takes plain tuples only
            self._db.executemany(
                "INSERT INTO events(kind, payload) VALUES (?, ?)",
                [(e.kind, json.dumps(e.payload, separators=(",", ":"))) for e in events])
            self._db.executemany(
                "INSERT INTO state(name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                [(k, json.dumps(v)) for k, v in (state or {}).items()])
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._unpersisted_drops = 0
        for sink in self.sinks:
            self.pending[sink] += len(rows) - removed.get(sink, 0)
            self.pending_events[sink] += len(events)
        if dropped and not self.overflowing:
            log.warning("buffer full (cap %d bytes, disk free %d bytes): dropping readings (%s) until "
                        "the central database drains it", self.max_bytes, self._disk_free(), self.when_full)
            self.overflowing = True
        elif not dropped and self.overflowing and self.used_bytes() < ROOM_AGAIN * self.capacity():
            log.info("buffer has room again; readings dropped while full: %d", self.counter("dropped_readings"))
            self.overflowing = False
        return PutResult(stored=len(rows), dropped=dropped, full=self.overflowing)

    def _count(self, name: str, amount: int) -> None:
        """Add to a persistent counter (inside the open transaction)."""
        self._db.execute("INSERT INTO counters(name, value) VALUES (?, ?) "
                         "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", (name, amount))

    def dropped_for(self, sink: str) -> int:
        """Readings ``sink`` will never get because the buffer was full (persistent)."""
        return self.counter(f"{DROPPED_PREFIX}{sink}")

    def _disk_free(self) -> int:
        stat = os.statvfs(self.path.parent)
        return int(stat.f_bavail * stat.f_frsize)

    def capacity(self) -> int:
        """Bytes the buffer may use now: ``max_size``, or less when the disk is nearly full.

        The file's own free pages count as room; a reserve (WAL headroom plus a twentieth of
        the filesystem, at most 16 MiB) stays free so the policy applies before SQLite hits a
        full disk.
        """
        stat = os.statvfs(self.path.parent)
        reserve = WAL_HEADROOM + min(16 * 2**20, stat.f_blocks * stat.f_frsize // 20)
        pages = int(self._db.execute("PRAGMA page_count").fetchone()[0])
        return min(self.max_bytes, pages * self._page_size + stat.f_bavail * stat.f_frsize - reserve)

    def _excess_rows(self, incoming: int) -> int:
        """Rows to drop so ``incoming`` fit: never more than ``incoming``, since deleting old
        rows only frees room inside the file (it does not shrink), so the buffer rotates."""
        if not incoming:
            return 0
        used = self.used_bytes()
        per_row = max(used // self.reading_rows if self.reading_rows > 100 else DEFAULT_ROW_BYTES, 1)
        projected = used + incoming * per_row
        limit = self.capacity()
        if projected <= limit:
            return 0
        return min(incoming, (projected - limit) // per_row + 1)

    def _drop_oldest(self, count: int) -> tuple[int, dict[str, int]]:
        """Delete the ``count`` oldest readings (fewer if there are not so many) inside the open
        transaction; returns how many, and how many of them each sink had not acknowledged.

        A chunk some sink has taken and not acknowledged (from its cursor to the last chunk it
        took) is skipped: it may be in that sink's hands, or committed already. Everything else
        goes oldest first, so when one output lags (its broker away) the readings only it still
        needs make room, and the outputs that keep up lose nothing.
        """
        cursors = self._db.execute("SELECT sink, seq, taken FROM cursors").fetchall()
        in_flight = [(seq, max(taken, self._taken.get(sink, 0))) for sink, seq, taken in cursors]
        dropped, whole, cut = 0, [], None
        removed = dict.fromkeys(self.sinks, 0)
        with contextlib.closing(self._db.execute("SELECT seq, n FROM chunks ORDER BY seq")) as chunks:
            for seq, n in chunks:  # read only as far as the readings to drop
                if any(low <= seq <= high for low, high in in_flight):
                    continue
                take = min(n, count - dropped)
                for sink, position, _ in cursors:
                    if position <= seq and sink in removed:
                        removed[sink] += take
                if take < n:
                    cut = (seq, take)
                    break
                dropped += n
                whole.append((seq,))
                if dropped == count:
                    break
        self._db.executemany("DELETE FROM chunks WHERE seq = ?", whole)
        if cut is not None and cut[1] > 0:
            self._keep_tail(*cut)
            dropped += cut[1]
        return dropped, removed

    def _keep_tail(self, seq: int, skip: int) -> None:
        """Rewrite chunk ``seq`` without its first ``skip`` readings."""
        (data,) = self._db.execute("SELECT data FROM chunks WHERE seq = ?", (seq,)).fetchone()
        self._db.execute("UPDATE chunks SET n = ?, first_ts_us = ?, data = ? WHERE seq = ?",
                         (*_chunk(marshal.loads(data)[skip:]), seq))

    def get_pack(self, max_readings: int, max_events: int = 1000) -> Pack:
        """The oldest records the default sink has not acknowledged (see :meth:`take`)."""
        return self.take(DEFAULT_SINK, max_readings, max_events)

    def take(self, sink: str, max_readings: int, max_events: int = 1000, after: Pack | None = None) -> Pack:
        """The next records for ``sink``: at most ``max_readings`` readings and ``max_events`` events,
        from its cursor, or from where ``after`` (a pack taken but not acknowledged yet) ends.

        Packs end between chunks when they can; a chunk larger than a whole pack is split.
        """
        if after is None:
            (seq, skip), event_seq = self.position(sink)
        else:
            (seq, skip), event_seq = after.end, after.last_event_seq
        pack = Pack(sink=sink, end=(seq, skip), last_event_seq=event_seq)
        last_chunk = self._take_readings(pack, seq, skip, max_readings) if max_readings > 0 else 0
        if max_events > 0:
            for ev_seq, kind, payload in self._db.execute(
                    "SELECT seq, kind, payload FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                    (event_seq, max_events)):
                pack.events.append(Event(kind, json.loads(payload)))
                pack.last_event_seq = ev_seq
            pack.more = pack.more or len(pack.events) == max_events
        if last_chunk:
            self._taken[sink] = max(self._taken.get(sink, 0), last_chunk)
            if self._attached:  # the appender is another process: it reads what is taken from the file
                self._db.execute("UPDATE cursors SET taken = ? WHERE sink = ? AND taken < ?",
                                 (last_chunk, sink, last_chunk))
        return pack

    def _take_readings(self, pack: Pack, seq: int, skip: int, max_readings: int) -> int:
        """Fill ``pack`` with up to ``max_readings`` readings from ``(seq, skip)``; the last chunk read (0: none).

        The chunk query is closed before returning: a statement left open would hold a read
        snapshot, and this connection's next write would then fail with "database is locked" as
        soon as the appending process has committed meanwhile.
        """
        make = partial(tuple.__new__, Reading)  # Reading._make without a Python frame per row
        last_chunk = 0
        with contextlib.closing(self._db.execute("SELECT seq, n, data FROM chunks WHERE seq >= ? ORDER BY seq",
                                                 (seq,))) as chunks:
            for chunk, n, data in chunks:
                offset = skip if chunk == seq else 0
                room = max_readings - len(pack.readings)
                if room <= 0 or (n - offset > room and pack.readings):
                    pack.more = True
                    break
                rows = marshal.loads(data)
                last_chunk = chunk
                if n - offset > room:  # a chunk larger than a whole pack: the rest of it stays for the next pack
                    pack.readings.extend(map(make, rows[offset:offset + room]))
                    pack.end, pack.more = (chunk, offset + room), True
                    break
                pack.readings.extend(map(make, rows[offset:] if offset else rows))
                pack.end = (chunk + 1, 0)
        return last_chunk

    def ack(self, pack: Pack) -> None:
        """Move the pack's sink past it (the sink committed it); forget what every sink has."""
        if not pack:
            return
        self._db.execute("BEGIN IMMEDIATE")
        if pack.readings:
            self._db.execute("UPDATE cursors SET seq = ?, skip = ? WHERE sink = ?", (*pack.end, pack.sink))
        if pack.events:
            self._db.execute("UPDATE cursors SET event_seq = max(event_seq, ?) WHERE sink = ?",
                             (pack.last_event_seq, pack.sink))
        self._forget_delivered()
        self._db.execute("COMMIT")
        self.acked(pack.sink, len(pack.readings), len(pack.events))

    def quarantine(self, refused: Sequence[tuple[Reading | Event, str]]) -> None:
        """Keep records the central DB refused (poison rows), each with its error, for inspection."""
        ts = now_us()
        rows = [("reading", json.dumps(rec._asdict()), error[:500], ts) if isinstance(rec, Reading)
                else (rec.kind, json.dumps(rec.payload), error[:500], ts) for rec, error in refused]
        self._db.execute("BEGIN IMMEDIATE")
        self._db.executemany("INSERT INTO quarantine(kind, payload, error, ts_us) VALUES (?,?,?,?)", rows)
        self._db.execute("COMMIT")

    def quarantined(self) -> list[tuple[str, dict[str, Any], str]]:
        """Every quarantined record: (kind, payload, error)."""
        return [(k, json.loads(p), e) for k, p, e in
                self._db.execute("SELECT kind, payload, error FROM quarantine ORDER BY id")]

    def oldest_ts_us(self, sink: str | None = None) -> int | None:
        """Acquisition time of the oldest buffered reading (of the oldest chunk ``sink`` has not
        acknowledged in full, when given)."""
        if sink is None:
            row = self._db.execute("SELECT first_ts_us FROM chunks ORDER BY seq LIMIT 1").fetchone()
        else:
            row = self._db.execute("SELECT first_ts_us FROM chunks WHERE seq >= (SELECT seq FROM cursors "
                                   "WHERE sink = ?) ORDER BY seq LIMIT 1", (sink,)).fetchone()
        return int(row[0]) if row else None
