"""``check --connect`` on the devices: read every point of every enabled device once and say per point
whether it answered and whether its value is plausible."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from agent.settings import (
    AgentConfig,
    AnyDevice,
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
        from agent.sources.modbus import link_of

        self._pool, self._conn = pool, pool.acquire(link_of(device), device.line_turnaround)
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
    if not result.reachable:  # one reason for all of them: not a line per point
        return
    name_width = max(len(p.name) for p in points)
    quality_width = max(len(p.quality) for p in points)
    for p in points:
        line = f"  {dev.id} {p.name:<{name_width}} {p.quality:<{quality_width}} {_value_text(p)}"
        if p.reading is None:
            line += " (the driver returned no reading for it; its log says why)"
        elif not p.answered:
            line += f" ({result.why})"
        if p.warnings:
            line += "  warning: " + "; ".join(p.warnings)
        out.write(line.rstrip() + "\n")
    for note in result.notes:
        out.write(f"  {dev.id} note: {note}\n")
