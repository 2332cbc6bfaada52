"""Fit a detector model from rows of normal operation (no attack in them)."""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, replace

import numpy as np

from agent.detect import replay
from agent.detect.calibrate import apply, calibrate
from agent.detect.model import Bands, DetectorModel, PerSignal, Residuals, Tuning
from agent.detect.plant import PlantRelations
from agent.detect.replay import ReplayWatch
from agent.detect.stream import StreamingDetector, feature_rows

log = logging.getLogger(__name__)

RIDGE = 1e-3
#: bands are widened by this share of the signal's normal span (sampling overshoots setpoints)
BAND_MARGIN = 0.05


@dataclass
class _Design:
    """The training rows as feature vectors, and index helpers into them."""

    x: np.ndarray          # (rows, n) quantized values
    f: np.ndarray          # (rows, 2n + 5)
    signals: list[str]
    starts: np.ndarray     # (rows,) True where a row does not follow the one before (a gap)

    def at(self, name: str, lag: int = 0) -> int:
        return lag * len(self.signals) + self.signals.index(name)

    def hours_and_bias(self) -> list[int]:
        n2 = 2 * len(self.signals)
        return list(range(n2, n2 + 5))


def _fit_row(d: _Design, target: np.ndarray, columns: list[int], resolution: float) -> tuple[np.ndarray, float]:
    """Ridge fit of target (a combination of features) on ``columns``; the residual row and its scale."""
    a = d.f[:, columns]
    y = d.f @ target
    w = np.linalg.solve(a.T @ a + RIDGE * np.eye(len(columns)), a.T @ y)
    row = target.copy()
    row[columns] -= w
    residual = d.f @ row
    # a relation that is exact in the training data (one signal computed from another) still
    # gets a noise floor: 0.1 % of the target's variability, so transport rounding is not an attack
    floor = 1e-3 * float(y.std())
    return row, float(np.sqrt(residual.var() + resolution**2 / 12 + floor**2))


def _unit(d: _Design, *terms: tuple[str, int, float]) -> np.ndarray:
    v = np.zeros(d.f.shape[1])
    for name, lag, coef in terms:
        v[d.at(name, lag)] += coef
    return v


def _residuals(d: _Design, active: list[str], plant: PlantRelations, resolution: float) -> Residuals:
    names: list[str] = []
    kinds: list[str] = []
    involved: list[list[str]] = []
    rows: list[np.ndarray] = []
    scales: list[float] = []

    def add(kind: str, name: str, signals: list[str], target: np.ndarray, columns: list[int]) -> None:
        row, scale = _fit_row(d, target, columns, resolution)
        names.append(name)
        kinds.append(kind)
        involved.append(signals)
        rows.append(row)
        scales.append(scale)

    n = len(d.signals)
    for s in active:  # every signal predicted from all the others, now and one sample ago
        own = {d.at(s), d.at(s, 1)}
        add("signal", s, [s], _unit(d, (s, 0, 1.0)), [c for c in range(d.f.shape[1]) if c not in own])
    for t in plant.tanks:
        flows = [*t.inflows, *t.outflows, *(p.flow for p in t.pumps if p.flow)]
        if flows:  # mass balance: level change against the flows in and out over the interval
            cols = [d.at(f, lag) for f in flows for lag in (0, 1)] + d.hours_and_bias()
            add("mass_balance", f"mass balance {t.level}", [t.level, *flows],
                _unit(d, (t.level, 0, 1.0), (t.level, 1, -1.0)), cols)
        for p in t.pressures:  # a pressure downstream follows the tank level and its pumps
            cols = [d.at(t.level)] + [d.at(a.status) for a in t.pumps] + d.hours_and_bias()
            add("pressure", f"{p} vs {t.level}", [p, t.level], _unit(d, (p, 0, 1.0)), cols)
    log.debug("%d residuals over %d features", len(rows), n)
    return Residuals(names, kinds, involved, np.array(rows), np.array(scales))


