"""Batched, idempotent writes of buffered packs into the central schema (one transaction each)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from math import isfinite
from typing import Any, TypeVar, cast

from pymysql.constants import SERVER_STATUS
from sqlalchemy import Table, func, or_, select, update
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.sql.dml import Insert

from agent.buffer.disk import Pack
from agent.central import schema
from agent.central.engine import NODE_GONE, is_mysql
from agent.central.points import sync_points
from agent.records import (
    AlertPayload,
    AttackPayload,
    DeviceInfo,
    DeviceStatus,
    Event,
    GatewayBeat,
    Metric,
    PointInfo,
    PowerSample,
    Record,
)
from drivers.base import Reading

log = logging.getLogger(__name__)
T = TypeVar("T")
EPOCH = datetime(1970, 1, 1)

#: MySQL/MariaDB errors caused by a record's content (not by the server's state): such a record
#: is a poison row; retrying it can never succeed.
POISON_CODES = {1048, 1264, 1265, 1292, 1366, 1406, 1452, 3819, 4025}

HOUR_US = 3_600_000_000
#: The writer marks each (device, hour) it writes into again at least this often (seconds of its
#: own monotonic clock); ``maintain`` drops only marks older than this plus a margin, by the
#: database's clock, so a mark it drops is one no writer still counts as made.
MARK_TTL = 600.0
#: Lock conflicts (deadlock 1213, lock wait timeout 1205): the transaction is tried again at once, this often.
LOCK_CONFLICTS, LOCK_ATTEMPTS = (1205, 1213), 3

#: How often a write also reads the database's clock (``UTC_TIMESTAMP(6)``) to measure the gateway's offset.
CLOCK_CHECK_EVERY = 10.0

#: A statement the user's grants do not allow (table, column).
GRANT_REFUSED = {1142, 1143}
#: Server errors saying the gateway's central settings are wrong, not that the server is away:
#: access denied (1044, 1045, 1698), unknown database (1049), a statement the grants do not allow.
CONFIG_CODES = {1044, 1045, 1049, 1698} | GRANT_REFUSED


def error_code(exc: BaseException) -> object:
    """The server's error number of a database error (1213, 1142 ...), or None."""
    args: tuple[object, ...] = tuple(getattr(getattr(exc, "orig", None), "args", ()))
    return args[0] if args else None


def is_poison(exc: SQLAlchemyError) -> bool:
    """True when the database refused the data itself, false when it is unavailable."""
    return isinstance(exc, (DataError, IntegrityError)) or error_code(exc) in POISON_CODES


def is_unavailable(exc: BaseException) -> bool:
    """True when the database, not the records, failed: the same pack is retried later.

    Anything else (a refused row, text the driver cannot encode, a value no column takes) is
    the records' fault: they are isolated and quarantined so the rest is delivered.
    """
    return isinstance(exc, SQLAlchemyError) and not is_poison(exc)


def is_config_error(exc: BaseException) -> bool:
    """True for a wrong password, user or database name: an operator must act, waiting will not help."""
    return isinstance(exc, SQLAlchemyError) and error_code(exc) in CONFIG_CODES


def error_text(exc: BaseException) -> str:
    """The driver's own message of a database error (else the exception's type and text), first line only."""
    orig = getattr(exc, "orig", None)
    if orig is not None:
        text = str(orig)
    elif isinstance(exc, SQLAlchemyError):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}"
    return (text.splitlines() or [""])[0][:300]


def to_datetime(ts_us: int) -> datetime:
    """Naive UTC datetime of an epoch-microsecond timestamp, exactly."""
    return EPOCH + timedelta(microseconds=ts_us)


