"""Report by exception: which readings are stored, for points with a ``deadband`` or ``heartbeat``.

Checks and detection see every sample before this; only storage is thinned. A reading is stored
when it is the point's first, when its quality is bad or differs from the last stored one's, when
its value moved past the deadband from the last *stored* value (so a slow drift is stored once it
adds up), or when the heartbeat has passed since the last stored reading. A stored reading keeps
its own acquisition time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agent.settings import AnyDevice, Band, OpcUaPoint, PointConfig, SignalConfig
from drivers.base import Reading

#: with a deadband and no heartbeat, a value is stored at least this often (seconds)
DEFAULT_HEARTBEAT = 600.0


@dataclass(frozen=True)
class StoreRule:
    """When a point's reading is worth storing."""

    absolute: float  # stored once |value - last stored| >= absolute (0: any change)
    percent: float  # ... and >= percent / 100 * |last stored| (0: not used)
    heartbeat_us: int  # stored when this long has passed since the last stored reading


def _band(point: SignalConfig, device: AnyDevice) -> Band | None:
    """The point's own deadband, else its device's; an OPC UA point's is its server-side filter,
    applied here too when absolute (a percent of the server's EURange is the server's to apply).
    A Modbus bit or string has none: every change of it is stored."""
    if isinstance(point, PointConfig) and (point.table in ("coil", "discrete") or point.type in ("bool", "string")):
        return None
    if isinstance(point, OpcUaPoint):
        own = point.deadband
        if own is not None:
            return Band(absolute=own.value) if own.type == "absolute" else device.deadband
        return device.deadband
    return getattr(point, "deadband", None) or device.deadband


def rule_for(point: SignalConfig, device: AnyDevice) -> StoreRule | None:
    """The point's rule, or None when every reading is stored (no deadband, no heartbeat on the point
    or its device). A point without a band of its own (a bit) is stored on every change."""
    heartbeat = point.heartbeat or device.heartbeat
    if getattr(point, "deadband", None) is None and device.deadband is None and heartbeat is None:
        return None
    band = _band(point, device)
    return StoreRule(absolute=(band.absolute or 0.0) if band else 0.0,
                     percent=(band.percent or 0.0) if band else 0.0,
                     heartbeat_us=int((heartbeat or DEFAULT_HEARTBEAT) * 1e6))


class Thinning:
    """Keeps each ruled point's last stored reading and decides what to store."""

    def __init__(self, devices: Sequence[AnyDevice], previous: Thinning | None = None) -> None:
        self.rules: dict[str, dict[str, StoreRule]] = {}
        for device in devices:
            rules = {p.name: rule for p in device.points if (rule := rule_for(p, device)) is not None}
            if rules:
                self.rules[device.id] = rules
        kept = previous.last if previous else {}
        #: (device, point) -> the last reading stored (a reload keeps those of points still ruled)
        self.last: dict[tuple[str, str], Reading] = {
            key: r for key, r in kept.items() if key[1] in self.rules.get(key[0], {})}

    def keep(self, device: str, readings: list[Reading]) -> list[Reading]:
        """The readings of one poll to store."""
        rules = self.rules.get(device)
        if rules is None:
            return readings
        stored: list[Reading] = []
        for r in readings:
            rule = rules.get(r.point)
            if rule is None or self._changed(rule, r):
                stored.append(r)
                if rule is not None:
                    self.last[(device, r.point)] = r
        return stored

    def _changed(self, rule: StoreRule, r: Reading) -> bool:
        last = self.last.get((r.device, r.point))
        if last is None or not r.good or r.quality != last.quality or r.ts_us - last.ts_us >= rule.heartbeat_us:
            return True
        if r.value is None or last.value is None:
            return r.text != last.text or r.value != last.value
        moved = abs(r.value - last.value)
        return moved > 0 and moved >= rule.absolute and (
            not rule.percent or moved >= rule.percent / 100 * abs(last.value))
