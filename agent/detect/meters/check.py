"""The shape every meter check shares: learn residuals for a while, then judge each sample."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from agent.detect.meters.learning import LearningPeriod, Streak, ThinnedSample
from agent.detect.stream import Finding

log = logging.getLogger(__name__)

Detail = dict[str, float]


class LearnedCheck(ABC):
    """A check on rows of numbers: rows of the learning period fix its threshold (:meth:`fit`), then
    each row is judged (:meth:`judge`); a finding needs ``persist`` rows over the threshold in a row."""

    kind = ""
    #: repeat the last finding on a row that says nothing while the streak holds: only for a check
    #: whose rows come seldom (the energy check's windows), not one whose rows stop with the load
    carries_finding = False

    def __init__(self, name: str, signals: tuple[str, ...], width: int, learning: LearningPeriod,
                 persist: int) -> None:
        self.name, self.signals = name, signals
        self.learning = learning
        self.sample: ThinnedSample | None = ThinnedSample(width)
        self.threshold: float | None = None
        self.streak = Streak(persist)
        self.last: Finding | None = None

    @abstractmethod
    def row(self, ts_us: int, values: Any) -> tuple[float, ...] | None:
        """The numbers this check looks at, or None when this sample says nothing (a value missing, no load)."""

    @abstractmethod
    def fit(self, table: np.ndarray) -> float:
        """Learn from the rows of the learning period; return the threshold of :meth:`judge`'s score."""

    @abstractmethod
    def judge(self, row: tuple[float, ...]) -> tuple[float, Detail]:
        """(deviation in the threshold's unit, evidence: expected vs read) of one row."""

    @property
    def key(self) -> str:
        """This check among its meter's, in :meth:`learned` state."""
        return self.kind

    @property
    def is_learning(self) -> bool:
        """Still in its learning period."""
        return self.sample is not None

    @abstractmethod
    def fitted(self) -> dict[str, Any]:
        """What :meth:`fit` fixed besides the threshold (JSON-able), and what the rows keep learning (peaks)."""

    @abstractmethod
    def refit(self, fitted: dict[str, Any]) -> None:
        """Take up :meth:`fitted` again (before a restart); raise KeyError, TypeError or ValueError when unreadable."""

    def learned(self) -> dict[str, Any] | None:
        """What learning fixed, JSON-able and small; None while still learning (it then learns again)."""
        if self.threshold is None:
            return None
        return {"threshold": self.threshold, **self.fitted()}

    def restore(self, learned: dict[str, Any]) -> None:
        """Take up what :meth:`learned` gave (before a restart): no learning period."""
        self.refit(learned)
        self.threshold = float(learned["threshold"])
        self.sample = None

    def warn_on_scale(self, read: np.ndarray, expected: np.ndarray, hint: str) -> None:
        """Log once when what learning read is typically far from what it expected (half or twice):
        a unit or scale slip in the device map, which would widen the threshold until the check cannot fire."""
        usable = expected > 0
        if not usable.any():
            return
        ratio = float(np.median(read[usable] / expected[usable]))
        if not 0.5 <= ratio <= 2.0:
            log.warning("%s check of %s: read %.3g x what it expected while learning (%s); it can hardly fire "
                        "until the device map is fixed", self.kind, self.name, ratio, hint)

    def step(self, ts_us: int, values: Any) -> Finding | None:
        """The finding of this sample, once the deviation persisted; None while learning."""
        row = self.row(ts_us, values)
        if row is None:
            return self.last if self.carries_finding and self.streak.run else None
        if self.sample is not None:
            if not self.learning.over(ts_us):
                self.sample.add(*row)
                return None
            self.threshold = self.fit(self.sample.table())
            log.info("%s %s learned from %d samples: threshold %.4g", self.kind, self.name, len(self.sample),
                     self.threshold)
            self.sample = None
        assert self.threshold is not None
        deviation, detail = self.judge(row)
        score = abs(deviation) / self.threshold
        if not self.streak.update(score >= 1.0):
            self.last = None
            return None
        self.last = Finding(self.kind, self.name, self.signals, score,
                            {**{k: round(v, 4) for k, v in detail.items()}, "tolerance": round(self.threshold, 4)})
        return self.last