def as_datetime(value: Any) -> datetime:
    """A time read back from either backend (SQLite hands an SQL expression's time back as text)."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def hour_of(ts_us: int) -> int:
    """The start of the hour ``ts_us`` falls in, epoch microseconds."""
    return ts_us - ts_us % HOUR_US


def retrying_lock_conflicts(transaction: Callable[[], T], on_retry: Callable[[], None] | None = None) -> T:
    """``transaction()``, tried again (up to LOCK_ATTEMPTS in all) when it met another's lock or, on
    Galera, lost certification to another node's transaction; ``on_retry`` is called before each retry."""
    for attempt in range(1, LOCK_ATTEMPTS + 1):
        try:
            return transaction()
        except OperationalError as exc:
            if error_code(exc) not in LOCK_CONFLICTS or attempt == LOCK_ATTEMPTS:
                raise
            if on_retry is not None:
                on_retry()
    raise AssertionError("unreachable")


def elapsed_clock() -> float:
    """Seconds that keep counting while the machine is suspended (CLOCK_BOOTTIME), unlike monotonic."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def insert_ignoring_duplicates(engine: Engine, table: Table) -> Insert:
    """INSERT that skips rows whose unique key exists (and still fails on any other error)."""
    name = engine.dialect.name
    if name in ("mysql", "mariadb"):
        stmt = mysql.insert(table)
        first_key = next(iter(table.primary_key.columns))
        return stmt.on_duplicate_key_update({first_key.name: first_key})
    if name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    from sqlalchemy.dialects import postgresql
    return postgresql.insert(table).on_conflict_do_nothing()


def db_now(engine: Engine) -> Any:
    """The database's clock, UTC, as an SQL expression."""
    if is_mysql(engine):
        return func.utc_timestamp(6)
    return func.strftime("%Y-%m-%d %H:%M:%f000", "now")  # SQLite: the stored text form, UTC


def upsert_mark(engine: Engine) -> Insert:
    """INSERT a ``rollup_pending`` mark, or renew its ``marked_at``."""
    t = schema.rollup_pending
    now = db_now(engine)
    if is_mysql(engine):
        return mysql.insert(t).values(marked_at=now).on_duplicate_key_update(marked_at=now)
    return sqlite.insert(t).values(marked_at=now).on_conflict_do_update(
        index_elements=[t.c.device_id, t.c.hour], set_={"marked_at": now})


class ReadingsSql:
    """Multi-row ``INSERT ... ON DUPLICATE KEY UPDATE`` statements for MySQL/MariaDB readings.

    What PyMySQL's ``executemany`` would send, rendered for a fraction of the CPU: the
    ``(device_id, 'point', `` prefix and the quality are escaped once per distinct value and
    cached, a timestamp once per poll; only free text goes through the driver's escaping per row.
    """

    HEAD = "INSERT INTO readings (device_id, point, ts, value, value_text, quality) VALUES "
    TAIL = " ON DUPLICATE KEY UPDATE device_id = device_id"
    MAX_BYTES = 1_000_000  # per statement, well under max_allowed_packet (16 MiB by default)

    def __init__(self) -> None:
        # one cache per backslash mode: a literal escaped for one mode means something else in the
        # other (``NO_BACKSLASH_ESCAPES`` may be set on one server of a cluster, or after a reconnect)
        self._literals: dict[bool, tuple[dict[tuple[int, str], str], dict[str, str]]] = {}

    def statements(self, readings: Iterable[Reading], device_pk: dict[str, int],
                   escape: Callable[[Any], str], no_backslash_escapes: bool = False) -> Iterator[str]:
        """The statements inserting ``readings``; ``escape`` is the connection's literal escaper, whose
        mode (``no_backslash_escapes``, from the server's status flags) selects the cache."""
        prefix, quality = self._literals.setdefault(no_backslash_escapes, ({}, {}))
        stamps: dict[int, str] = {}
        rows: list[str] = []
        size = 0
        for device, point, ts_us, value, text, qual in readings:
            pk = device_pk[device]
            head = prefix.get((pk, point))
            if head is None:
                head = prefix[(pk, point)] = f"({pk},{escape(point)},"
            stamp = stamps.get(ts_us)
            if stamp is None:
                stamp = stamps[ts_us] = f"'{to_datetime(ts_us).isoformat(' ')}',"
            q = quality.get(qual)
            if q is None:
                q = quality[qual] = escape(qual) + ")"
            number = repr(value) if value is not None and isfinite(value) else "NULL"
            row = f"{head}{stamp}{number},{'NULL' if text is None else escape(text)},{q}"
            rows.append(row)
            size += len(row) + 1
            if size >= self.MAX_BYTES:
                yield self.HEAD + ",".join(rows) + self.TAIL
                rows, size = [], 0
        if rows:
            yield self.HEAD + ",".join(rows) + self.TAIL


