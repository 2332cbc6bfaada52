"""The energy counter against the power integrated over the same time (frozen, fast or slow counter)."""

from __future__ import annotations

import math

import numpy as np

from agent.detect.meters.check import Detail, LearnedCheck
from agent.detect.meters.layout import MeterLayout, MeterPoll
from agent.detect.meters.learning import LearningPeriod, learned_threshold

#: a window closes once its integrated energy is this many counter steps: the counter's own
#: rounding (two steps at most, one at each end) is then at most 5 % of it
WINDOW_STEPS = 40
MIN_WINDOW_S = 60.0
#: a window also closes after this long, however little energy flowed (a counter running with no load)
MAX_WINDOW_S = 3600.0
#: polls further apart than this leave the integral unknown: the window starts again
MAX_GAP_S = 300.0
#: the counter's class accuracy against the power's (class 1 energy, IEC 62053-21)
ENERGY_FLOOR = 0.02


class EnergyCheck(LearnedCheck):
    """Each window's counter increase against the trapezoid integral of |P| over the readings' own
    timestamps; the counter's resolution is its smallest step seen (never below its true one)."""

    kind = "energy"

    def __init__(self, layout: MeterLayout, persist: int = 2) -> None:
        assert layout.energy is not None
        points = (*layout.power, layout.energy)
        super().__init__(layout.device, tuple(map(layout.signal, points)), 4, LearningPeriod(8, 0), persist)
        self.resolution = math.inf
        self._prev: tuple[int, float, float] | None = None
        self._start: tuple[int, float] = (0, 0.0)
        self._integral = 0.0

    @staticmethod
    def applies(layout: MeterLayout) -> bool:
        """Needs an energy counter beside the power."""
        return layout.energy is not None

    def row(self, ts_us: int, values: MeterPoll) -> tuple[float, ...] | None:
        power, energy = values.power, values.energy
        if power is None or energy is None:
            return None
        prev, self._prev = self._prev, (ts_us, power, energy)
        if prev is None or ts_us - prev[0] > MAX_GAP_S * 1e6 or energy < prev[2]:
            self._start, self._integral = (ts_us, energy), 0.0  # first poll, a gap, or a counter reset
            return None
        if ts_us <= prev[0]:
            self._prev = prev
            return None
        if energy > prev[2]:
            self.resolution = min(self.resolution, energy - prev[2])
        self._integral += (abs(prev[1]) + abs(power)) / 2 * (ts_us - prev[0]) / 3.6e9
        span_s = (ts_us - self._start[0]) / 1e6
        full = self._integral >= WINDOW_STEPS * self.resolution and span_s >= MIN_WINDOW_S
        if math.isinf(self.resolution) or not (full or span_s >= MAX_WINDOW_S):
            return None
        counted, integrated = energy - self._start[1], self._integral
        self._start, self._integral = (ts_us, energy), 0.0
        return counted, integrated, self.resolution, span_s

    @staticmethod
    def _deviation(counted: float, integrated: float, resolution: float) -> float:
        """The counter's difference past its own rounding, relative to the window's energy."""
        beyond = max(abs(counted - integrated) - 2 * resolution, 0.0)
        return math.copysign(beyond, counted - integrated) / max(integrated, WINDOW_STEPS * resolution)

    def fit(self, table: np.ndarray) -> float:
        counted, integrated, resolution = table[:, 0], table[:, 1], table[:, 2]
        filled = integrated >= WINDOW_STEPS * resolution
        self.warn_on_scale(counted[filled], integrated[filled], "the counter should be in kWh, power in kW")
        deviations = [self._deviation(c, i, r) for c, i, r, _ in table]
        return learned_threshold(np.asarray(deviations), ENERGY_FLOOR)

    def judge(self, row: tuple[float, ...]) -> tuple[float, Detail]:
        counted, integrated, resolution, span_s = row
        return self._deviation(counted, integrated, resolution), {
            "counted_kwh": counted, "integrated_kwh": integrated, "resolution_kwh": resolution, "window_s": span_s}
