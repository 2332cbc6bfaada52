"""``check --connect``, the parts beyond logging in: read every point of every enabled device once and
say per point whether it answered and whether its value is plausible; check that the central user
holds the privileges the gateway needs."""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from agent.settings import (
    AgentConfig,
    AnyDevice,
    CentralConfig,
    ModbusDevice,
    OpcUaDevice,
    PointConfig,
    ResolvedDevice,
    SignalConfig,
)
from agent.sources import SourceContext, source_for
from drivers.base import Driver, ReadError, Reading, now_us

if TYPE_CHECKING:
    from drivers.modbus.connection import ConnectionPool

FREQUENCY_RANGE = (45.0, 65.0)
NOMINAL_VOLTAGES = (100, 110, 115, 120, 127, 220, 230, 240, 277, 400, 480, 690)
VOLTAGE_TOLERANCE = 0.15
#: the phases of one device disagree when (highest - lowest) / highest exceeds this
PHASE_SPREAD = 0.10
#: a float32 decoding outside these magnitudes (zero aside) looks like registers in the wrong order
ABSURD_ABOVE, ABSURD_BELOW = 1e9, 1e-6
COUNTER_UNITS = frozenset({"wh", "kwh", "mwh", "kvarh"})
#: seconds between the two reads of a counter
COUNTER_RECHECK = 1.0
#: a device's read is cut after this many of its timeouts: the Modbus driver allows a connect of one
#: timeout and a request of two, the OPC UA driver four to open a session
READ_BOUND = 4
#: qualities of a device that did not answer at all (an exception reply is an answer)
UNANSWERED = frozenset({"bad:timeout", "bad:connection"})


@dataclass
class PointResult:
    """One point's reading and what looks wrong about it."""

    point: SignalConfig
    reading: Reading | None  # None: the driver returned nothing for the point
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.point.name

    @property
    def unit(self) -> str:
        return self.point.unit or ""

    @property
    def role(self) -> str | None:
        return self.point.role

    @property
    def quality(self) -> str:
        return self.reading.quality if self.reading is not None else "bad:not_read"

    @property
    def value(self) -> float | None:
        return self.reading.value if self.reading is not None else None

    @property
    def answered(self) -> bool:
        """A value (or text) came back, whatever its quality."""
        return self.reading is not None and (self.reading.value is not None or self.reading.text is not None)


@dataclass
class DeviceResult:
    """One device's read: its points, how long it took and why points failed."""

    device: ResolvedDevice
    points: list[PointResult]
    seconds: float
    why: str  # the driver's health (and the link's cause): why points failed
    notes: list[str] = field(default_factory=list)

    @property
    def reachable(self) -> bool:
        return any(p.reading is not None and p.quality not in UNANSWERED for p in self.points)

    @property
    def ok(self) -> bool:
        return self.reachable and all(p.answered for p in self.points)


def check_devices(cfg: AgentConfig, out: TextIO, recheck_after: float = COUNTER_RECHECK) -> int:
    """Read every point of every enabled device once (devices concurrently, each bounded by its
    timeout), write one line per point grouped by device; 1 if a device or a point failed, else 0
    (plausibility warnings do not fail)."""
    results = {r.device.id: r for r in asyncio.run(_check_all(cfg, recheck_after))}
    for device in cfg.devices:
        result = results.get(device.id)
        if result is None:
            out.write(f"device {device.id}: disabled, not read\n")
        else:
            _write_device(result, out)
    answered = sum(p.answered for r in results.values() for p in r.points)
    points = sum(len(r.points) for r in results.values())
    warnings = sum(len(p.warnings) for r in results.values() for p in r.points)
    reachable = sum(r.reachable for r in results.values())
    out.write(f"devices: {reachable} of {len(results)} reachable, {answered} of {points} points answered, "
              f"{warnings} warning{'s' * (warnings != 1)}\n")
    return 0 if all(r.ok for r in results.values()) else 1


async def _check_all(cfg: AgentConfig, recheck_after: float) -> list[DeviceResult]:
    from drivers.modbus import ConnectionPool  # here: loading a map needs no pymodbus

    pool = ConnectionPool()
    context = SourceContext(pool=pool, gateway=cfg.gateway.id)
    try:
        return list(await asyncio.gather(*(_check_device(d, context, recheck_after) for d in cfg.enabled_devices())))
    finally:
        pool.close_all()


