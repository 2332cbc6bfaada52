"""Which of a meter's points carry which quantity (from their ``role``), and one poll's values."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

from agent.settings import AnyDevice
from drivers.base import Reading

#: a point's settings that check or report its value, not what value is read: changing them keeps what
#: the meter's checks learned
NOT_READ = {"limits", "stuck_after", "max_rate", "heartbeat", "deadband", "sampling_interval", "queue_size"}


@dataclass(frozen=True)
class MeterPoll:
    """One poll of a meter: total power (kW), phase volts (L-N) and amps, power factor, energy (kWh).

    A quantity is None (a phase list empty) when one of its points was not read this poll (a bad
    quality, or a value that is not a finite number).
    """

    ts_us: int
    power: float | None = None
    volts: tuple[float, ...] = ()
    amps: tuple[float, ...] = ()
    power_factor: float | None = None
    energy: float | None = None


@dataclass(frozen=True)
class MeterLayout:
    """A meter's points by role, phases in map order (the first voltage pairs with the first current)."""

    device: str
    power: tuple[str, ...] = ()
    volts: tuple[str, ...] = ()
    amps: tuple[str, ...] = ()
    power_factor: str | None = None
    energy: str | None = None
    #: a digest of how each of these points is read (address, type, scale, ...): learned state is kept
    #: (over a reload or a restart) only for the same fingerprint
    fingerprint: str = ""

    @classmethod
    def of(cls, device: AnyDevice) -> MeterLayout | None:
        """The layout of a power meter with a ``power`` point, else None."""
        if device.type != "power_meter":
            return None
        by_role: dict[str, list[str]] = {}
        read = []
        for p in device.points:
            if p.role is not None:
                by_role.setdefault(p.role, []).append(p.name)
                read.append(p.model_dump(mode="json", exclude=NOT_READ))
        if not by_role.get("power"):
            return None
        fingerprint = hashlib.sha256(json.dumps(read, sort_keys=True).encode()).hexdigest()[:16]
        return cls(device.id, tuple(by_role["power"]), tuple(by_role.get("voltage", ())),
                   tuple(by_role.get("current", ())), next(iter(by_role.get("power_factor", ())), None),
                   next(iter(by_role.get("energy", ())), None), fingerprint)

    def signal(self, point: str) -> str:
        """``device/point``, as findings name their signals."""
        return f"{self.device}/{point}"

    def poll(self, readings: Sequence[Reading]) -> MeterPoll | None:
        """This poll's values, at the latest acquisition time among them; None when none was read."""
        values: dict[str, float] = {}
        ts = 0
        for r in readings:
            if r.value is not None and r.good and math.isfinite(r.value):
                values[r.point] = r.value
                ts = max(ts, r.ts_us)
        if not values:
            return None

        def every(names: tuple[str, ...]) -> tuple[float, ...]:
            return tuple(values[n] for n in names) if all(n in values for n in names) else ()

        power = every(self.power)
        return MeterPoll(ts, sum(power) if power else None, every(self.volts), every(self.amps),
                         values.get(self.power_factor or ""), values.get(self.energy or ""))
