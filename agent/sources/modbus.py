"""Modbus TCP devices: register-map checks and the driver on the agent's shared connections."""

from __future__ import annotations

from agent.records import PointInfo, ValueKind
from agent.settings import ModbusDevice, PointConfig, ResolvedDevice
from agent.sources.base import ConfigPath, MapIssue, SourceContext
from drivers.base import Driver


def map_issues(device: ModbusDevice, base: ConfigPath) -> list[MapIssue]:
    """Each point's type/table/bit rules, its end within the table, and no two points overlapping."""
    issues: list[MapIssue] = []
    spans: list[tuple[str, int, int, int | None, int]] = []
    for index, point in enumerate(device.points):
        here = (*base, "points", index)
        issues.extend(((*here, field), msg) for field, msg in _point_rules(point))
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
                           f"overlaps points[{o_index}] ({table} {o_start}..{o_end})"))
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


#: what a register type's readings carry (every other type: a number, scaled)
KIND_OF_TYPE: dict[str, ValueKind] = {"bool": "boolean", "string": "text"}


def points(device: ModbusDevice) -> tuple[PointInfo, ...]:
    """The device's points as outputs announce them: coils and discrete inputs are booleans too."""
    return tuple(PointInfo(p.name, "boolean" if p.table in ("coil", "discrete") else KIND_OF_TYPE.get(p.type, "number"),
                           p.unit, p.role) for p in device.points)


def driver(device: ModbusDevice, resolved: ResolvedDevice, context: SourceContext) -> Driver:
    """The driver for one Modbus device; devices behind one host:port share its socket (``context.pool``)."""
    from drivers.modbus import ModbusDriver  # here, not at the top: loading a map (check, status) needs no pymodbus

    return ModbusDriver(device.id, device.host, device.port, device.unit_id, device.points, pool=context.pool,
                        timeout=resolved.timeout, byte_order=resolved.byte_order, word_order=resolved.word_order,
                        max_gap=resolved.max_gap)
