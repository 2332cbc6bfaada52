"""Modbus devices (TCP, RTU over TCP, serial): register-map checks and the driver on the agent's shared links."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from agent.mapdoc import format_path
from agent.records import PointInfo, ValueKind
from agent.settings import ModbusDevice, PointConfig, ResolvedDevice
from agent.sources.base import ConfigPath, MapIssue, SourceContext
from drivers.base import Driver

if TYPE_CHECKING:
    from drivers.modbus.connection import Link

#: a serial device's path, stored as ``serial:<path>/<unit>`` in devices.address (255)
SERIAL_PATH_LENGTH = 255 - len("serial:/255")
#: serial line settings: only a serial device may set them
SERIAL_FIELDS = ("baudrate", "parity", "stopbits", "bytesize")


def _transport_issues(device: ModbusDevice, base: ConfigPath) -> list[MapIssue]:
    """A TCP transport needs a host and a port number; a serial one a device path and no host."""
    if device.transport == "serial":
        issues: list[MapIssue] = []
        if not isinstance(device.port, str) or not device.port.startswith("/"):
            issues.append(((*base, "port"), "a serial device needs port: the serial device's path, e.g. /dev/ttyUSB0"))
        elif len(device.port) > SERIAL_PATH_LENGTH:
            issues.append(((*base, "port"), f"is {len(device.port)} characters long; at most {SERIAL_PATH_LENGTH} fit "
                                            "(stored centrally in devices.address)"))
        if device.host is not None:
            issues.append(((*base, "host"), "a serial device has no host (its port is the serial device)"))
        return issues + _rtu_unit(device, base)
    issues = [((*base, field), f"{field} applies to transport: serial only")
              for field in SERIAL_FIELDS if field in device.model_fields_set]
    if device.host is None:
        issues.append(((*base, "host"), "required field is missing"))
    if isinstance(device.port, str) or (device.port is not None and not 1 <= device.port <= 65535):
        issues.append(((*base, "port"), f"{device.port!r} is not a TCP port number (1-65535; "
                                        "a serial device needs transport: serial)"))
    return issues + (_rtu_unit(device, base) if device.transport == "rtu_over_tcp" else [])


def _rtu_unit(device: ModbusDevice, base: ConfigPath) -> list[MapIssue]:
    """On an RTU line unit 0 is a broadcast (nothing answers it) and 248-255 are reserved."""
    if 1 <= device.unit_id <= 247:
        return []
    return [((*base, "unit_id"), f"{device.unit_id} is not a unit on an RTU line (1-247; 0 is a broadcast)")]


def bus_issues(devices: Sequence[tuple[ConfigPath, ModbusDevice]]) -> list[MapIssue]:
    """Devices on one link agree on its transport and, on a serial line, its settings."""
    issues: list[MapIssue] = []
    first: dict[str, tuple[ConfigPath, ModbusDevice]] = {}
    for here, device in devices:
        key = device.target if device.transport == "serial" else f"{device.host}:{device.tcp_port}"
        seen = first.setdefault(key, (here, device))
        other = seen[1]
        if other is device:
            continue
        where = format_path(seen[0])
        if other.transport != device.transport:
            issues.append(((*here, "transport"), f"{key} is used with transport {other.transport} by {where}"))
            continue
        for field in SERIAL_FIELDS if device.transport == "serial" else ():
            if getattr(device, field) != getattr(other, field):
                issues.append(((*here, field), f"{getattr(device, field)!r} differs from {where}'s "
                                               f"{getattr(other, field)!r} on the same serial line {key}"))
    return issues


def map_issues(device: ModbusDevice, base: ConfigPath) -> list[MapIssue]:
    """Each point's type/table/bit rules, its end within the table, and no two points overlapping."""
    issues: list[MapIssue] = _transport_issues(device, base)
    spans: list[tuple[str, int, int, int | None, int]] = []
    by_name = {p.name: p for p in device.points}
    for index, point in enumerate(device.points):
        here = (*base, "points", index)
        issues.extend(((*here, field), msg) for field, msg in _point_rules(point))
        if point.scale_factor is not None:
            issues.extend(((*here, "scale_factor"), msg) for msg in _scale_factor_rules(point, by_name))
        end = point.address + point.register_count - 1
        if end > 65535:
            issues.append(((*here, "address"), f"point ends at address {end}, past 65535"))
        spans.append((point.table, point.address, end, point.bit, index))
    for table, start, end, bit, index in spans:
        for other_table, o_start, o_end, o_bit, o_index in spans:
            if o_index >= index or other_table != table or o_end < start or o_start > end:
                continue
            if bit is not None and o_bit is not None and bit != o_bit:
                continue
            if (bit is None) != (o_bit is None):
                continue  # a status word and one of its bits may both be read
            issues.append(((*base, "points", index, "address"),
                           f"overlaps {device.points[o_index].name} ({table} {o_start}..{o_end})"))
    return issues


