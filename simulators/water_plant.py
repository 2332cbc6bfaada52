"""A small water plant PLC: a tank filled by a pump, drained through a valve, with attacks.

Physics: level' = (pump_flow - outflow) / area; pump flow only when the pump runs; the PLC
switches the pump on below ``low`` and off above ``high``. Scenarios manipulate what the
PLC *reports* (or forces), as an attacker on the process network would.
"""

from __future__ import annotations

import math
import random

from simulators.clock import SimClock
from simulators.store import RegisterImage

#: Holding registers, float32 big-endian.
HOLDING_MAP: dict[str, int] = {
    "tank1_level": 0, "pump1_flow": 2, "outflow": 4, "valve1_open": 6, "pressure_out": 8,
}
#: Coil 0: pump1 running.  Discrete 0: tank1 high alarm, 1: tank1 low alarm.
SCENARIOS = ("normal", "pump_forced_frozen_level", "flow_spoof", "level_spoof")


class WaterPlant:
    """Tank + pump + valve with a mass balance; attack scenarios switchable at run time."""

    AREA_M2 = 20.0
    PUMP_FLOW_M3S = 0.12
    LOW, HIGH, MAX = 2.0, 4.0, 6.0

    def __init__(self, seed: int = 0, scenario: str = "normal", start: float | None = None) -> None:
        """``start``: the epoch second (UTC) the plant's day begins at; default now (pin it in tests)."""
        self.image = RegisterImage()
        self.clock = SimClock(start)
        self._rng = random.Random(seed)
        self.level = 3.0
        self.pump_on = True
        self.scenario = "normal"
        self._frozen_level: float | None = None
        self._last: float | None = None
        self.reported: dict[str, float] = {}
        self.set_scenario(scenario)
        self._step(0.0, self.clock.start)

    def set_scenario(self, name: str) -> None:
        """Switch attack scenario now (``normal`` ends any attack)."""
        if name not in SCENARIOS:
            raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
        self.scenario = name
        self._frozen_level = self.level if name == "pump_forced_frozen_level" else None

    def outflow(self, wall: float) -> tuple[float, float]:
        """Demand-driven outflow (m3/s) and valve opening (%) following a daily pattern."""
        hour = SimClock.hour_of_day(wall)
        opening = 45 + 25 * math.sin((hour - 7) / 24 * 2 * math.pi) + self._rng.gauss(0, 0.5)
        return 0.06 * opening / 50, opening

    def refresh(self, now: float) -> None:
        """Advance the physics to ``now`` and publish what the PLC reports."""
        dt = 0.0 if self._last is None else min(max(now - self._last, 0.0), 5.0)
        self._last = now
        self._step(dt, self.clock.wall(now))

    def _step(self, dt: float, wall: float) -> None:
        out, opening = self.outflow(wall)
        attack = self.scenario
        if attack == "pump_forced_frozen_level" or self.level < self.LOW:
            self.pump_on = True
        elif self.level > self.HIGH:
            self.pump_on = False
        inflow = self.PUMP_FLOW_M3S if self.pump_on else 0.0
        self.level = min(self.MAX, max(0.0, self.level + (inflow - out) * dt / self.AREA_M2))
        reported_level = self.level + self._rng.gauss(0, 0.002)
        reported_inflow = inflow * (1 + self._rng.gauss(0, 0.01)) if inflow else 0.0
        if attack == "pump_forced_frozen_level" and self._frozen_level is not None:
            reported_level = self._frozen_level
        elif attack == "flow_spoof":
            reported_inflow = 0.0
        elif attack == "level_spoof":
            reported_level = (self.LOW + self.HIGH) / 2
        values = {
            "tank1_level": reported_level,
            "pump1_flow": reported_inflow, "outflow": out, "valve1_open": opening,
            "pressure_out": 1.0 + 0.098 * self.level + self._rng.gauss(0, 0.003),
        }
        self.reported = {**values, "pump1_running": float(self.pump_on)}
        for name, address in HOLDING_MAP.items():
            self.image.put("holding", address, values[name], "float32")
        self.image.put_bit("coil", 0, self.pump_on)
        self.image.put_bit("discrete", 0, reported_level > self.HIGH + 0.5)
        self.image.put_bit("discrete", 1, reported_level < self.LOW - 0.5)
