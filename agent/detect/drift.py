"""Slow-drift check (prototype): a two-sided CUSUM on each residual of the detector's model.

A drift a few % of a signal's span per day stays inside every per-row threshold, but it biases
the residuals that involve the signal in one direction, hour after hour; a CUSUM adds that bias
up. Its limits are set on normal rows the residual model did not train on (the residuals there
are what live data gives), so :func:`fit_drift_limits` fits a second model on the first part of
the training rows and runs the CUSUM over the rest. Constant work per row: one matrix-vector
product, as the streaming detector does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agent.detect.model import DetectorModel, Tuning
from agent.detect.plant import PlantRelations
from agent.detect.stream import Finding, feature_rows, feature_vector
from agent.detect.train import fit


@dataclass(frozen=True)
class DriftLimits:
    """CUSUM parameters and a limit per residual name (residuals without one are not checked)."""

    allowance: float            # |z| (after the slow baseline is removed) that never accumulates
    baseline: int               # rows of the slow EWMA mean removed from z first (0: none)
    limits: dict[str, float]
    clip: float = 3.0           # z is clipped to +-clip first: one large spike is the per-row checks' job
    cap: float = 1.2            # sums are held below cap x limit, so an alarm clears soon after the drift ends


class Cusum:
    """Two-sided CUSUM of residual z-scores after removing their slow EWMA mean (seasonal bias)."""

    def __init__(self, size: int, allowance: float, baseline: int, clip: float, cap: np.ndarray | None = None
                 ) -> None:
        self.allowance, self.clip, self.cap = allowance, clip, cap
        self.weight = 1.0 / baseline if baseline > 0 else 0.0
        self.mean = np.zeros(size)
        self.hi = np.zeros(size)
        self.lo = np.zeros(size)

    def update(self, z: np.ndarray) -> np.ndarray:
        """Feed one row's z; the larger of the two sums per residual."""
        d = np.clip(z - self.mean, -self.clip, self.clip)
        # the baseline follows slow seasonal change, but not while a sum is building up (an attack)
        calm = 1.0 if self.cap is None else (np.maximum(self.hi, self.lo) < 0.5 * self.cap).astype(float)
        self.mean = self.mean + self.weight * calm * d
        self.hi = np.maximum(0.0, self.hi + d - self.allowance)
        self.lo = np.maximum(0.0, self.lo - d - self.allowance)
        if self.cap is not None:
            self.hi, self.lo = np.minimum(self.hi, self.cap), np.minimum(self.lo, self.cap)
        return np.maximum(self.hi, self.lo)


def residual_z(model: DetectorModel, values: np.ndarray, hours: np.ndarray) -> np.ndarray:
    """Every row's residual z-scores (rows x residuals), as the streaming detector computes them."""
    prev = np.vstack((values[:1], values[:-1]))
    f = feature_rows(values, prev, np.asarray(hours, dtype=float))
    return (f @ model.residuals.matrix.T) / model.residuals.scale


def fit_drift_limits(values: np.ndarray, hours: np.ndarray, signals: list[str], plant: PlantRelations | None,
                     tuning: Tuning | None = None, holdout: float = 1 / 3, allowance: float = 0.5,
                     baseline: int = 0, clip: float = 3.0, headroom: float = 1.2, watch: set[str] | None = None
                     ) -> DriftLimits:
    """Limits from normal rows: a model fitted on the first ``1 - holdout`` of them, the CUSUM's
    largest value over the rest, times ``headroom``; only residuals named in ``watch`` (None: all)."""
    split = int(len(values) * (1 - holdout))
    model = fit(values[:split], hours[:split], signals, plant, tuning)
    z = residual_z(model, values[split:], hours[split:])
    cusum = Cusum(z.shape[1], allowance, baseline, clip)
    peaks = np.max([cusum.update(row) for row in z[1:]], axis=0)
    return DriftLimits(allowance, baseline, clip=clip, limits={
        n: headroom * float(p) for n, p in zip(model.residuals.names, peaks, strict=True)
        if p > 0 and (watch is None or n in watch)})


def watched_residuals(plant: PlantRelations) -> set[str]:
    """The residuals a level drift biases and that hold steady over seasons: each tank level's own
    (predicted from every other signal) and the declared relations (mass balance, pressures)."""
    names = set()
    for t in plant.tanks:
        names.add(t.level)
        names.add(f"mass balance {t.level}")
        names |= {f"{p} vs {t.level}" for p in t.pressures}
    return names


class DriftWatch:
    """Streams rows; a finding for every residual whose CUSUM is over its limit."""

    def __init__(self, model: DetectorModel, limits: DriftLimits) -> None:
        res = model.residuals
        self.model = model
        self.limit = np.array([limits.limits.get(n, np.inf) for n in res.names])
        self._cusum = Cusum(len(res.names), limits.allowance, limits.baseline, limits.clip,
                             limits.cap * self.limit)
        self._inv_scale = 1.0 / res.scale
        self._prev: np.ndarray | None = None

    def step(self, x: np.ndarray, hour: float) -> list[Finding]:
        """Findings for this row (values in the model's signal order; NaN held from before)."""
        if np.isnan(x).any():
            x = np.where(np.isnan(x), self._prev if self._prev is not None else 0.0, x)
        prev, self._prev = self._prev, x
        if prev is None:
            return []
        z = (self.model.residuals.matrix @ feature_vector(x, prev, hour)) * self._inv_scale
        over = self._cusum.update(z) / self.limit
        res = self.model.residuals
        return [Finding("drift", f"{res.names[i]} drifting", tuple(res.signals[i]), float(over[i]),
                        {"cusum": round(float(over[i] * self.limit[i]), 2), "limit": round(float(self.limit[i]), 2)})
                for i in np.flatnonzero(over > 1.0)]