def _read_once(config: AnyDevice) -> AnyDevice:
    """The device as a one-off read needs it: an OPC UA subscription would return nothing yet."""
    if isinstance(config, OpcUaDevice) and config.mode == "subscribe":
        return config.model_copy(update={"mode": "poll"})
    return config


def _driver(dev: ResolvedDevice, config: AnyDevice, context: SourceContext) -> Driver:
    return source_for(config.protocol).driver(config, dev.model_copy(update={"config": config}), context)


async def _bounded_read(driver: Driver, dev: ResolvedDevice,
                        points: Sequence[SignalConfig]) -> tuple[list[Reading], str]:
    """The driver's readings, or every point ``bad:timeout`` when it has not finished in time."""
    bound = READ_BOUND * dev.timeout
    try:
        return await asyncio.wait_for(driver.read(), bound), ""
    except TimeoutError:
        ts = now_us()
        return ([Reading(dev.id, p.name, ts, None, None, "bad:timeout") for p in points],
                f"no complete answer within {bound:g}s")


async def _check_device(dev: ResolvedDevice, context: SourceContext, recheck_after: float) -> DeviceResult:
    config = _read_once(dev.config)
    driver = _driver(dev, config, context)
    registers = _Registers(config, dev.timeout, context.pool) if isinstance(config, ModbusDevice) else None
    try:
        started = time.monotonic()
        readings, cut = await _bounded_read(driver, dev, config.points)
        seconds = time.monotonic() - started
        by_name = {r.point: r for r in readings}
        points = [PointResult(p, by_name.get(p.name)) for p in config.points]
        health = driver.health
        why = cut or (f"device {health.state}: {health.reason}" if health.reason else f"device {health.state}")
        if registers is not None and registers.cause:
            why += f"; {registers.cause}"
        result = DeviceResult(dev, points, seconds, why)
        if not result.reachable:
            return result
        for p in points:
            p.warnings.extend(_implausible(p))
        if registers is not None:
            await _flag_word_swaps(points, registers, dev)
        result.notes.extend(_phase_notes(points))
        counters = [p for p in points if _is_counter(p) and p.value is not None]
        if counters:
            await asyncio.sleep(recheck_after)
            await _recheck_counters(dev, config, counters, context, recheck_after)
        return result
    finally:
        if registers is not None:
            registers.close()
        await driver.close()


def _implausible(p: PointResult) -> list[str]:
    """Warnings on a value a frequency, a phase voltage or a power factor cannot have."""
    v = p.value
    if v is None:
        return []
    if p.role == "frequency" or p.unit.casefold() == "hz":
        low, high = FREQUENCY_RANGE
        if not low <= v <= high:
            return [f"frequency {_number(v)} Hz outside {low:g}-{high:g} Hz"]
    if p.role == "voltage":
        nominal = min(NOMINAL_VOLTAGES, key=lambda n: abs(v - n))
        if abs(v - nominal) > VOLTAGE_TOLERANCE * nominal:
            return [f"voltage {_number(v)} V not within ±{VOLTAGE_TOLERANCE:.0%} of a nominal voltage "
                    f"(nearest {nominal} V)"]
    if p.role == "power_factor" and not -1.0 <= v <= 1.0:
        return [f"power factor {_number(v)} outside [-1, 1]"]
    return []


def _phase_notes(points: list[PointResult]) -> list[str]:
    """A note when the device's phase voltages (role voltage) disagree by more than 10 %."""
    phases = [(p.name, p.value) for p in points if p.role == "voltage" and p.value is not None]
    if len(phases) < 2:
        return []
    low, high = min(v for _, v in phases), max(v for _, v in phases)
    if high <= 0 or (high - low) / high <= PHASE_SPREAD:
        return []
    listed = ", ".join(f"{name} {v:.4g} V" for name, v in phases)
    return [f"phase voltages disagree by {(high - low) / high:.0%} (more than {PHASE_SPREAD:.0%}): {listed}"]


def _is_counter(p: PointResult) -> bool:
    return p.role == "energy" or p.unit.casefold() in COUNTER_UNITS


