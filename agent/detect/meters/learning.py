"""What every meter check learns with: a learning period, a bounded sample of it, persistence."""

from __future__ import annotations

from array import array

import numpy as np

#: rows a check keeps of its learning period (evenly spread over it, whatever its length)
SAMPLE_ROWS = 1024
#: the threshold is ``HEADROOM`` times this quantile of the residuals seen while learning
QUANTILE = 0.99
HEADROOM = 2.0


class LearningPeriod:
    """Learning lasts at least ``samples`` samples and ``span_s`` seconds of the readings' own time."""

    def __init__(self, samples: int, span_s: float) -> None:
        self.samples, self.span_us = samples, int(span_s * 1e6)
        self.seen = 0
        self.first_us: int | None = None

    def over(self, ts_us: int) -> bool:
        """Count this sample; True once the period is over (this sample is the first one after it)."""
        if self.first_us is None:
            self.first_us = ts_us
        self.seen += 1
        return self.seen > self.samples and ts_us - self.first_us >= self.span_us


class ThinnedSample:
    """Up to :data:`SAMPLE_ROWS` rows of ``width`` values spread evenly over the learning period:
    when full, every other row goes and from then on only every other new row is kept."""

    def __init__(self, width: int, rows: int = SAMPLE_ROWS) -> None:
        self.width, self.rows = width, rows
        self._data = array("d")
        self._stride = 1
        self._seen = 0

    def add(self, *values: float) -> None:
        """Offer one row."""
        if self._seen % self._stride == 0:
            self._data.extend(values)
            if len(self._data) >= self.rows * self.width:
                kept = np.asarray(self._data).reshape(-1, self.width)[::2]
                self._data = array("d", kept.ravel())
                self._stride *= 2
        self._seen += 1

    def table(self) -> np.ndarray:
        """The kept rows, one per line."""
        return np.asarray(self._data).reshape(-1, self.width)

    def __len__(self) -> int:
        return len(self._data) // self.width


def learned_threshold(residuals: np.ndarray, floor: float) -> float:
    """``HEADROOM`` x the ``QUANTILE`` of |residuals| seen while learning, never below ``floor``."""
    if not len(residuals):
        return floor
    return max(floor, HEADROOM * float(np.quantile(np.abs(residuals), QUANTILE)))


class Streak:
    """Fires once a condition held ``needed`` samples in a row (noise does not persist)."""

    def __init__(self, needed: int) -> None:
        self.needed, self.run = needed, 0

    def update(self, over: bool) -> bool:
        """Count this sample; True while the streak is long enough."""
        self.run = self.run + 1 if over else 0
        return self.run >= self.needed
