"""Physics within one meter: P = PF x sum(V.I) over its phases, and the balance between phases."""

from __future__ import annotations

from typing import Any

import numpy as np

from agent.detect.meters.check import Detail, LearnedCheck
from agent.detect.meters.layout import MeterLayout, MeterPoll
from agent.detect.meters.learning import LearningPeriod, learned_threshold

#: accuracy floors (relative): class 1 active power beside class 0.5 volts and amps (IEC 62053-21/61557-12)
PHYSICS_FLOOR = 0.02
#: a phase's share of the three: volts are tight, amps follow single-phase loads
VOLTAGE_BALANCE_FLOOR = 0.005
CURRENT_BALANCE_FLOOR = 0.02
#: below this fraction of the largest load seen, relative deviations are noise (class accuracy is
#: specified from about 5 % of the rated current)
LOW_LOAD = 0.1


def physics_learning() -> LearningPeriod:
    """An hour (and 100 polls): the physics does not depend on the time of day."""
    return LearningPeriod(100, 3600)


def balance_learning() -> LearningPeriod:
    """A day (and 100 polls): how unbalanced the loads are changes with the time of day."""
    return LearningPeriod(100, 86400)


class PhysicsCheck(LearnedCheck):
    """|P| against |PF| x sum(V_i.I_i) (three L-N phases, or one; a single voltage serves every current)."""

    kind = "physics"

    def __init__(self, layout: MeterLayout, persist: int = 3) -> None:
        assert layout.power_factor is not None
        points = (*layout.power, *layout.volts, *layout.amps, layout.power_factor)
        super().__init__(layout.device, tuple(map(layout.signal, points)), 2, physics_learning(), persist)
        self.peak = 0.0

    @staticmethod
    def applies(layout: MeterLayout) -> bool:
        """Needs power, power factor, currents and either one voltage or one per current."""
        return (layout.power_factor is not None and bool(layout.amps)
                and len(layout.volts) in {1, len(layout.amps)})

    def row(self, ts_us: int, values: MeterPoll) -> tuple[float, ...] | None:
        p = values
        if p.power is None or p.power_factor is None or not p.volts or not p.amps:
            return None
        volts = p.volts if len(p.volts) == len(p.amps) else p.volts * len(p.amps)
        expected = abs(p.power_factor) * sum(v * i for v, i in zip(volts, p.amps, strict=True)) / 1000
        read = abs(p.power)
        self.peak = max(self.peak, expected, read)
        if max(expected, read) < LOW_LOAD * self.peak:
            return None
        return read, expected

    def fitted(self) -> dict[str, Any]:
        return {"peak": self.peak}

    def refit(self, fitted: dict[str, Any]) -> None:
        self.peak = float(fitted["peak"])

    def fit(self, table: np.ndarray) -> float:
        read, expected = table[:, 0], table[:, 1]
        self.warn_on_scale(read, expected, "power should be in kW, volts line-to-neutral, the power factor "
                                           "a fraction")
        return learned_threshold((read - expected) / np.maximum(np.maximum(read, expected), 1e-9), PHYSICS_FLOOR)

    def judge(self, row: tuple[float, ...]) -> tuple[float, Detail]:
        read, expected = row
        return (read - expected) / max(read, expected, 1e-9), {"read_kw": read, "expected_kw": expected}


class PhaseBalanceCheck(LearnedCheck):
    """Each phase's share of the phases' mean, against the share it had while learning (FDI on one phase)."""

    kind = "phase_balance"

    def __init__(self, layout: MeterLayout, quantity: str, persist: int = 3) -> None:
        self.quantity = quantity
        points = layout.volts if quantity == "voltage" else layout.amps
        self.floor = VOLTAGE_BALANCE_FLOOR if quantity == "voltage" else CURRENT_BALANCE_FLOOR
        super().__init__(f"{layout.device} {quantity}", tuple(map(layout.signal, points)), len(points) + 1,
                         balance_learning(), persist)
        self.offsets: tuple[float, ...] = (0.0,) * len(points)
        self.peak = 0.0

    @property
    def key(self) -> str:
        return f"{self.kind} {self.quantity}"

    def fitted(self) -> dict[str, Any]:
        return {"offsets": list(self.offsets), "peak": self.peak}

    def refit(self, fitted: dict[str, Any]) -> None:
        offsets = tuple(float(x) for x in fitted["offsets"])
        if len(offsets) != len(self.signals):
            raise ValueError(f"{len(offsets)} phase offsets saved for {len(self.signals)} phases")
        self.offsets, self.peak = offsets, float(fitted["peak"])

    def row(self, ts_us: int, values: MeterPoll) -> tuple[float, ...] | None:
        phases = values.volts if self.quantity == "voltage" else values.amps
        if len(phases) != len(self.signals):
            return None
        mean = sum(phases) / len(phases)
        self.peak = max(self.peak, mean)
        if mean <= 0 or mean < (0.5 if self.quantity == "voltage" else LOW_LOAD) * self.peak:
            return None  # an outage, or too little load for shares to mean anything
        return (*(x / mean - 1 for x in phases), mean)

    def fit(self, table: np.ndarray) -> float:
        shares = table[:, :-1]
        offsets = np.median(shares, axis=0)
        self.offsets = tuple(float(x) for x in offsets)
        return learned_threshold(np.abs(shares - offsets).max(axis=1), self.floor)

    def judge(self, row: tuple[float, ...]) -> tuple[float, Detail]:
        shares, mean = row[:-1], row[-1]
        off = [s - o for s, o in zip(shares, self.offsets, strict=True)]
        worst = max(range(len(off)), key=lambda k: abs(off[k]))
        # what the phase would read if it kept its learned share beside the other phases
        others = [k for k in range(len(off)) if k != worst]
        reference = mean * sum(1 + shares[k] for k in others) / sum(1 + self.offsets[k] for k in others)
        return off[worst], {"phase": worst + 1, "read": mean * (1 + shares[worst]),
                            "expected": reference * (1 + self.offsets[worst])}
