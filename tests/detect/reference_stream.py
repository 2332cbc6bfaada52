"""The streaming detector's semantics, row by row: the reference ``step_many`` must match exactly.

This is the detector as it was before batching (agent/detect/stream.py at 34f5289), kept as
plain per-row code. One change: the cross-signal mean is a dot product, as the detector now
takes it (a batch cannot reproduce numpy's pairwise sum row by row).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from agent.detect.model import DetectorModel
from agent.detect.stream import Finding, Verdict, feature_vector


class _ReplayWatch:
    """Finds a window of one signal's quantized values that repeats an earlier window exactly."""

    def __init__(self, window: int, history: int) -> None:
        self.window, self.history = window, history
        self.recent: deque[int] = deque(maxlen=window)
        self.seen: dict[tuple[int, ...], int] = {}
        self.order: deque[tuple[tuple[int, ...], int]] = deque()
        self.t = 0

    def step(self, q: int) -> int | None:
        """Samples back to the earlier copy of the current window, or None."""
        self.t += 1
        self.recent.append(q)
        if len(self.recent) < self.window:
            return None
        key = tuple(self.recent)
        while self.order and self.order[0][1] < self.t - self.history:
            old, at = self.order.popleft()
            if self.seen.get(old) == at:
                del self.seen[old]
        earlier = self.seen.get(key)
        self.seen[key] = self.t
        self.order.append((key, self.t))
        if earlier is None or self.t - earlier < self.window or len(set(key)) < 3:
            return None  # overlapping or flat windows repeat naturally: that is the stuck check's job
        return self.t - earlier