async def _recheck_counters(dev: ResolvedDevice, config: AnyDevice, counters: list[PointResult],
                            context: SourceContext, after: float) -> None:
    """Read the counters (only them, and the scale factors they need) again: one that went down warns."""
    names = {p.name for p in counters} | {str(f) for p in counters if (f := getattr(p.point, "scale_factor", None))}
    subset = config.model_copy(update={"points": [p for p in config.points if p.name in names]})
    driver = _driver(dev, subset, context)
    try:
        readings, _ = await _bounded_read(driver, dev, subset.points)
    finally:
        await driver.close()
    again = {r.point: r for r in readings}
    for p in counters:
        second = again.get(p.name)
        first = p.value
        if second is None or second.value is None:
            p.warnings.append(f"counter not read again ({second.quality if second else 'bad:not_read'})")
        elif first is not None and second.value < first:
            p.warnings.append(f"counter went backwards: {_number(first)} then {_number(second.value)}"
                              f"{' ' + p.unit if p.unit else ''} {after:g} s later")


class _Registers:
    """Raw registers of one Modbus device, read on the connection its driver uses (the pool's)."""

    def __init__(self, device: ModbusDevice, timeout: float, pool: ConnectionPool) -> None:
        from drivers.modbus.connection import Link

        link = Link(device.transport, device.target, device.tcp_port, device.baudrate, device.parity,
                    device.stopbits, device.bytesize)
        self._pool, self._conn = pool, pool.acquire(link, device.line_turnaround)
        self.unit_id, self.timeout = device.unit_id, timeout

    @property
    def cause(self) -> str:
        """Why the link's last connect failed ("connection refused"), "" when it did not."""
        return self._conn.cause

    async def read(self, point: PointConfig) -> list[int] | None:
        """The point's registers, or None when they cannot be read now."""
        from drivers.modbus.plan import FUNCTION_CODES

        try:
            values = await asyncio.wait_for(
                self._conn.read(FUNCTION_CODES[point.table], point.address, point.register_count, self.unit_id,
                                self.timeout), READ_BOUND * self.timeout)
        except (ReadError, TimeoutError):
            return None
        return [int(v) for v in values]

    def close(self) -> None:
        self._pool.release(self._conn)


def _float32(registers: list[int], byte_order: str, word_order: str) -> float | None:
    from drivers.modbus.decode import DecodeError, decode_number

    try:
        return float(decode_number(registers, "float32", byte_order, word_order))
    except DecodeError:
        return None


def _plausible(x: float | None) -> bool:
    return x is not None and math.isfinite(x) and (x == 0 or ABSURD_BELOW <= abs(x) <= ABSURD_ABOVE)


async def _flag_word_swaps(points: list[PointResult], registers: _Registers, dev: ResolvedDevice) -> None:
    """A float32 point whose decoding is absurd (or not finite) while the other word order gives a
    plausible number: warn, with what the other order reads."""
    for p in points:
        point = p.point
        if not isinstance(point, PointConfig) or point.type != "float32" or not p.reading:
            continue
        value = p.value
        as_read = None if value is None else (value - point.offset) / point.scale
        if p.quality != "bad:not_finite" and (as_read is None or _plausible(as_read)):
            continue
        raw = await registers.read(point)
        if raw is None:
            continue
        byte_order, word_order = point.byte_order or dev.byte_order, point.word_order or dev.word_order
        other = "little" if word_order == "big" else "big"
        swapped = _float32(raw, byte_order, other)
        if _plausible(_float32(raw, byte_order, word_order)) or swapped is None or not _plausible(swapped):
            continue
        scaled = swapped * point.scale + point.offset
        p.warnings.append(f"word-swapped? with word_order {other} it reads {_number(scaled)}"
                          f"{' ' + p.unit if p.unit else ''}")


def _value_text(p: PointResult) -> str:
    if p.reading is not None and p.reading.text is not None:
        return repr(p.reading.text)
    if p.value is None:
        return "-"
    return _number(p.value) + (f" {p.unit}" if p.unit else "")


def _number(value: float) -> str:
    """Whole numbers (counters) in full, others to six significant digits."""
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.6g}"