class CentralWriter:
    """Writes packs of readings and events for one gateway; every write is replay-safe."""

    def __init__(self, engine: Engine, gateway_id: str) -> None:
        self.engine = engine
        self.gateway_id = gateway_id
        self._device_pk: dict[str, int] = {}
        self._new_pk: dict[str, int] = {}
        self._insert_readings = insert_ignoring_duplicates(engine, schema.readings)
        # MySQL/MariaDB: the hottest statement of the agent is rendered here (see ReadingsSql)
        self._readings_sql = ReadingsSql() if is_mysql(engine) else None
        self._insert_power = insert_ignoring_duplicates(engine, schema.power_readings)
        self._insert_alert = insert_ignoring_duplicates(engine, schema.alerts)
        self._insert_attack = insert_ignoring_duplicates(engine, schema.attack_detections)
        self._insert_metric = insert_ignoring_duplicates(engine, schema.system_metrics)
        self._insert_gateway = insert_ignoring_duplicates(engine, schema.gateways)
        self._mark_pending = upsert_mark(engine)
        self._marked: dict[tuple[str, int], float] = {}  # (device, hour µs) -> when marked (elapsed_clock)
        #: this gateway's clock minus the database's, seconds (None: not measured; SQLite shares the clock)
        self.clock_offset: float | None = None
        self._clock_checked = -CLOCK_CHECK_EVERY
        #: packs tried again at once after a deadlock or a Galera certification conflict
        self.conflicts_retried = 0

    def sync_devices(self, devices: Sequence[DeviceInfo]) -> dict[str, int]:
        """Register or refresh this gateway's devices; returns YAML id -> devices.id."""
        t = schema.devices
        with self.engine.begin() as conn:
            existing = {row.device_id_str: row for row in conn.execute(
                select(t).where(t.c.gateway_id == self.gateway_id))}
            new = [d for d in devices if d.device_id not in existing]
            if new:  # stamped by the database's UTC clock (the columns' default, NOW(), is session time)
                now = db_now(self.engine)
                conn.execute(t.insert().values(created_at=now, updated_at=now), [self._device_row(d) for d in new])
            for d in devices:
                row = existing.get(d.device_id)
                wanted = self._device_row(d)
                if row is not None and any(getattr(row, k) != v for k, v in wanted.items()):
                    conn.execute(update(t).where(t.c.id == row.id).values(**wanted))
            self._device_pk = {row.device_id_str: row.id for row in conn.execute(
                select(t.c.id, t.c.device_id_str).where(t.c.gateway_id == self.gateway_id))}
            try:
                sync_points(conn, db_now(self.engine), self._device_pk, devices)
            except SQLAlchemyError as exc:  # MySQL: the refused statement alone is undone, the devices stay
                if error_code(exc) not in GRANT_REFUSED:
                    raise
                log.warning("device points not registered: this database user may not write device_points "
                            "(grant it the hacksky_gateway role again: hacksky-edge central grants); %s",
                            error_text(exc))
        return dict(self._device_pk)

    def add_points(self, device: str, points: Sequence[PointInfo]) -> None:
        """Register ``points`` of a registered ``device``, leaving its other points alone (an import's columns)."""
        with self.engine.begin() as conn:
            sync_points(conn, db_now(self.engine), self._device_pk, [DeviceInfo(device, points=tuple(points))],
                        complete=False)

    def _device_row(self, d: DeviceInfo) -> dict[str, Any]:
        return {"gateway_id": self.gateway_id, "device_id_str": d.device_id, "name": d.name,
                "type": d.type, "location": d.location, "protocol": d.protocol, "address": d.address}

    def _pk(self, conn: Connection, device: str) -> int:
        """devices.id of ``device``, registering an unknown one (e.g. removed from the map)."""
        pk = self._device_pk.get(device) or self._new_pk.get(device)
        if pk is None:
            t = schema.devices
            now = db_now(self.engine)
            conn.execute(insert_ignoring_duplicates(self.engine, t).values(created_at=now, updated_at=now),
                         [self._device_row(DeviceInfo(device, protocol="unknown"))])
            pk = conn.execute(select(t.c.id).where(t.c.gateway_id == self.gateway_id,
                                                   t.c.device_id_str == device)).scalar_one()
            self._new_pk[device] = pk  # cached only once the transaction commits (see _registering)
        return pk

    def write(self, pack: Pack) -> None:
        """Write a pack in one transaction (the device-hours of its readings and power rows marked for
        the rollups just before). Replaying a pack changes nothing."""
        hours = {(r.device, hour_of(r.ts_us)) for r in pack.readings}
        hours.update((sample["device"], hour_of(sample["ts_us"])) for ev in pack.events if ev.kind == "power"
                     for sample in (cast(PowerSample, ev.payload),))  # power_1h is rebuilt with the readings
        if hours:
            self.mark_hours(hours)
        # a deadlock, or a Galera certification conflict (reported as one): the pack again, at once
        self._registering(lambda: self._write(pack), self._conflict)

    def _registering(self, transaction: Callable[[], None], on_retry: Callable[[], None] | None = None) -> None:
        """``transaction()`` (retried on lock conflicts); the device ids it registered are cached
        only once it committed."""
        def attempt() -> None:
            self._new_pk = {}
            transaction()

        try:
            retrying_lock_conflicts(attempt, on_retry)
            self._device_pk.update(self._new_pk)
        finally:
            self._new_pk = {}

    def _check_clock(self, conn: Connection) -> None:
        """Every CLOCK_CHECK_EVERY seconds, the gateway's clock against the database's, corrected for
        the round trip (the server's time taken as the midpoint of the query)."""
        if not is_mysql(self.engine) or time.monotonic() - self._clock_checked < CLOCK_CHECK_EVERY:
            return
        self._clock_checked = time.monotonic()
        before = time.time()
        server = conn.execute(select(db_now(self.engine))).scalar_one()
        after = time.time()
        self.clock_offset = (before + after) / 2 - (server - EPOCH).total_seconds()

    def _write(self, pack: Pack) -> None:
        with self.engine.begin() as conn:
            self._check_clock(conn)
            if pack.readings and self._readings_sql is not None:
                device_pk = {device: self._pk(conn, device) for device in {r.device for r in pack.readings}}
                dbapi_error = conn.dialect.loaded_dbapi.Error
                raw = conn.connection.dbapi_connection
                mode = bool(getattr(raw, "server_status", 0) & SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES)
                cursor = conn.connection.cursor()
                for statement in self._readings_sql.statements(pack.readings, device_pk, conn.connection.escape,
                                                               mode):
                    try:
                        cursor.execute(statement)
                    except dbapi_error as exc:  # the same exception classes SQLAlchemy would raise
                        if (exc.args and exc.args[0] in NODE_GONE) or conn.dialect.is_disconnect(exc, raw, cursor):
                            conn.invalidate()  # as SQLAlchemy would: the next pack takes a new connection
                        raise DBAPIError.instance(statement[:200], None, exc, dbapi_error) from exc
            elif pack.readings:
                conn.execute(self._insert_readings, [
                    {"device_id": self._pk(conn, r.device), "point": r.point, "ts": to_datetime(r.ts_us),
                     "value": r.value, "value_text": r.text, "quality": r.quality}
                    for r in pack.readings])
            self._write_events(conn, pack.events)

    def _conflict(self) -> None:
        self.conflicts_retried += 1
        log.debug("central write met a lock or certification conflict; trying it again")

    def mark_hours(self, hours: set[tuple[str, int]]) -> None:
        """Mark each (device, hour start µs) for ``central maintain`` to roll up again.

        Before the readings are written, in a short transaction of its own, so that parallel writers
        marking the same hour never hold each other's readings up, and no committed reading is ever
        without its mark (a mark made before its readings commit is fresh: maintain keeps it and
        rebuilds its hour again on its next run). Marks this writer made within MARK_TTL (a clock
        that counts while the machine sleeps) are not made again: one statement per device and
        hour, not per pack.
        """
        now = elapsed_clock()
        todo = sorted(h for h in hours if now - self._marked.get(h, -MARK_TTL) >= MARK_TTL)
        if not todo:
            return

        def mark() -> None:
            with self.engine.begin() as conn:
                conn.execute(self._mark_pending, [{"device_id": self._pk(conn, device), "hour": to_datetime(hour)}
                                                  for device, hour in todo])

        self._registering(mark)
        if len(self._marked) > 4 * len(todo) + 10_000:
            self._marked = {h: t for h, t in self._marked.items() if now - t < MARK_TTL}
        self._marked.update(dict.fromkeys(todo, now))

    def write_isolating(self, pack: Pack) -> list[tuple[Record, str]]:
        """Write every record the database accepts; return the refused ones with their error.

        Bisects the pack: each accepted half commits on its own (replays are harmless), so one
        poison row costs about log2(pack size) extra transactions and blocks nothing.
        """
        return self._isolate([*pack.readings, *pack.events])

    def _isolate(self, records: list[Record]) -> list[tuple[Record, str]]:
        try:
            self.write(Pack(readings=[r for r in records if isinstance(r, Reading)],
                            events=[r for r in records if isinstance(r, Event)]))
            return []
        except Exception as exc:  # whatever a record makes the driver or database raise, not only SQL errors
            if is_unavailable(exc):
                raise
            if len(records) == 1:
                return [(records[0], error_text(exc))]
            middle = len(records) // 2
            return self._isolate(records[:middle]) + self._isolate(records[middle:])

    def _write_events(self, conn: Connection, events: Iterable[Event]) -> None:
        power: list[dict[str, Any]] = []
        metrics: list[dict[str, Any]] = []
        status: dict[str, DeviceStatus] = {}
        beat: GatewayBeat | None = None
        for ev in events:
            if ev.kind == "power":
                sample = cast(PowerSample, ev.payload)
                power.append({"device_id": self._pk(conn, sample["device"]),
                              "timestamp": to_datetime(sample["ts_us"]), **sample["fields"]})
            elif ev.kind == "metric":
                m = cast(Metric, ev.payload)
                metrics.append({"metric_name": m["name"], "value": m["value"], "unit": m.get("unit"),
                                "category": m.get("category"), "timestamp": to_datetime(m["ts_us"]),
                                "gateway_id": self.gateway_id})
            elif ev.kind == "device_status":
                change = cast(DeviceStatus, ev.payload)
                status[change["device"]] = change
            elif ev.kind == "alert":
                self._apply_alert(conn, cast(AlertPayload, ev.payload))
            elif ev.kind == "attack":
                self._apply_attack(conn, cast(AttackPayload, ev.payload))
            elif ev.kind == "gateway":
                beat = cast(GatewayBeat, ev.payload)  # the pack's latest one is the gateway's row
            else:
                log.warning("unknown buffered event kind %r skipped", ev.kind)
        if power:
            conn.execute(self._insert_power, power)
        if metrics:
            conn.execute(self._insert_metric, metrics)
        t = schema.devices
        for device, p in status.items():
            values: dict[str, Any] = {"status": p["status"], "status_reason": p.get("reason") or None,
                                      "updated_at": to_datetime(p["ts_us"])}
            last_seen = p.get("last_seen_us")
            if last_seen:
                values["last_seen"] = to_datetime(last_seen)
            conn.execute(update(t).where(t.c.id == self._pk(conn, device)).values(**values))
        if beat is not None:
            self._upsert_gateway(conn, beat)

    def _upsert_gateway(self, conn: Connection, beat: GatewayBeat) -> None:
        """The gateway's row as of ``beat``. Beats arrive in buffer order, but packs written in parallel
        may commit out of order: an older beat of the same run (``seq``) never overwrites a newer one.
        Not ordered by time stamps: the gateway's clock may be the thing that is wrong."""
        t = schema.gateways
        ts = to_datetime(beat["ts_us"])
        started = to_datetime(beat["started_us"])
        values: dict[str, Any] = {
            "agent_version": beat["version"][:32], "device_map_hash": beat["map_hash"][:64],
            "host": beat["host"][:255], "started_at": started, "last_seen": ts, "beat_seq": beat["seq"],
            "heartbeat_interval": beat["interval_s"], "devices_up": beat["devices_up"],
            "devices_degraded": beat["devices_degraded"], "devices_down": beat["devices_down"],
            "buffer_readings": beat["buffer_readings"], "clock_offset": beat["clock_offset_s"], "updated_at": ts,
            "stopped_at": ts if beat.get("stopped") else None}
        if beat["reload_us"] is not None:
            values["last_reload_at"] = to_datetime(beat["reload_us"])
            values["last_reload_result"] = (beat["reload_result"] or "")[:255]
        conn.execute(self._insert_gateway, [{"gateway_id": self.gateway_id, "created_at": ts, **values}])
        conn.execute(update(t).where(
            t.c.gateway_id == self.gateway_id,
            or_(t.c.started_at.is_(None), t.c.started_at != started, t.c.beat_seq <= beat["seq"])).values(**values))

    def _apply_alert(self, conn: Connection, p: AlertPayload) -> None:
        t = schema.alerts
        key = f"{self.gateway_id}/{p['key']}"
        ts = to_datetime(p["ts_us"])
        if p["op"] == "open":
            device = p.get("device")
            conn.execute(self._insert_alert, [{
                "alert_type": p["alert_type"], "severity": p["severity"], "title": p["title"][:255],
                "message": p.get("message"), "system": p.get("system"), "gateway_id": self.gateway_id,
                "device_id": self._pk(conn, device) if device else None, "point": p.get("point"),
                "last_value": p.get("value"), "event_key": key, "created_at": ts, "updated_at": ts}])
        elif p["op"] == "update":
            conn.execute(update(t).where(t.c.event_key == key).values(
                severity=p["severity"], message=p.get("message"), last_value=p.get("value"), updated_at=ts))
        elif p["op"] == "close":
            conn.execute(update(t).where(t.c.event_key == key, t.c.resolved.is_(False)).values(
                resolved=True, resolved_at=ts, updated_at=ts))

    def _apply_attack(self, conn: Connection, p: AttackPayload) -> None:
        t = schema.attack_detections
        key = f"{self.gateway_id}/{p['key']}"
        ts = to_datetime(p["ts_us"])
        if p["op"] == "close":
            conn.execute(update(t).where(t.c.event_key == key, t.c.ended_at.is_(None)).values(
                ended_at=ts, updated_at=ts))
            return
        values = {"confidence": p["confidence"], "threat_level": p["threat_level"],
                  "description": p.get("description"), "indicators": p.get("indicators"), "updated_at": ts}
        if p["op"] == "open":
            conn.execute(self._insert_attack, [{
                **values, "attack_type": p["attack_type"], "target_system": p.get("target_system"),
                "gateway_id": self.gateway_id, "event_key": key, "detected_at": to_datetime(p["opened_us"]),
                "created_at": ts}])
        else:
            conn.execute(update(t).where(t.c.event_key == key).values(**values))