class StreamingDetector:
    """Scores rows in time order; keeps only the state a row needs (previous row, EWMA, windows)."""

    def __init__(self, model: DetectorModel, thresholds: np.ndarray | None = None) -> None:
        self.model = model
        res = model.residuals
        self._signal_rows = np.array([k == "signal" for k in res.kinds], dtype=bool)
        self._relation_rows = np.flatnonzero(~self._signal_rows)
        #: score groups: 0 = the cross-signal model (mean z^2), then one per relation residual
        self.group_names = ["cross-signal model"] + [res.names[i] for i in self._relation_rows]
        self.thresholds = thresholds if thresholds is not None else np.asarray(
            model.meta.get("thresholds", np.ones(len(self.group_names))), dtype=float)
        self._inv_scale = 1.0 / res.scale
        self._prev: np.ndarray | None = None
        self._ewma = np.zeros(len(self.group_names))
        self._band_run = np.zeros(len(model.bands.kinds), dtype=int)
        t = model.tuning
        # per-signal windows: added after batching, to keep the reference current
        self._replay = {i: _ReplayWatch(model.replay_window(k), t.replay_history)
                        for k, i in enumerate(model.replay_signals)}
        self._rows = 0
        self._frozen_run = np.zeros(len(model.signals), dtype=int)
        self._checked_frozen = model.per_signal.frozen_limit > 0

    def raw_scores(self, x: np.ndarray, hour: float) -> tuple[np.ndarray, np.ndarray]:
        """Smoothed group scores (not yet divided by thresholds) and this row's residual z-scores.

        The first row only primes the lag: its own lag features would be made up.
        """
        prev = x if self._prev is None else self._prev
        first, self._prev = self._prev is None, x
        z = (self.model.residuals.matrix @ feature_vector(x, prev, hour)) * self._inv_scale
        if first:
            return self._ewma, np.zeros_like(z)
        z2 = z * z
        mean = z2[self._signal_rows][None, :] @ np.full((int(self._signal_rows.sum()), 1), 1.0 / max(
            int(self._signal_rows.sum()), 1))
        groups = np.concatenate(((float(mean[0, 0]) if self._signal_rows.any() else 0.0,),
                                 z2[self._relation_rows]))
        if self.model.tuning.score_cap > 0:  # added with the cap (after batching), to keep the reference current
            groups = np.minimum(groups, self.thresholds * self.model.tuning.score_cap)
        a = self.model.tuning.alpha
        self._ewma = groups if not self._rows else a * groups + (1 - a) * self._ewma
        self._rows += 1
        return self._ewma, z

    def step(self, x: np.ndarray, hour: float) -> Verdict:
        """Score one row (values in the model's signal order; NaN = missing, held from before)."""
        if np.isnan(x).any():
            x = np.where(np.isnan(x), self._prev if self._prev is not None else 0.0, x)
        findings = self._per_signal_findings(x, hour)
        smoothed, z = self.raw_scores(x, hour)
        findings += self._residual_findings(smoothed / self.thresholds, z)
        findings += self._band_findings(x)
        findings += self._replay_findings(x)
        score = max((f.score for f in findings), default=float((smoothed / self.thresholds).max()))
        return Verdict(bool(findings), score, tuple(findings))

    def _per_signal_findings(self, x: np.ndarray, hour: float) -> list[Finding]:
        """Rate of change, exact freeze and time-of-day baseline, each against its learned limit."""
        ps = self.model.per_signal
        names = self.model.signals
        out: list[Finding] = []
        h = int(hour) % 24
        tod = np.abs(x - ps.tod_median[h]) / ps.tod_scale[h] / ps.tod_limit
        for i in np.flatnonzero(tod > 1.0):
            out.append(Finding("baseline", f"{names[i]} vs its hour-of-day baseline", (names[i],), float(tod[i]),
                               {"value": round(float(x[i]), 3), "usual": round(float(ps.tod_median[h, i]), 3)}))
        if self._prev is None:
            return out
        step = np.abs(x - self._prev) / ps.rate_limit
        for i in np.flatnonzero(step > 1.0):
            out.append(Finding("rate", f"{names[i]} rate of change", (names[i],), float(step[i]),
                               {"change": round(float(x[i] - self._prev[i]), 3),
                                "limit": round(float(ps.rate_limit[i]), 3)}))
        self._frozen_run = np.where(x == self._prev, self._frozen_run + 1, 0)
        for i in np.flatnonzero(self._checked_frozen & (self._frozen_run >= ps.frozen_limit)):
            out.append(Finding("frozen", f"{names[i]} frozen", (names[i],),
                               float(self._frozen_run[i] / ps.frozen_limit[i]),
                               {"samples": int(self._frozen_run[i]), "limit": int(ps.frozen_limit[i])}))
        return out

    def _residual_findings(self, normalized: np.ndarray, z: np.ndarray) -> list[Finding]:
        res = self.model.residuals
        out: list[Finding] = []
        if normalized[0] >= 1.0:
            rows = np.flatnonzero(self._signal_rows)
            top = rows[np.argsort(-np.abs(z[rows]))[:3]]
            out.append(Finding("residual", self.group_names[0], tuple(res.names[i] for i in top),
                               float(normalized[0]), {res.names[i]: round(float(z[i]), 2) for i in top}))
        for g, i in enumerate(self._relation_rows, start=1):
            if normalized[g] >= 1.0:
                out.append(Finding(res.kinds[i], res.names[i], tuple(res.signals[i]), float(normalized[g]),
                                   {"z": round(float(z[i]), 2)}))
        return out

    def _band_findings(self, x: np.ndarray) -> list[Finding]:
        b = self.model.bands
        if not len(b.kinds):
            return []
        state = np.where(b.status >= 0, (x[np.maximum(b.status, 0)] > 0.5).astype(int), 0)
        rows = np.arange(len(b.kinds))
        v = x[b.signal]
        excess = np.maximum(b.low[rows, state] - v, v - b.high[rows, state]) / b.margin
        over = excess > 1.0
        self._band_run = np.where(over, self._band_run + 1, 0)
        out: list[Finding] = []
        for i in np.flatnonzero(self._band_run >= self.model.tuning.band_persist):
            sig = self.model.signals[int(b.signal[i])]
            names = (sig,) if b.status[i] < 0 else (self.model.signals[int(b.status[i])], sig)
            out.append(Finding(b.kinds[i], " vs ".join(names), names, float(excess[i]), {
                "value": round(float(v[i]), 3), "low": round(float(b.low[i, state[i]]), 3),
                "high": round(float(b.high[i, state[i]]), 3), "state": int(state[i])}))
        return out

    def _replay_findings(self, x: np.ndarray) -> list[Finding]:
        out: list[Finding] = []
        res = self.model.tuning.resolution or 1e-6
        for i, watch in self._replay.items():
            back = watch.step(round(float(x[i]) / res))
            if back is not None:
                sig = self.model.signals[i]
                out.append(Finding("replay", f"{sig} replayed", (sig,), 1.0 + watch.window / 10,
                                   {"samples_back": back, "window": watch.window}))
        return out