def _write_device(result: DeviceResult, out: TextIO) -> None:
    dev, points = result.device, result.points
    answered = sum(p.answered for p in points)
    state = "reachable" if result.reachable else f"UNREACHABLE ({result.why})"
    out.write(f"device {dev.id} ({dev.config.protocol} {dev.config.address}): {state}, {answered} of "
              f"{len(points)} points answered, read in {result.seconds * 1000:.0f} ms\n")
    name_width = max(len(p.name) for p in points)
    quality_width = max(len(p.quality) for p in points)
    for p in points:
        line = f"  {dev.id} {p.name:<{name_width}} {p.quality:<{quality_width}} {_value_text(p)}"
        if not p.answered:
            line += f" ({result.why})"
        if p.warnings:
            line += "  warning: " + "; ".join(p.warnings)
        out.write(line.rstrip() + "\n")
    for note in result.notes:
        out.write(f"  {dev.id} note: {note}\n")


# -- privileges of the central user ----------------------------------------------------------------------

GATEWAY_ROLE = "hacksky_gateway"
_NAME = r"(?:`(?:[^`]|``)*`|\*)"
_PRIVILEGE_LINE = re.compile(rf"^GRANT (?P<privileges>.+?) ON (?P<db>{_NAME})\.(?P<table>{_NAME}) TO ")
_ROLE_LINE = re.compile(r"^GRANT (?P<roles>`.*`) TO (?P<grantee>`.*)$")
_QUOTED = re.compile(r"`((?:[^`]|``)*)`(?:@`(?:[^`]|``)*`)?")


def _unquote(name: str) -> str:
    return name[1:-1].replace("``", "`") if name.startswith("`") else name


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _like(pattern: str, name: str) -> bool:
    """``name`` matches a database-level grant's name, a LIKE pattern (``_``, ``%``, ``\\`` escapes)."""
    regex, escaped = [], False
    for ch in pattern:
        if escaped or ch not in "\\%_":
            regex.append(re.escape(ch))
            escaped = False
        elif ch == "\\":
            escaped = True
        else:
            regex.append(".*" if ch == "%" else ".")
    return re.fullmatch("".join(regex), name) is not None


@dataclass(frozen=True)
class _Grant:
    """One privilege line of SHOW GRANTS: privileges on every database, one (a pattern), or one table."""

    privileges: frozenset[str]
    database: str  # "*": every database
    table: str  # "*": every table of the database(s)

    def covers(self, privilege: str, database: str, table: str) -> bool:
        if privilege not in self.privileges and not {"ALL", "ALL PRIVILEGES"} & self.privileges:
            return False
        if self.database == "*":
            return True
        if self.table == "*":
            return _like(self.database, database)
        return (self.database, self.table) == (database, table)


def _parse_grant(line: str) -> _Grant | None:
    """A privilege line's privileges and target; None for other lines (roles, PROXY, routines).
    Column privileges (``SELECT (`a`)``) do not count: the gateway needs whole tables."""
    match = _PRIVILEGE_LINE.match(line)
    if match is None:
        return None
    parts = re.split(r",\s*(?![^()]*\))", match["privileges"])
    privileges = frozenset(p.strip().upper() for p in parts if "(" not in p)
    return _Grant(privileges, _unquote(match["db"]), _unquote(match["table"]))


@dataclass(frozen=True)
class MissingGrant:
    """Privileges the central user lacks on one table, and the statement granting them."""

    privileges: tuple[str, ...]
    target: str  # `db`.`table`
    grantee: str  # 'user'@'host'

    @property
    def statement(self) -> str:
        return f"GRANT {', '.join(self.privileges)} ON {self.target} TO {self.grantee};"

    def __str__(self) -> str:
        return f"missing {', '.join(self.privileges)} on {self.target}: {self.statement}"


@dataclass(frozen=True)
class Privileges:
    """What the central user (with its active roles) lacks of a role's privileges."""

    user: str  # 'user'@'host'
    active_roles: tuple[str, ...]
    inactive_roles: tuple[str, ...]  # granted to the user, but not enabled at login (not its default role)
    missing: tuple[MissingGrant, ...]
    mariadb: bool = True

    def default_role_statement(self, role: str) -> str:
        """The statement enabling ``role`` at the user's every login (MariaDB and MySQL 8 differ)."""
        return f"SET DEFAULT ROLE {_quote(role)} {'FOR' if self.mariadb else 'TO'} {self.user};"


def _needed(role: str) -> list[tuple[str, str]]:
    """(table, privilege) pairs ``role`` holds in :data:`agent.central.grants.ROLES`, in its order."""
    from agent.central.grants import ROLES

    return [(table, privilege.strip()) for privileges, tables in ROLES[role]
            for table in tables for privilege in privileges.split(",")]


