"""BATADAL scores: time to detection per attack, TPR/TNR, S = 0.5*S_TTD + 0.5*S_CLF."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from agent.detect.dataset import UNLABELLED


@dataclass
class Attack:
    """One labelled attack: rows ``start..end`` (inclusive) and when the alarm first rang."""

    start: int
    end: int
    detected_after: int | None  # rows from the first attack row to the first alarm within it

    @property
    def duration(self) -> int:
        return self.end - self.start + 1


#: the figures that need attack rows to mean anything (TPR 0 and S 0.25 on a file without attacks)
ATTACK_FIGURES = ("tpr", "precision", "f1", "s_ttd", "s_clf", "s")


@dataclass
class Scores:
    """The competition's scores plus the usual classification figures."""

    tp: int
    tn: int
    fp: int
    fn: int
    tpr: float
    tnr: float
    precision: float
    f1: float
    s_ttd: float
    s_clf: float
    s: float
    attacks: list[Attack] = field(default_factory=list)

    @property
    def attack_rows(self) -> int:
        """Scored rows labelled as attacks; without any, only the false-alarm figures mean something."""
        return self.tp + self.fn

    @property
    def false_alarms_per_1000(self) -> float:
        """Alarms per 1,000 scored normal rows."""
        return 1000 * self.fp / (self.fp + self.tn) if self.fp + self.tn else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The figures by name; those about attacks are None when no row is an attack."""
        d = asdict(self)
        if not self.attack_rows:
            d.update(dict.fromkeys(ATTACK_FIGURES))
        return d


def attacks_of(labels: np.ndarray) -> list[tuple[int, int]]:
    """Runs of consecutive attack rows as (first, last) indices."""
    runs: list[tuple[int, int]] = []
    start = None
    for i, v in enumerate(np.append(labels, 0)):
        if v == 1 and start is None:
            start = i
        elif v != 1 and start is not None:
            runs.append((start, i - 1))
            start = None
    return runs


def score(alarm: np.ndarray, labels: np.ndarray) -> Scores:
    """Score alarms (0/1 per row) against labels (1, 0, or -999 = not scored)."""
    alarm = np.asarray(alarm).astype(bool)
    scored = labels != UNLABELLED
    a, t = alarm[scored], labels[scored] == 1
    tp, tn = int((a & t).sum()), int((~a & ~t).sum())
    fp, fn = int((a & ~t).sum()), int((~a & t).sum())
    tpr = tp / (tp + fn) if tp + fn else 0.0
    tnr = tn / (tn + fp) if tn + fp else 0.0
    precision = tp / (tp + fp) if tp + fp else 0.0
    f1 = 2 * precision * tpr / (precision + tpr) if precision + tpr else 0.0
    attacks = []
    for start, end in attacks_of(labels):
        hits = np.flatnonzero(alarm[start:end + 1])
        attacks.append(Attack(start, end, int(hits[0]) if len(hits) else None))
    s_ttd = 1 - float(np.mean([(x.detected_after if x.detected_after is not None else x.duration) / x.duration
                               for x in attacks])) if attacks else 0.0
    s_clf = (tpr + tnr) / 2
    return Scores(tp, tn, fp, fn, tpr, tnr, precision, f1, s_ttd, s_clf, 0.5 * s_ttd + 0.5 * s_clf, attacks)
