"""Abnormal consumption on a power meter: spikes, drops and off-pattern load, scored per sample."""

from __future__ import annotations

import math

#: z-score from which a power reading is flagged ``is_anomaly``
THRESHOLD = 6.0
#: samples before anything is flagged: the baseline must learn the meter first
WARMUP = 30


class LoadWatch:
    """EWMA baseline (mean and spread) of one meter's power.

    The baseline follows the slow daily curve (``alpha`` per sample); a reading far from it
    scores high: a spike, a drop or off-pattern load. A return to normal is not an anomaly.
    Anomalous samples do not move the baseline; a new level lasting ``adopt_after`` samples
    becomes the new normal (a machine added to the feeder, not an anomaly forever).
    """

    def __init__(self, alpha: float = 0.02, threshold: float = THRESHOLD, warmup: int = WARMUP,
                 adopt_after: int = 600) -> None:
        self.alpha, self.threshold, self.warmup, self.adopt_after = alpha, threshold, warmup, adopt_after
        self.run = 0
        self.n = 0
        self.mean = self.var = 0.0

    def score(self, power: float) -> tuple[float, bool]:
        """(anomaly score, is_anomaly) of this reading; the score is a z-score."""
        if not self.n:
            self.n, self.mean = 1, power
            return 0.0, False
        z = abs(power - self.mean) / math.sqrt(self.var + (0.005 * abs(self.mean)) ** 2 + 1e-12)
        anomalous = self.n >= self.warmup and z >= self.threshold
        a = self.alpha if self.n >= self.warmup else 1 / (self.n + 1)
        d = power - self.mean
        self.run = self.run + 1 if anomalous else 0
        if self.run >= self.adopt_after:
            self.mean, self.run = power, 0
        elif not anomalous:
            self.mean += a * d
            self.var = (1 - a) * (self.var + a * d * d)
        self.n += 1
        return (round(z, 3) if self.n > self.warmup else 0.0), anomalous