def gateway_privileges(engine: Engine, database: str, role: str = GATEWAY_ROLE) -> Privileges:
    """Compare the privileges of the engine's user (its own and its active roles', from SHOW GRANTS)
    with those of ``role`` on ``database``. MySQL/MariaDB only."""
    with engine.connect() as conn:
        mariadb = bool(getattr(conn.dialect, "is_mariadb", False))  # known once connected
        current_user = conn.execute(text("SELECT CURRENT_USER()")).scalar_one()
        lines = [str(row[0]) for row in conn.execute(text(_show_grants(conn, mariadb)))]
        enabled = conn.execute(text("SELECT ROLE_NAME FROM information_schema.ENABLED_ROLES")).scalars()
        active = tuple(str(r) for r in enabled if r is not None)  # MariaDB: one NULL row when none is
    name, _, host = str(current_user).rpartition("@")
    user = "'{}'@'{}'".format(name.replace("'", "''"), host.replace("'", "''"))
    user_quoted = f"{_quote(name)}@{_quote(host)}"
    granted = [role_name for line in lines if (m := _ROLE_LINE.match(line)) and m["grantee"].startswith(user_quoted)
               for role_name in _QUOTED.findall(m["roles"])]
    grants = [g for g in map(_parse_grant, lines) if g is not None]
    missing: dict[str, list[str]] = {}
    for table, privilege in _needed(role):
        if not any(g.covers(privilege, database, table) for g in grants):
            missing.setdefault(table, []).append(privilege)
    db = _quote(database)
    return Privileges(user, active, tuple(r for r in granted if r not in active), tuple(
        MissingGrant(tuple(privileges), f"{db}.*" if table == "*" else f"{db}.{_quote(table)}", user)
        for table, privileges in missing.items()), mariadb)


def _show_grants(conn: Connection, mariadb: bool) -> str:
    """MariaDB's SHOW GRANTS lists the active roles' privileges too; MySQL 8 needs them named (USING)."""
    if mariadb:
        return "SHOW GRANTS"
    roles = conn.execute(text("SELECT CURRENT_ROLE()")).scalar()
    return "SHOW GRANTS" if roles in (None, "NONE") else f"SHOW GRANTS FOR CURRENT_USER() USING {roles}"


def check_privileges(central: CentralConfig, out: TextIO, role: str = GATEWAY_ROLE) -> int:
    """One line on the central user's privileges, then one per table it lacks some on, with the GRANT
    fixing it; 1 when one is missing or they cannot be read. An SQLite file has no users to check."""
    from sqlalchemy.engine import URL, make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from agent.central.engine import make_engine, redact_url
    from agent.central.writer import error_text

    where = redact_url(central.url)
    try:
        url = make_url(central.url)
    except ArgumentError:
        url = None
    if url is None or url.get_backend_name() not in ("mysql", "mariadb"):
        kind = "file database" if url is not None and url.get_backend_name() == "sqlite" else "no database server"
        out.write(f"central database {where}: {kind}: no privileges to check\n")
        return 0
    if not url.database:
        out.write(f"central database {where} names no database: no privileges to check\n")
        return 1
    # logged in without the database: a user holding nothing on it may not select it (1044), and is told what to grant
    server = URL.create(url.drivername, url.username, url.password, url.host, url.port, None, url.query)
    engine = make_engine(central.model_copy(update={"url": server.render_as_string(hide_password=False)}))
    try:
        found = gateway_privileges(engine, url.database, role)
    except SQLAlchemyError as exc:
        out.write(f"central privileges not checked: {error_text(exc)}\n")
        return 1
    finally:
        engine.dispose()
    roles = f" (roles {', '.join(found.active_roles)})" if found.active_roles else ""
    if not found.missing:
        out.write(f"central user {found.user}{roles}: holds every privilege of {role} the gateway needs\n")
        return 0
    out.write(f"central user {found.user}{roles} lacks privileges the gateway needs (those of {role}, "
              "see `hacksky-edge central grants`):\n")
    for grant in found.missing:
        out.write(f"  {grant}\n")
    for inactive in found.inactive_roles:
        out.write(f"  role {_quote(inactive)} is granted but not active at login, so it does not count: "
                  f"{found.default_role_statement(inactive)}\n")
    return 1
