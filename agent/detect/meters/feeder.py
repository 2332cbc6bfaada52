"""Meters in a feeder hierarchy: the sub-meters' power adds up to their feeder's, less unmetered load."""

from __future__ import annotations

from typing import Any

import numpy as np

from agent.detect.meters.check import Detail, LearnedCheck
from agent.detect.meters.learning import LearningPeriod, learned_threshold
from agent.detect.meters.physics import LOW_LOAD

#: two class 1 meters (IEC 62053-21) on either side of the sum
FEEDER_FLOOR = 0.02


class FeederCheck(LearnedCheck):
    """Feeder power against alpha x (sum of its sub-meters' power at the same instant) + beta.

    alpha and beta are fitted on the learning day (losses, unmetered loads); each sub-meter's power
    is interpolated between its two latest polls to the feeder poll's time, or taken from its last
    poll when that is at most one of its poll periods old; an older one leaves the sample out.
    """

    kind = "feeder"

    def __init__(self, feeder: str, subs: tuple[str, ...], signals: tuple[str, ...], fingerprint: str = "",
                 persist: int = 3) -> None:
        super().__init__(feeder, signals, 2, LearningPeriod(100, 86400), persist)
        self.feeder, self.subs = feeder, subs
        #: a digest of the feeder's and its sub-meters' layouts: what it learned is kept only for the same
        self.fingerprint = fingerprint
        self._history: dict[str, tuple[tuple[int, float], ...]] = {}
        self.alpha, self.beta = 1.0, 0.0
        self.peak = 0.0

    def remember(self, device: str, ts_us: int, power: float) -> None:
        """A sub-meter's (or the feeder's) latest power."""
        history = self._history.get(device, ())
        if not history or ts_us > history[-1][0]:
            self._history[device] = (*history[-1:], (ts_us, power))

    def _power_at(self, device: str, ts_us: int) -> float | None:
        history = self._history.get(device, ())
        if len(history) < 2:
            return None
        (t0, p0), (t1, p1) = history
        if t0 <= ts_us <= t1:
            return p0 + (p1 - p0) * (ts_us - t0) / (t1 - t0)
        return p1 if t1 < ts_us <= t1 + (t1 - t0) else None

    def row(self, ts_us: int, values: float) -> tuple[float, ...] | None:
        parts = [self._power_at(s, ts_us) for s in self.subs]
        if any(p is None for p in parts):
            return None
        total = sum(p for p in parts if p is not None)
        self.peak = max(self.peak, abs(values))
        if not abs(values) > LOW_LOAD * self.peak:
            return None  # little load (or none: the deviation is relative to the feeder's power)
        return values, total

    def fitted(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "beta": self.beta, "peak": self.peak}

    def refit(self, fitted: dict[str, Any]) -> None:
        self.alpha, self.beta, self.peak = float(fitted["alpha"]), float(fitted["beta"]), float(fitted["peak"])

    def fit(self, table: np.ndarray) -> float:
        feeder, subs = table[:, 0], table[:, 1]
        if np.var(subs) > (0.01 * np.mean(np.abs(subs))) ** 2:
            alpha, beta = np.polyfit(subs, feeder, 1)
            self.alpha, self.beta = float(alpha), float(beta)
        else:  # too steady a load to tell losses from unmetered load: one offset
            self.beta = float(np.median(feeder - subs))
        return learned_threshold((feeder - self.alpha * subs - self.beta) / np.abs(feeder), FEEDER_FLOOR)

    def judge(self, row: tuple[float, ...]) -> tuple[float, Detail]:
        feeder, subs = row
        expected = self.alpha * subs + self.beta
        return (feeder - expected) / abs(feeder), {"read_kw": feeder, "expected_kw": expected, "sub_meters_kw": subs}