def _bands(d: _Design, active: list[str], plant: PlantRelations, resolution: float) -> Bands:
    kinds: list[str] = []
    sig: list[int] = []
    status: list[int] = []
    low: list[tuple[float, float]] = []
    high: list[tuple[float, float]] = []
    margin: list[float] = []

    def add(kind: str, signal: str, by: str | None) -> None:
        v = d.x[:, d.signals.index(signal)]
        span = float(v.max() - v.min())
        if by is None:
            lo = hi = (float(v.min()),) * 2
            hi = (float(v.max()),) * 2
        else:
            on = d.x[:, d.signals.index(by)] > 0.5
            if on.all() or not on.any():
                return  # never switched in the training data: nothing learned about its states
            lo = (float(v[~on].min()), float(v[on].min()))
            hi = (float(v[~on].max()), float(v[on].max()))
        kinds.append(kind)
        sig.append(d.signals.index(signal))
        status.append(-1 if by is None else d.signals.index(by))
        low.append(lo)
        high.append(hi)
        margin.append(max(BAND_MARGIN * span, 2 * resolution))

    for s in active:
        add("range", s, None)
    for t in plant.tanks:
        for p in t.pumps:
            add("control", t.level, p.status)
    for a in plant.all_actuators():
        assert a.flow is not None
        add("actuator", a.flow, a.status)
    return Bands(kinds, np.array(sig, dtype=int), np.array(status, dtype=int),
                 np.array(low, dtype=float).reshape(-1, 2), np.array(high, dtype=float).reshape(-1, 2),
                 np.array(margin, dtype=float))


def _longest_constant_run(q: np.ndarray, starts: np.ndarray) -> int:
    """Longest stretch of samples equal to the one before (within a stretch without gaps)."""
    longest = run = 0
    for same in (q[1:] == q[:-1]) & ~starts[1:]:
        run = run + 1 if same else 0
        longest = max(longest, run)
    return longest


def _per_signal(d: _Design, hours: np.ndarray, active: list[str], resolution: float, daily: bool) -> PerSignal:
    n = len(d.signals)
    floor = max(resolution, 1e-9)
    rate = np.full(n, np.inf)
    frozen = np.zeros(n, dtype=int)
    bucket = np.floor(hours).astype(int) % 24
    median = np.zeros((24, n))
    scale = np.ones((24, n))
    limit = np.full(n, np.inf)
    for s in active:
        i = d.signals.index(s)
        v = d.x[:, i]
        rate[i] = 1.25 * float(np.abs(np.diff(v))[~d.starts[1:]].max(initial=0.0)) + 2 * floor
        q = np.round(v / floor).astype(np.int64)
        if len(np.unique(q)) > 10:  # a continuous signal: an exact freeze is suspicious past its normal longest
            longest = _longest_constant_run(q, d.starts)
            frozen[i] = max(2 * longest, longest + 3)
        for h in range(24):
            at = v[bucket == h] if (bucket == h).any() else v
            median[h, i] = np.median(at)
            scale[h, i] = 1.4826 * np.median(np.abs(at - median[h, i])) + floor
        if daily:
            z = np.abs(v - median[bucket, i]) / scale[bucket, i]
            limit[i] = 1.2 * float(z.max()) + 1.0
    return PerSignal(rate, frozen, median, scale, limit)


#: the shortest replay window: a window must hold 3 distinct values to count (see ReplayWatch)
MIN_REPLAY_WINDOW = 3
#: a signal's replay window is this many samples longer than the shortest that never repeats
REPLAY_MARGIN = 2


def _replay_candidates(d: _Design, active: list[str], tuning: Tuning) -> tuple[list[int], list[int]]:
    """Continuous signals whose normal history never repeats a window (so a repeat means replay),
    and each one's window: the shortest that never repeats in the training rows while the
    ``REPLAY_MARGIN`` windows just shorter never repeat either, else ``tuning.replay_window`` if that
    never repeats; a signal with neither is not watched. Each stretch between gaps is searched on
    its own. The shorter the window, the sooner a replay is seen."""
    q = {}
    for s in active:
        i = d.signals.index(s)
        values = np.round(d.x[:, i] / max(tuning.resolution, 1e-6)).astype(np.int64)
        if len(np.unique(values)) > 3:  # on/off signals repeat by nature
            q[i] = values.astype(float)
    if not q:
        return [], []
    longest = tuning.replay_window
    clean: dict[int, set[int]] = {i: set() for i in q}   # signal -> windows that never repeat
    columns = np.column_stack(list(q.values()))
    for w in range(min(MIN_REPLAY_WINDOW, longest), longest + 1):
        repeats = np.zeros(len(q), dtype=bool)
        for seg in _segments(d.starts):
            watches = [ReplayWatch(w, tuning.replay_history) for _ in q]
            repeats |= [bool(found) for found in replay.feed(watches, columns[seg])]
        clean.update({i: clean[i] | {w} for i, r in zip(q, repeats, strict=True) if not r})
    keep, windows = [], []
    for i in sorted(q):
        fits = [w for w in sorted(clean[i]) if all(w - m in clean[i] for m in range(1, REPLAY_MARGIN + 1))]
        fits = fits or [longest] * (longest in clean[i])
        if fits:
            keep.append(i)
            windows.append(fits[0])
    return keep, windows


