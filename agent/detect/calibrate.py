"""Limits chosen on normal rows the model did not train on: time-ordered cross-validation.

The training rows give each detector its tightest limit (a residual score's quantile, a band's
learned range, the largest change, the hour-of-day spread). Rows the model never saw go further:
another season, another demand. Calibration cuts the normal rows into consecutive blocks, fits
on all blocks but one and streams that one, so every normal row is scored by a model that did
not train on it. Each detector family's limit is then widened by the same out-of-fold quantile
of its scores over its limit, at the lowest quantile level whose union of families alarms on at
most ``false_alarm_budget`` of the out-of-fold rows. A limit is never tightened.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from agent.detect.model import DetectorModel
from agent.detect.stream import StreamingDetector

log = logging.getLogger(__name__)

#: families besides the residual score groups, in the order of :func:`family_ratios`' last columns
OTHER_FAMILIES = ["bands", "rate", "baseline", "frozen"]
#: quantile levels searched between 1 - budget and 1
_LEVELS = 400


@dataclass
class Calibration:
    """What cross-validation chose, kept in the model's metadata."""

    folds: int
    false_alarm_budget: float
    level: float                     # quantile level of the out-of-fold ratios
    multipliers: dict[str, float]    # family -> factor on its in-sample limit (>= 1)
    false_alarm_rate: float          # out-of-fold, at those factors
    unwidened_false_alarm_rate: float  # out-of-fold, with the training rows' own limits
    fold_false_alarm_rates: list[float]
    rows: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def family_ratios(detector: StreamingDetector, x: np.ndarray, hours: np.ndarray) -> np.ndarray:
    """Rows x families: each family's largest score over its limit (>= 1 would alarm).

    Families: every residual score group (the detector's ``group_names``), then the bands
    (with their persistence), rates of change, the hour-of-day baseline and freezes.
    """
    r = detector.inspect(x, hours)
    model = detector.model
    persist = model.tuning.band_persist
    band = r.band if r.band.shape[1] else np.full((len(x), 1), -np.inf)
    padded = np.vstack((np.full((persist - 1, band.shape[1]), -np.inf), band))
    lasting = np.lib.stride_tricks.sliding_window_view(padded, persist, axis=0).min(axis=2)
    limit = model.per_signal.frozen_limit
    frozen = np.where(limit > 0, r.frozen / np.maximum(limit, 1), 0.0)
    scored = r.scored[:, None]
    return np.column_stack((r.normalized, lasting.max(axis=1), np.where(scored, r.rate, 0.0).max(axis=1),
                            r.tod.max(axis=1), np.where(scored, frozen, 0.0).max(axis=1)))


def calibrate(values: np.ndarray, hours: np.ndarray, folds: int, budget: float,
              fit_block: Callable[[np.ndarray], DetectorModel], starts: np.ndarray) -> Calibration:
    """The factors the out-of-fold ratios of every family call for (keyed by family name).

    ``fit_block(rows)`` fits an uncalibrated model on the rows selected by a boolean mask;
    ``starts`` marks rows after a gap, where a held-out block's stream starts afresh.
    """
    n = len(values)
    edges = np.linspace(0, n, folds + 1).astype(int)
    ratios: list[np.ndarray] = []
    names: list[str] = []
    for k in range(folds):
        held = np.zeros(n, dtype=bool)
        held[edges[k]:edges[k + 1]] = True
        model = fit_block(~held)
        names = StreamingDetector(model).group_names + OTHER_FAMILIES
        at = [*sorted({int(edges[k]), *(np.flatnonzero(starts[held]) + edges[k]).tolist()}), int(edges[k + 1])]
        ratios += [family_ratios(StreamingDetector(model, capped=False), values[a:b], hours[a:b])
                   for a, b in itertools.pairwise(at) if b > a]
    oof = np.vstack(ratios)
    level, factors = _choose(oof, budget)
    alarms = (oof > factors).any(axis=1)
    per_fold = [float(a.mean()) for a in np.split(alarms, edges[1:-1])]
    cal = Calibration(folds, budget, level, {name: float(f) for name, f in zip(names, factors, strict=True)},
                      float(alarms.mean()), float((oof > 1.0).any(axis=1).mean()), per_fold, n)
    log.info("calibrated on %d out-of-fold rows: level %.5f, false alarms %.4f (per fold %s)", n, level,
             cal.false_alarm_rate, ", ".join(f"{r:.4f}" for r in per_fold))
    return cal


def _choose(oof: np.ndarray, budget: float) -> tuple[float, np.ndarray]:
    """The lowest quantile level whose factors (never below 1) keep out-of-fold alarms within budget."""
    finite = np.where(np.isfinite(oof), oof, -np.inf)
    for level in np.linspace(1.0 - budget, 1.0, _LEVELS + 1):
        factors = np.maximum(np.quantile(finite, level, axis=0, method="higher"), 1.0)
        if (finite > factors).any(axis=1).mean() <= budget:
            return float(level), factors
    return 1.0, np.maximum(finite.max(axis=0), 1.0)


def apply(model: DetectorModel, cal: Calibration) -> None:
    """Widen the model's limits by the calibration's factors (in place)."""
    groups = len(model.meta["thresholds"])
    factors = list(cal.multipliers.values())
    model.meta["thresholds"] = [t * f for t, f in zip(model.meta["thresholds"], factors[:groups], strict=True)]
    bands, rate, baseline, frozen = factors[groups:]
    model.bands.margin = model.bands.margin * bands
    model.per_signal.rate_limit = model.per_signal.rate_limit * rate
    model.per_signal.tod_limit = model.per_signal.tod_limit * baseline
    model.per_signal.frozen_limit = np.ceil(model.per_signal.frozen_limit * frozen).astype(int)
    model.meta["calibration"] = cal.as_dict()
