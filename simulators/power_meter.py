"""A three-phase power meter with a daily load curve, noise and an energy counter."""

from __future__ import annotations

import math
import random

from simulators.clock import SimClock
from simulators.meter_attacks import MeterAttack
from simulators.store import RegisterImage

#: Register map (holding registers, float32, big-endian words and bytes).
HOLDING_MAP: dict[str, int] = {
    "voltage_l1": 0, "voltage_l2": 2, "voltage_l3": 4,
    "current_l1": 6, "current_l2": 8, "current_l3": 10,
    "active_power": 12, "frequency": 14, "power_factor": 16, "temperature": 18,
}
#: Input registers: energy counter in Wh, uint64 at address 10.
ENERGY_ADDRESS = 10
#: Coil 0: breaker closed.  Holding 20: status word (bit 0 running, bit 3 overtemperature).
STATUS_ADDRESS = 20


class PowerMeter:
    """Simulated meter; values follow a daily curve so checks see realistic variation."""

    def __init__(self, seed: int = 0, nominal_kw: float = 40.0, start: float | None = None,
                 serve: bool = True) -> None:
        """``start``: the epoch second (UTC) the meter's day begins at; default now (pin it in tests).
        ``serve=False``: no register image is kept up to date, only :attr:`reported` (evaluations)."""
        self.serve = serve
        self.image = RegisterImage()
        self.clock = SimClock(start)
        self._rng = random.Random(seed)
        self.nominal_kw = nominal_kw * (0.8 + 0.4 * self._rng.random())
        self.energy_wh = 1_000_000.0 * (1 + seed)
        self._last: float | None = None
        self.spike_factor = 1.0
        #: an attack on what the meter reports (:mod:`simulators.meter_attacks`); None: honest
        self.attack: MeterAttack | None = None
        #: the power actually drawn at the last refresh (kW), whatever the registers say
        self.true_kw = 0.0
        #: what the registers hold since the last refresh, energy counter (``energy_wh``) included
        self.reported: dict[str, float] = {}
        self._publish(self.clock.start)
        self._put_energy()

    def load_fraction(self, wall: float) -> float:
        """Daily curve: low at night, peaks late morning and early evening."""
        hour = SimClock.hour_of_day(wall)
        return 0.55 + 0.25 * math.sin((hour - 6) / 24 * 2 * math.pi) + 0.15 * math.sin((hour - 9) / 12 * 2 * math.pi)

    def refresh(self, now: float) -> None:
        """Recompute every register for time ``now``."""
        power_kw = self._publish(self.clock.wall(now))
        if self._last is not None:
            self.energy_wh += power_kw * 1000 * max(now - self._last, 0.0) / 3600
        self._last = now
        self._put_energy()

    def _publish(self, wall: float) -> float:
        """Registers for wall time ``wall`` (all but the energy counter); returns the active power (kW)."""
        values = self.measure(wall)
        self.true_kw = values["active_power"]
        if self.attack is not None:
            values = self.attack.registers(values)
        self.reported = {**values, "energy_wh": self.reported.get("energy_wh", self.energy_wh)}
        if not self.serve:
            return self.true_kw
        for name, address in HOLDING_MAP.items():
            self.image.put("holding", address, values[name], "float32")
        self.image.put_bit("coil", 0, True)
        overtemp = values["temperature"] > 60
        self.image.put("holding", STATUS_ADDRESS, 0b1 | (overtemp << 3), "uint16")
        return self.true_kw

    def load_kw(self, wall: float) -> float:
        """The power drawn at wall time ``wall``: the daily curve, with 1 % fluctuation."""
        return self.nominal_kw * self.load_fraction(wall) * self.spike_factor * (1 + self._rng.gauss(0, 0.01))

    def measure(self, wall: float) -> dict[str, float]:
        """What the meter measures at wall time ``wall``: volts, amps, kW, Hz, power factor, degC."""
        rng = self._rng
        power_kw = self.load_kw(wall)
        pf = 0.92 + rng.gauss(0, 0.005)
        voltages = [230.0 + rng.gauss(0, 0.8) for _ in range(3)]
        current = power_kw * 1000 / (3 * 230.0 * pf)
        values = {
            "voltage_l1": voltages[0], "voltage_l2": voltages[1], "voltage_l3": voltages[2],
            "current_l1": current * (1 + rng.gauss(0, 0.01)),
            "current_l2": current * (1 + rng.gauss(0, 0.01)),
            "current_l3": current * (1 + rng.gauss(0, 0.01)),
            "active_power": power_kw, "frequency": 50.0 + rng.gauss(0, 0.01),
            "power_factor": pf, "temperature": 35.0 + 10 * power_kw / self.nominal_kw,
        }
        return values

    def _put_energy(self) -> None:
        reported = self.energy_wh
        if self.attack is not None:
            reported = self.attack.counter(self.energy_wh, self.reported["energy_wh"])
        self.reported["energy_wh"] = float(int(reported))
        if self.serve:
            self.image.put("input", ENERGY_ADDRESS, int(reported), "uint64")


class FeederMeter(PowerMeter):
    """The meter upstream of ``subs``: it measures their true load plus an unmetered load of its own
    (``unmetered_kw`` at the daily curve's mean); refresh it after them, at the same time."""

    def __init__(self, subs: list[PowerMeter], unmetered_kw: float = 2.0, seed: int = 100,
                 start: float | None = None, serve: bool = True) -> None:
        self.subs, self.unmetered_kw = subs, unmetered_kw
        super().__init__(seed=seed, start=start, serve=serve)
        self.nominal_kw = sum(m.nominal_kw for m in subs) + unmetered_kw

    def load_kw(self, wall: float) -> float:
        """The sub-meters' load as drawn, plus the unmetered load."""
        unmetered = self.unmetered_kw * self.load_fraction(wall) * (1 + self._rng.gauss(0, 0.01))
        return sum(m.true_kw for m in self.subs) + unmetered