def _point_rules(point: PointConfig) -> list[tuple[str, str]]:
    bit_table = point.table in ("coil", "discrete")
    rules: list[tuple[bool, str, str]] = [
        (bit_table and point.type != "bool", "type", f"{point.table} points must be type bool"),
        (point.type == "string" and point.length is None, "length", "string points need length (registers)"),
        (point.type != "string" and point.length is not None, "length", "length applies to string points only"),
        (point.bit is not None and (bit_table or point.type != "bool"), "bit",
         "bit applies to bool points of holding or input registers"),
        (point.type == "bool" and not bit_table and point.bit is None, "bit",
         "a bool point of a register table needs bit (0-15)"),
        (point.type in ("bool", "string") and (point.scale != 1.0 or point.offset != 0.0), "scale",
         "scale and offset apply to numeric points only"),
        (point.type in ("bool", "string") and (point.limits is not None or point.max_rate is not None),
         "limits", "limits and max_rate apply to numeric points only"),
        (point.limits is not None and point.limits.min is not None and point.limits.max is not None
         and point.limits.min > point.limits.max, "limits", "limits.min is above limits.max"),
        (point.scale == 0.0, "scale", "scale must not be zero"),
    ]
    return [(field, msg) for failed, field, msg in rules if failed]


def _scale_factor_rules(point: PointConfig, by_name: dict[str, PointConfig]) -> list[str]:
    """A scale factor names another int16 register point; the scaled point is a number without offset."""
    factor = by_name.get(point.scale_factor or "")
    if factor is None or factor is point:
        return [f"{point.scale_factor!r} is not another point of this device"]
    if factor.type != "int16" or factor.table not in ("holding", "input"):
        return [f"{factor.name} must be an int16 register (a signed power of ten), not {factor.type} in "
                f"{factor.table}"]
    if factor.scale != 1.0 or factor.offset != 0.0 or factor.scale_factor is not None:
        return [f"{factor.name} is a power of ten as read: no scale, offset or scale_factor of its own"]
    if point.type in ("bool", "string") or point.offset != 0.0:
        return ["a scale factor applies to numeric points without offset"]
    return []


#: what a register type's readings carry (every other type: a number, scaled)
KIND_OF_TYPE: dict[str, ValueKind] = {"bool": "boolean", "string": "text"}


def points(device: ModbusDevice) -> tuple[PointInfo, ...]:
    """The device's points as outputs announce them: coils and discrete inputs are booleans too."""
    return tuple(PointInfo(p.name, "boolean" if p.table in ("coil", "discrete") else KIND_OF_TYPE.get(p.type, "number"),
                           p.unit, p.role) for p in device.points)


def link_of(device: ModbusDevice) -> Link:
    """The link (bus) the device is on, as its driver's connection pool keys it."""
    from drivers.modbus.connection import Link  # here, not at the top: loading a map needs no pymodbus

    return Link(device.transport, device.target, device.tcp_port, device.baudrate, device.parity, device.stopbits,
                device.bytesize)


def driver(device: ModbusDevice, resolved: ResolvedDevice, context: SourceContext) -> Driver:
    """The driver for one Modbus device; devices behind one host:port share its socket (``context.pool``)."""
    from drivers.modbus import ModbusDriver  # here, not at the top: loading a map (check, status) needs no pymodbus

    link = link_of(device)
    return ModbusDriver(device.id, device.target, device.tcp_port, device.unit_id, device.points, pool=context.pool,
                        timeout=resolved.timeout, byte_order=resolved.byte_order, word_order=resolved.word_order,
                        max_gap=resolved.max_gap, link=link, turnaround=device.line_turnaround)
