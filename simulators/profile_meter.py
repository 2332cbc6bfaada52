"""A simulated meter that impersonates a profile: the power meter's physics, written at the profile's
addresses in the profile's encoding (``hacksky-edge simulate --profile NAME``).

The profile comes as plain data (its YAML mapping): the simulators depend on nothing in ``agent``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from simulators.encoding import REGISTERS
from simulators.power_meter import PowerMeter
from simulators.store import RegisterImage

_INT_RANGE = {"int16": (-2**15, 2**15 - 1), "uint16": (0, 2**16 - 1), "int32": (-2**31, 2**31 - 1),
              "uint32": (0, 2**32 - 1), "int64": (-2**63, 2**63 - 1), "uint64": (0, 2**64 - 1)}
#: total harmonic distortion shown, % (voltage, current)
_THD = {"voltage": 2.5, "current": 8.0}
_PHASE = re.compile(r"_l([123])$")
#: the power factor the counters of reactive and apparent energy follow
NOMINAL_PF = 0.92
NOMINAL_TAN = math.tan(math.acos(NOMINAL_PF))


def physical(name: str, m: dict[str, float], energy_kwh: float) -> float:
    """The value of the common point ``name`` in the table's units, from the meter's measures ``m``."""
    volts = [m["voltage_l1"], m["voltage_l2"], m["voltage_l3"]]
    amps = [m["current_l1"], m["current_l2"], m["current_l3"]]
    pf, kw = m["power_factor"], m["active_power"]
    tan = math.tan(math.acos(max(-1.0, min(1.0, pf))))
    phase = _PHASE.search(name)
    share = 1 / 3 if phase else 1.0
    if name.startswith("thd_"):
        return _THD["voltage" if "voltage" in name else "current"]
    # counters grow with the active energy at the nominal power factor (a noisy one would run them backwards)
    base = {"active_power": kw, "power": kw, "reactive_power": kw * tan, "apparent_power": kw / pf,
            "power_factor": pf, "frequency": m["frequency"], "temperature": m["temperature"],
            "energy_import": energy_kwh, "reactive_energy_import": energy_kwh * NOMINAL_TAN,
            "apparent_energy": energy_kwh / NOMINAL_PF, "current_n": 0.05 * sum(amps) / 3,
            "voltage": volts[0], "current": amps[0]}
    if name.startswith(("voltage_l", "current_l")) and phase and name.count("_l") == 1:
        return (volts if name.startswith("voltage") else amps)[int(phase.group(1)) - 1]
    pair = re.fullmatch(r"voltage_l([123])_l([123])", name)
    if pair:
        a, b = volts[int(pair.group(1)) - 1], volts[int(pair.group(2)) - 1]
        return math.sqrt(a * a + b * b + a * b)
    stem = _PHASE.sub("", name)
    if stem in base:
        return base[stem] * (share if stem in ("active_power", "power", "reactive_power", "apparent_power") else 1)
    return 0.0  # exports, tariff 2, counters the physics has no figure for


#: holes are filled in a table whose points span at most this many registers
MAX_FILLED = 2000


def _registers(point: Spec) -> int:
    return (point.length or 1) if point.type == "string" else REGISTERS.get(point.type, 1)


@dataclass(frozen=True)
class Spec:
    """One point of a profile, as its YAML mapping gives it."""

    name: str
    address: int
    table: str = "holding"
    type: str = "uint16"
    scale: float = 1.0
    offset: float = 0.0
    length: int | None = None
    scale_factor: str | None = None
    byte_order: str | None = None
    word_order: str | None = None

    @classmethod
    def of(cls, point: Mapping[str, Any]) -> Spec:
        return cls(**{k: v for k, v in point.items() if k in cls.__dataclass_fields__})


class ProfileMeter:
    """A meter answering at a profile's addresses (its YAML mapping), values from :class:`PowerMeter`'s physics."""

    def __init__(self, profile: Mapping[str, Any], seed: int = 0, start: float | None = None) -> None:
        self.points = [Spec.of(p) for p in profile["points"]]
        layout = profile.get("device") or {}
        self.byte_order, self.word_order = layout.get("byte_order") or "big", layout.get("word_order") or "big"
        self.image = RegisterImage()
        self.meter = PowerMeter(seed=seed, start=start)
        self._factors = {p.scale_factor for p in self.points if p.scale_factor}
        self._fill_holes()
        self._publish(self.meter.clock.start)

    def refresh(self, now: float) -> None:
        """Advance the physics (energy included) and write every point again."""
        self.meter.refresh(now)
        self._publish(self.meter.clock.wall(now))

    def _fill_holes(self) -> None:
        """Zeros between a table's points, as a meter answers its whole map (reads span the holes)."""
        for table in ("holding", "input"):
            spans = [(p.address, p.address + _registers(p)) for p in self.points if p.table == table]
            if spans and max(e for _, e in spans) - min(a for a, _ in spans) <= MAX_FILLED:
                low, high = min(a for a, _ in spans), max(e for _, e in spans)
                self.image.set(table, low, [0] * (high - low))

    def _publish(self, wall: float) -> None:
        measures = self.meter.measure(wall)
        energy = self.meter.energy_wh / 1000
        names = {p.name for p in self.points}
        if "voltage_l1" not in names:  # a single-phase meter measures phase 1 alone
            measures["active_power"] /= 3
            energy /= 3
        values = {p.name: physical(p.name, measures, energy) for p in self.points}
        if "energy_export" in values and "energy_import" not in values:  # a producer (an inverter): its yield
            values["energy_export"] = energy
        exponents = self._exponents(values)
        for point in self.points:
            exponent = exponents.get(point.scale_factor or "", 0)
            self._put(point, exponents[point.name] if point.name in exponents else values[point.name], exponent)

    def _exponents(self, values: dict[str, float]) -> dict[str, int]:
        """A power of ten for each scale-factor point, so that every value it scales fits its register."""
        exponents: dict[str, int] = {}
        for factor in self._factors:
            largest = max((abs(values[p.name] / p.scale) for p in self.points if p.scale_factor == factor),
                          default=0.0)
            exponents[factor] = max(-3, math.ceil(math.log10(largest / 30000))) if largest > 0 else 0
        return exponents

    def _put(self, point: Spec, value: float, exponent: int) -> None:
        if point.table in ("coil", "discrete"):
            self.image.put_bit(point.table, point.address, False)
            return
        order = (point.byte_order or self.byte_order, point.word_order or self.word_order)
        if point.type == "string":
            self.image.put(point.table, point.address, "HackSky simulator", "string", *order, point.length or 1)
            return
        if point.type == "bool":
            self.image.put(point.table, point.address, 0, "uint16", *order)
            return
        raw = (value - point.offset) / point.scale / 10.0 ** exponent if point.name not in self._factors else value
        if point.type in _INT_RANGE:
            low, high = _INT_RANGE[point.type]
            raw = max(low, min(high, round(raw)))
        self.image.put(point.table, point.address, raw, point.type, *order)
