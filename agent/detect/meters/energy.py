"""The energy counter against the power integrated over the same time (frozen, fast or slow counter)."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from agent.detect.meters.check import Detail, LearnedCheck
from agent.detect.meters.layout import MeterLayout, MeterPoll
from agent.detect.meters.learning import LearningPeriod, learned_threshold

log = logging.getLogger(__name__)

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


#: P negative in more than this share of the learning windows' polls (the counter counting): the
#: current transformers are reversed and the counter counts -P
REVERSED_SHARE = 0.9


def positive_energy(p0: float, p1: float, hours: float) -> float:
    """The energy above zero of a power going linearly from ``p0`` to ``p1`` over ``hours``."""
    if p0 >= 0 and p1 >= 0:
        return (p0 + p1) / 2 * hours
    high, low = max(p0, p1), min(p0, p1)
    return high * high / (high - low) / 2 * hours if high > 0 else 0.0


class EnergyCheck(LearnedCheck):
    """Each window's counter increase against the trapezoid integral of the power it counts over the
    readings' own timestamps: imported power (P > 0), or exported (-P > 0) when learning found the
    current transformers reversed; the counter's resolution is its smallest step seen (never below
    its true one). A site that exports (PV) through an import-only counter is then not a frozen counter.
    """

    kind = "energy"
    carries_finding = True  # a finding stands between windows, most polls close none

    def __init__(self, layout: MeterLayout, persist: int = 2) -> None:
        assert layout.energy is not None
        points = (*layout.power, layout.energy)
        super().__init__(layout.device, tuple(map(layout.signal, points)), 7, LearningPeriod(8, 0), persist)
        self.resolution = math.inf
        #: whether the counter counts -P (None until learned)
        self.reversed: bool | None = None
        self._prev: tuple[int, float, float] | None = None
        self._start: tuple[int, float] = (0, 0.0)
        self._window = [0.0, 0.0, 0, 0]  # imported and exported kWh, polls with P < 0, polls

    @staticmethod
    def applies(layout: MeterLayout) -> bool:
        """Needs an energy counter beside the power."""
        return layout.energy is not None

    def row(self, ts_us: int, values: MeterPoll) -> tuple[float, ...] | None:
        """(counted, imported, exported kWh, resolution, window s, polls with P < 0, polls) of a closed window."""
        power, energy = values.power, values.energy
        if power is None or energy is None:
            return None
        prev, self._prev = self._prev, (ts_us, power, energy)
        if prev is None or ts_us - prev[0] > MAX_GAP_S * 1e6 or energy < prev[2]:
            self._start, self._window = (ts_us, energy), [0.0, 0.0, 0, 0]  # first poll, a gap, or a counter reset
            return None
        if ts_us <= prev[0]:
            self._prev = prev
            return None
        if energy > prev[2]:
            self.resolution = min(self.resolution, energy - prev[2])
        hours = (ts_us - prev[0]) / 3.6e9
        window = self._window
        window[0] += positive_energy(prev[1], power, hours)
        window[1] += positive_energy(-prev[1], -power, hours)
        window[2] += power < 0
        window[3] += 1
        # while learning the direction is unknown: whichever way energy flows fills the window
        flowed = max(window[0], window[1]) if self.reversed is None else window[1 if self.reversed else 0]
        span_s = (ts_us - self._start[0]) / 1e6
        full = flowed >= WINDOW_STEPS * self.resolution and span_s >= MIN_WINDOW_S
        if math.isinf(self.resolution) or not (full or span_s >= MAX_WINDOW_S):
            return None
        counted = energy - self._start[1]
        self._start, self._window = (ts_us, energy), [0.0, 0.0, 0, 0]
        return counted, window[0], window[1], self.resolution, span_s, window[2], window[3]

    @staticmethod
    def _deviation(counted: float, integrated: float, resolution: float) -> float:
        """The counter's difference past its own rounding, relative to the window's energy."""
        beyond = max(abs(counted - integrated) - 2 * resolution, 0.0)
        return math.copysign(beyond, counted - integrated) / max(integrated, WINDOW_STEPS * resolution)

    def fit(self, table: np.ndarray) -> float:
        counted, resolution = table[:, 0], table[:, 3]
        negative, polls = table[:, 5].sum(), table[:, 6].sum()
        # P < 0 with the counter standing still is export through an import-only counter, not reversed CTs
        self.reversed = bool(negative > REVERSED_SHARE * polls and counted.sum() > 0)
        if self.reversed:
            log.info("energy %s: power negative in %.0f%% of the learning polls: current transformers "
                     "reversed, the counter counts -P", self.name, 100 * negative / polls)
        integrated = table[:, 2 if self.reversed else 1]
        filled = integrated >= WINDOW_STEPS * resolution
        self.warn_on_scale(counted[filled], integrated[filled], "the counter should be in kWh, power in kW")
        deviations = [self._deviation(c, i, r) for c, i, r in zip(counted, integrated, resolution, strict=True)]
        return learned_threshold(np.asarray(deviations), ENERGY_FLOOR)

    def judge(self, row: tuple[float, ...]) -> tuple[float, Detail]:
        counted, imported, exported, resolution, span_s = row[:5]
        integrated = exported if self.reversed else imported
        return self._deviation(counted, integrated, resolution), {
            "counted_kwh": counted, "integrated_kwh": integrated, "resolution_kwh": resolution, "window_s": span_s}

    def fitted(self) -> dict[str, Any]:
        return {"resolution": self.resolution, "reversed": self.reversed}

    def refit(self, fitted: dict[str, Any]) -> None:
        self.resolution, self.reversed = float(fitted["resolution"]), bool(fitted["reversed"])