def fit(values: np.ndarray, hours: np.ndarray, signals: list[str], plant: PlantRelations | None = None,
        tuning: Tuning | None = None, meta: dict[str, object] | None = None,
        starts: np.ndarray | None = None) -> DetectorModel:
    """Learn a model from normal rows (time order, regular sampling) and calibrate its thresholds.

    ``starts`` marks rows that do not follow the row before them (rows left out in between):
    no change, lag or run is taken across them. With ``tuning.calibration_folds`` > 1 the limits
    are then widened by cross-validation (:mod:`agent.detect.calibrate`).
    """
    starts = np.zeros(len(values), dtype=bool) if starts is None else np.asarray(starts, dtype=bool).copy()
    if len(starts):
        starts[0] = True
    plant = plant or PlantRelations()
    model = _fit_once(values, hours, signals, plant, tuning or Tuning(), meta, starts)
    folds = model.tuning.calibration_folds
    if folds > 1:
        def fit_block(rows: np.ndarray) -> DetectorModel:
            cut = starts[rows] | np.r_[True, ~rows[:-1]][rows]  # a held-out block leaves a gap
            return _fit_once(values[rows], hours[rows], signals, plant,
                             replace(model.tuning, calibration_folds=0), None, cut)

        cal = calibrate(values, hours, folds, model.tuning.false_alarm_budget, fit_block, starts)
        apply(model, cal)
    return model


def _fit_once(values: np.ndarray, hours: np.ndarray, signals: list[str], plant: PlantRelations, tuning: Tuning,
              meta: dict[str, object] | None, starts: np.ndarray) -> DetectorModel:
    """:func:`fit` without cross-validation: limits from the training rows alone."""
    unknown = sorted(plant.signals() - set(signals))
    if unknown:
        raise ValueError(f"relations name signals the data does not have: {', '.join(unknown)}")
    if len(values) < 48:
        raise ValueError(f"{len(values)} rows are too few to learn normal operation (need >= 48)")
    res = tuning.resolution
    x = np.round(values / res) * res if res > 0 else values.astype(float)
    prev = np.vstack((x[:1], x[:-1]))
    prev[starts] = x[starts]
    d = _Design(x, feature_rows(x, prev, np.asarray(hours, dtype=float)), signals, starts)
    active = [s for s in signals if x[:, signals.index(s)].std() > 5 * max(res, 1e-9)]
    if not active:
        raise ValueError(f"no signal varies by more than 5 x the resolution ({res:g}) in the training rows")
    replay_signals, replay_windows = _replay_candidates(d, active, tuning)
    model = DetectorModel(signals, _residuals(d, active, plant, res), _bands(d, active, plant, res),
                          _per_signal(d, hours, active, res, tuning.daily_baseline),
                          replay_signals, tuning, dict(meta or {}), replay_windows)
    groups = np.ones(1 + int(sum(k != "signal" for k in model.residuals.kinds)))
    hours = np.asarray(hours, dtype=float)
    scores = np.vstack([StreamingDetector(model, groups, capped=False).raw_scores(x[seg], hours[seg])[0]
                        for seg in _segments(starts)])
    thresholds = tuning.headroom * np.concatenate((
        np.quantile(scores[:, :1], tuning.quantile, axis=0),
        np.quantile(scores[:, 1:], tuning.relation_quantile, axis=0)))
    model.meta.update(thresholds=[float(t) for t in thresholds], rows=len(x), active_signals=active)
    return model


def _segments(starts: np.ndarray) -> list[slice]:
    """The stretches of rows without a gap."""
    at = [*np.flatnonzero(starts).tolist(), len(starts)]
    return [slice(a, b) for a, b in itertools.pairwise(at) if b > a]
