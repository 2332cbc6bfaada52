"""The streaming detector: rows of signals in, a verdict per row out, in constant time per row.

Rows may come one at a time (:meth:`StreamingDetector.step`, the agent's path) or as a batch
(:meth:`StreamingDetector.step_many`: evaluation, training, catching up); both give the same
verdicts and leave the same state, because ``step`` is a batch of one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from agent.detect import replay
from agent.detect.model import DetectorModel
from agent.detect.replay import ReplayWatch


def hour_features(hour: float) -> np.ndarray:
    """Two daily harmonics: the time-of-day part of the feature vector."""
    a = 2 * np.pi * hour / 24
    return np.array([np.sin(a), np.cos(a), np.sin(2 * a), np.cos(2 * a)])


def feature_vector(x: np.ndarray, prev: np.ndarray, hour: float) -> np.ndarray:
    """``[x(t), x(t-1), hour harmonics, 1]`` as the residual matrix expects."""
    return np.concatenate((x, prev, hour_features(hour), (1.0,)))


def feature_rows(x: np.ndarray, prev: np.ndarray, hours: np.ndarray) -> np.ndarray:
    """:func:`feature_vector` of every row (harmonics computed once per distinct hour, as one row would)."""
    if len(hours) == 1:
        harmonics = hour_features(float(hours[0]))[None, :]
    else:
        distinct, at = np.unique(hours, return_inverse=True)
        harmonics = np.array([hour_features(float(h)) for h in distinct])[at.reshape(-1)]
    return np.hstack((x, prev, harmonics, np.ones((len(x), 1))))


def run_lengths(hit: np.ndarray, carry: np.ndarray) -> np.ndarray:
    """Consecutive hits ending at each row (rows x columns), continuing the runs ``carry`` had before."""
    if len(hit) == 1:  # one row (the agent's step): the same answer without the scans
        return np.where(hit, carry[None, :] + 1, 0)
    runs = np.zeros(hit.shape, dtype=int)
    cols = np.flatnonzero(hit.any(axis=0))                 # columns never hit are 0 throughout
    h = np.ascontiguousarray(hit[:, cols].T)               # one column per row: the scans run along memory
    count = np.cumsum(h, axis=1)
    runs[:, cols] = (count - np.maximum.accumulate(np.where(h, -carry[cols, None], count), axis=1)).T
    return runs


@dataclass(frozen=True)
class Finding:
    """One detector that fired on this row, with its evidence."""

    kind: str            # 'residual', 'mass_balance', 'pressure', 'control', 'actuator', 'range', 'replay'
    name: str
    signals: tuple[str, ...]
    score: float         # >= 1 means over its threshold
    detail: dict[str, float] = field(default_factory=dict)


class Verdict(NamedTuple):
    """The detector's view of one row: ``alarm`` when any finding is over its threshold.

    A named tuple: a batch makes one per row, and a tuple is made several times faster than a
    frozen dataclass.
    """

    alarm: bool
    score: float
    findings: tuple[Finding, ...] = ()




@dataclass
class RowScores:
    """What the detectors computed for a batch of rows; findings are built only for rows that alarm."""

    x: np.ndarray            # (T, n) values, gaps filled
    hour: np.ndarray         # (T,) hour-of-day bucket
    scored: np.ndarray       # (T,) row has a previous row (rate and freeze apply)
    tod: np.ndarray          # (T, n) distance from the hour-of-day baseline / limit
    rate: np.ndarray         # (T, n) change from the previous row / limit
    delta: np.ndarray        # (T, n) change from the previous row
    frozen: np.ndarray       # (T, n) samples unchanged
    frozen_hit: np.ndarray   # (T, n)
    normalized: np.ndarray   # (T, groups) smoothed scores / thresholds
    z: np.ndarray            # (T, residuals)
    band: np.ndarray         # (T, bands) excess / margin
    band_state: np.ndarray   # (T, bands) status the band applied for
    band_hit: np.ndarray     # (T, bands)
    replay: dict[int, list[tuple[int, int]]]  # row -> [(signal, samples back)]


class StreamingDetector:
    """Scores rows in time order; keeps only the state a row needs (previous row, EWMA, runs, windows)."""

    def __init__(self, model: DetectorModel, thresholds: np.ndarray | None = None, capped: bool = True) -> None:
        """``capped=False`` leaves residual scores uncapped (:attr:`Tuning.score_cap`): what training
        and calibration measure, where the cap's own limit is not known yet or is being chosen."""
        self.model = model
        res = model.residuals
        self._signal_rows = np.array([k == "signal" for k in res.kinds], dtype=bool)
        self._relation_rows = np.flatnonzero(~self._signal_rows)
        signal_rows = int(self._signal_rows.sum())
        #: the cross-signal score is a mean, taken as a dot product so a batch sums in the same order
        self._mean_weights = np.full((signal_rows, 1), 1.0 / max(signal_rows, 1))
        #: score groups: 0 = the cross-signal model (mean z^2), then one per relation residual
        self.group_names = ["cross-signal model"] + [res.names[i] for i in self._relation_rows]
        self.thresholds = thresholds if thresholds is not None else np.asarray(
            model.meta.get("thresholds", np.ones(len(self.group_names))), dtype=float)
        self._inv_scale = 1.0 / res.scale
        cap = float(model.tuning.score_cap)
        #: a capped row's own share of the average falls below its limit within log(cap) / log(1 / (1 - alpha))
        #: rows; a limit of 0 (or a cap of 0, inf or NaN) leaves that group uncapped
        self._cap = (np.where(self.thresholds > 0, self.thresholds * cap, np.inf)
                     if capped and 0 < cap < np.inf else None)
        self._prev: np.ndarray | None = None
        self._ewma = np.zeros(len(self.group_names))
        self._band_run = np.zeros(len(model.bands.kinds), dtype=int)
        t = model.tuning
        self._replay = {i: ReplayWatch(model.replay_window(k), t.replay_history)
                        for k, i in enumerate(model.replay_signals)}
        self._rows = 0
        self._frozen_run = np.zeros(len(model.signals), dtype=int)
        self._checked_frozen = model.per_signal.frozen_limit > 0

    def step(self, x: np.ndarray, hour: float) -> Verdict:
        """Score one row (values in the model's signal order; NaN or inf = missing, held from before)."""
        return self.step_many(np.asarray(x, dtype=float)[None, :], np.array([hour], dtype=float))[0]

    def step_many(self, x: np.ndarray, hours: np.ndarray) -> list[Verdict]:
        """Score rows in time order: the verdicts ``step`` would give row by row, and the same state after."""
        x = np.asarray(x, dtype=float)
        hours = np.asarray(hours, dtype=float)
        if not len(x):
            return []
        if not np.isfinite(hours).all():
            raise ValueError("hour of day must be a finite number")
        rows = self._compute(self._fill(x), hours)
        quiet = rows.normalized.max(axis=1).tolist() if rows.normalized.shape[1] else [0.0] * len(x)
        verdicts = [Verdict(False, s) for s in quiet]
        for t, findings in self._findings(rows).items():
            verdicts[t] = Verdict(True, max(f.score for f in findings), tuple(findings))
        return verdicts

    def inspect(self, x: np.ndarray, hours: np.ndarray) -> RowScores:
        """Score rows like :meth:`step_many` (same state after), returning every detector's numbers
        instead of verdicts: what threshold calibration looks at."""
        return self._compute(self._fill(np.asarray(x, dtype=float)), np.asarray(hours, dtype=float))

    def raw_scores(self, x: np.ndarray, hours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Smoothed group scores (not yet divided by thresholds) and residual z-scores of rows.

        A row's group score enters the average at most ``score_cap`` times its limit: one huge
        row would otherwise keep the average above the limit for many quiet rows after it.

        The very first row only primes the lag: its own lag features would be made up, so its
        z-scores are 0 and the smoothed scores stay where they were.
        """
        first = self._prev is None
        prev = np.vstack(((x[0] if self._prev is None else self._prev)[None, :], x[:-1]))
        self._prev = x[-1].copy()
        z = np.matmul(self.model.residuals.matrix, feature_rows(x, prev, hours)[:, :, None])[:, :, 0]
        z *= self._inv_scale
        if first:
            z[0] = 0.0
        z2 = z * z
        mean = np.matmul(np.ascontiguousarray(z2[:, self._signal_rows])[:, None, :], self._mean_weights)[:, 0, :]
        stacked = np.hstack((mean, z2[:, self._relation_rows]))
        if self._cap is not None:
            stacked = np.minimum(stacked, self._cap)
        groups = stacked.T.tolist()
        a = self.model.tuning.alpha
        b = 1 - a
        skip = 1 if first else 0
        restart = skip + (self._rows == 0)  # the first scored row starts the average
        smoothed = []
        for g, column in enumerate(groups):
            head = [float(self._ewma[g])] * skip + column[skip:restart]
            e = head[-1] if head else float(self._ewma[g])
            smoothed.append(head + [e := a * v + b * e for v in column[restart:]])
        ewma = np.array(smoothed, dtype=float).T.reshape(len(x), len(groups))
        self._ewma = ewma[-1].copy()
        self._rows += len(x) - skip
        return ewma, z

    def _fill(self, x: np.ndarray) -> np.ndarray:
        """Missing values (NaN, inf) take the last known value of their signal; 0 before any."""
        missing = ~np.isfinite(x)
        if not missing.any():
            return x
        seed = self._prev if self._prev is not None else np.zeros(x.shape[1])
        known = np.vstack((seed[None, :], np.where(missing, np.nan, x)))
        at = np.where(np.isnan(known), 0, np.arange(len(known))[:, None])
        last = np.maximum.accumulate(at, axis=0)
        return known[last, np.arange(x.shape[1])[None, :]][1:]

    def _compute(self, x: np.ndarray, hours: np.ndarray) -> RowScores:
        ps = self.model.per_signal
        b = self.model.bands
        scored = np.ones(len(x), dtype=bool)
        scored[0] = self._prev is not None
        prev = np.vstack(((x[0] if self._prev is None else self._prev)[None, :], x[:-1]))
        hour = np.trunc(hours).astype(np.int64) % 24
        delta = x - prev
        same = (x == prev) & scored[:, None]
        frozen = run_lengths(same, self._frozen_run)
        self._frozen_run = frozen[-1].copy()
        state = np.where(b.status >= 0, x[:, np.maximum(b.status, 0)] > 0.5, False).astype(int)
        value = x[:, b.signal]
        band = np.maximum(np.where(state == 1, b.low[:, 1], b.low[:, 0]) - value,
                          value - np.where(state == 1, b.high[:, 1], b.high[:, 0])) / b.margin
        band_run = run_lengths(band > 1.0, self._band_run)
        self._band_run = band_run[-1].copy()
        replay = self._replays(x)
        smoothed, z = self.raw_scores(x, hours)
        return RowScores(x=x, hour=hour, scored=scored,
                     tod=np.abs(x - ps.tod_median[hour]) / ps.tod_scale[hour] / ps.tod_limit,
                     rate=np.abs(delta) / ps.rate_limit, delta=delta, frozen=frozen,
                     frozen_hit=self._checked_frozen & (frozen >= ps.frozen_limit),
                     normalized=smoothed / self.thresholds, z=z, band=band, band_state=state,
                     band_hit=band_run >= self.model.tuning.band_persist, replay=replay)

    def _replays(self, x: np.ndarray) -> dict[int, list[tuple[int, int]]]:
        """Row -> [(signal, samples back)] of every replayed window ending in these rows."""
        res = self.model.tuning.resolution or 1e-6
        found: dict[int, list[tuple[int, int]]] = {}
        signals = list(self._replay)
        for i, repeats in zip(signals, replay.feed(list(self._replay.values()), x[:, signals] / res), strict=True):
            for t, back in repeats:
                found.setdefault(t, []).append((i, back))
        return dict(sorted(found.items()))

    def _findings(self, r: RowScores) -> dict[int, list[Finding]]:
        """The findings of every row that has any, kind by kind (each row's list in step's order:
        per signal, residuals, bands, replay; signals in model order)."""
        ps = self.model.per_signal
        names = self.model.signals
        res = self.model.residuals
        b = self.model.bands
        out: dict[int, list[Finding]] = {}

        def add(t: int, finding: Finding) -> None:
            out.setdefault(t, []).append(finding)

        def hits(mask: np.ndarray) -> list[list[int]]:
            return np.argwhere(mask).tolist() if mask.any() else []

        for t, i in hits(r.tod > 1.0):
            add(t, Finding("baseline", f"{names[i]} vs its hour-of-day baseline", (names[i],), float(r.tod[t, i]),
                           {"value": round(float(r.x[t, i]), 3),
                            "usual": round(float(ps.tod_median[r.hour[t], i]), 3)}))
        for t, i in hits((r.rate > 1.0) & r.scored[:, None]):
            add(t, Finding("rate", f"{names[i]} rate of change", (names[i],), float(r.rate[t, i]),
                           {"change": round(float(r.delta[t, i]), 3), "limit": round(float(ps.rate_limit[i]), 3)}))
        for t, i in hits(r.frozen_hit & r.scored[:, None]):
            add(t, Finding("frozen", f"{names[i]} frozen", (names[i],), float(r.frozen[t, i] / ps.frozen_limit[i]),
                           {"samples": int(r.frozen[t, i]), "limit": int(ps.frozen_limit[i])}))
        cross = np.flatnonzero(r.normalized[:, 0] >= 1.0) if r.normalized.shape[1] else np.zeros(0, dtype=int)
        if len(cross):
            rows = np.flatnonzero(self._signal_rows)
            tops = rows[np.argsort(-np.abs(r.z[cross][:, rows]), axis=1)[:, :3]]
            for t, top in zip(cross.tolist(), tops.tolist(), strict=True):
                add(t, Finding("residual", self.group_names[0], tuple(res.names[i] for i in top),
                               float(r.normalized[t, 0]), {res.names[i]: round(float(r.z[t, i]), 2) for i in top}))
        for t, g in hits(r.normalized[:, 1:] >= 1.0):
            i = int(self._relation_rows[g])
            add(t, Finding(res.kinds[i], res.names[i], tuple(res.signals[i]), float(r.normalized[t, g + 1]),
                           {"z": round(float(r.z[t, i]), 2)}))
        for t, i in hits(r.band_hit):
            sig = names[int(b.signal[i])]
            pair = (sig,) if b.status[i] < 0 else (names[int(b.status[i])], sig)
            state = int(r.band_state[t, i])
            add(t, Finding(b.kinds[i], " vs ".join(pair), pair, float(r.band[t, i]), {
                "value": round(float(r.x[t, b.signal[i]]), 3), "low": round(float(b.low[i, state]), 3),
                "high": round(float(b.high[i, state]), 3), "state": state}))
        for t, found in r.replay.items():
            for i, back in found:
                window = self._replay[i].window
                add(t, Finding("replay", f"{names[i]} replayed", (names[i],), 1.0 + window / 10,
                               {"samples_back": back, "window": window}))
        return out
