"""``hacksky-edge train`` / ``evaluate``: fit on normal rows, stream labelled rows, score."""

from __future__ import annotations

import csv
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from agent.configload import ConfigError, parse_document, validation_issues
from agent.detect.dataset import Dataset, load_csv
from agent.detect.model import DetectorModel, Tuning
from agent.detect.plant import PlantRelations
from agent.detect.scoring import Scores, score
from agent.detect.stream import StreamingDetector, Verdict
from agent.detect.train import fit

#: The C-Town relations shipped with the vendored BATADAL data, used when a file has its columns.
CTOWN_RELATIONS = Path(__file__).resolve().parents[2] / "data" / "batadal" / "ctown.yaml"
#: what a relations file holds, for error messages and notes
RELATIONS_FORMAT = ("tanks: each a level, pumps with status and flow, inflows, outflows, pressures; "
                    "actuators: status and flow; e.g. data/batadal/ctown.yaml")


def load_relations(path: str | Path | None, signals: list[str]) -> PlantRelations:
    """Relations from a YAML file's ``plant:`` section; none given: C-Town's for BATADAL columns."""
    if path is None:
        if CTOWN_RELATIONS.exists() and {"L_T1", "S_PU1", "P_J269"} <= set(signals):
            path = CTOWN_RELATIONS
        else:
            return PlantRelations()
    doc = parse_document(Path(path).read_text(encoding="utf-8"), str(path))
    if doc.issues:  # a key written twice, a ${VAR} not set
        raise ConfigError(doc.issues)
    if not isinstance(doc.data, dict) or "plant" not in doc.data:
        raise ConfigError([doc.located((), f"no plant: section; a relations file is a mapping with one "
                                           f"({RELATIONS_FORMAT})")])
    try:
        return PlantRelations.model_validate({} if doc.data["plant"] is None else doc.data["plant"])
    except ValidationError as exc:
        raise ConfigError(validation_issues(doc, exc, PlantRelations, ("plant",))) from None


#: one training file, or several (their normal rows joined in the order given)
Paths = str | Path | Sequence[str | Path]


def _paths(paths: Paths) -> list[Path]:
    return [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]


def names(paths: Paths) -> str:
    """The files' names, for reports: ``a.csv + b.csv``."""
    return " + ".join(p.name for p in _paths(paths))


def normal_rows(paths: Paths) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Signals, values, hours and gap marks of the normal rows of one or more CSVs.

    Rows labelled as attacks (or unlabelled) are left out; each file's first row and the first
    row after a left-out stretch start afresh (no lag or change is taken across them). The first
    file's columns are the signals; a later file must have them all, in any order.
    """
    files = _paths(paths)
    if not files:
        raise ValueError("no training file")
    first = load_csv(files[0])
    signals = first.signals
    values, hours, starts = [], [], []
    for data in (first, *(load_csv(f) for f in files[1:])):
        rows = np.ones(len(data.values), dtype=bool) if data.labels is None else data.labels == 0
        values.append(data.select(signals)[rows])
        hours.append(data.hours[rows])
        starts.append(np.r_[True, ~rows[:-1]][rows])
    return signals, np.vstack(values), np.concatenate(hours), np.concatenate(starts)


def train_from_csv(paths: Paths, relations: str | Path | None = None, tuning: Tuning | None = None
                   ) -> DetectorModel:
    """Fit a model on the normal rows of one CSV, or of several joined (see :func:`normal_rows`)."""
    signals, values, hours, starts = normal_rows(paths)
    plant = load_relations(relations, signals)
    return fit(values, hours, signals, plant, tuning,
               meta={"trained_on": names(paths), "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                     "relations": str(relations or (CTOWN_RELATIONS if plant.tanks else ""))}, starts=starts)


def stream(model: DetectorModel, data: Dataset) -> list[Verdict]:
    """Feed the rows in time order to a fresh streaming detector (in one batch: the same verdicts as row by row)."""
    return StreamingDetector(model).step_many(data.select(model.signals), data.hours)


@dataclass
class Evaluation:
    """An evaluation run: the scores and what is needed to print or re-score them."""

    train: str
    test: str
    scores: Scores
    rows: int
    seconds: float
    data: Dataset
    verdicts: list[Verdict]

    def as_dict(self) -> dict[str, Any]:
        d = self.scores.as_dict()
        for a in d["attacks"]:
            a["start_time"] = self.data.times[a["start"]].strftime("%Y-%m-%d %H:%M")
            a["end_time"] = self.data.times[a["end"]].strftime("%Y-%m-%d %H:%M")
            a["duration"] = a["end"] - a["start"] + 1
            a["detected_by"] = self._first_finding(a)
        return {"train": self.train, "test": self.test, "rows": self.rows,
                "rows_per_second": round(self.rows / self.seconds) if self.seconds else None, **d}

    def _first_finding(self, attack: dict[str, Any]) -> list[str]:
        if attack["detected_after"] is None:
            return []
        verdict = self.verdicts[attack["start"] + attack["detected_after"]]
        return [f"{f.kind}: {f.name}" for f in verdict.findings]

    def write_predictions(self, path: str | Path) -> None:
        """One row per input row: DATETIME, ATT_FLAG, alarm 0/1, score."""
        labels = self.data.labels if self.data.labels is not None else np.zeros(self.rows, dtype=int)
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["DATETIME", "ATT_FLAG", "alarm", "score"])
            for t, label, v in zip(self.data.times, labels, self.verdicts, strict=True):
                w.writerow([t.strftime("%d/%m/%y %H"), int(label), int(v.alarm), f"{v.score:.4f}"])


def evaluate(train: Paths | None, test: str | Path, relations: str | Path | None = None,
             model: DetectorModel | None = None) -> Evaluation:
    """Train on ``train``'s normal rows (unless a model is given), stream ``test`` and score it against ATT_FLAG."""
    data = load_csv(test)
    if data.labels is None:
        raise ValueError(f"{test}: no ATT_FLAG column to score against")
    if model is None:
        if train is None:
            raise ValueError("evaluate needs training files or a model")
        model = train_from_csv(train, relations)
    started = time.perf_counter()
    verdicts = stream(model, data)
    seconds = time.perf_counter() - started
    alarm = np.array([v.alarm for v in verdicts])
    trained = names(train) if train is not None else str(model.meta.get("trained_on", "a saved model"))
    return Evaluation(trained, str(test), score(alarm, data.labels), len(verdicts), seconds, data, verdicts)


def report(ev: Evaluation) -> str:
    """The evaluation as a readable table."""
    d = ev.as_dict()
    lines = [f"trained on {ev.train}, tested on {Path(ev.test).name}: {ev.rows} rows "
             f"({d['rows_per_second']} rows/s through the streaming detector)", ""]
    if not ev.scores.attack_rows:  # TPR, S and the attack table would mean nothing
        lines += [f"no attack rows in {Path(ev.test).name} (ATT_FLAG is never 1): false alarms only, no TPR or S",
                  "", f"TNR {d['tnr']:.3f}  false alarms per 1,000 rows {ev.scores.false_alarms_per_1000:.1f}  "
                      f"(FP {d['fp']}, TN {d['tn']})"]
        return "\n".join(lines) + "\n"
    lines += ["| attack | start | end | hours | detected after (h) | first evidence |",
             "|---|---|---|---|---|---|"]
    for i, a in enumerate(d["attacks"], start=1):
        after = "missed" if a["detected_after"] is None else str(a["detected_after"])
        lines.append(f"| {i} | {a['start_time']} | {a['end_time']} | {a['duration']} | {after} | "
                     f"{'; '.join(a['detected_by'][:2])} |")
    lines += ["", f"TPR {d['tpr']:.3f}  TNR {d['tnr']:.3f}  precision {d['precision']:.3f}  F1 {d['f1']:.3f}  "
              f"(TP {d['tp']}, FP {d['fp']}, TN {d['tn']}, FN {d['fn']})",
              f"S_TTD {d['s_ttd']:.3f}  S_CLF {d['s_clf']:.3f}  S {d['s']:.3f}"]
    return "\n".join(lines) + "\n"


#: the procedures the cross-file table compares: how each model's limits are chosen
PROCEDURES = {"training rows": Tuning(), "4-fold cross-validation": Tuning(calibration_folds=4)}


@dataclass
class CrossRow:
    """One model (limits chosen by ``procedure`` on ``trained_on``'s normal rows) scored on another file."""

    procedure: str
    trained_on: str
    scored_on: str
    normal_rows: int
    false_alarms: int
    attacks: int
    detected: int
    tpr: float | None          # None: the scored file has no attack rows
    s: float | None
    estimated_false_alarm_rate: float | None  # cross-validation's own estimate, on the training file

    @property
    def tnr(self) -> float:
        return 1 - self.false_alarms / self.normal_rows if self.normal_rows else 0.0


def cross(first: Paths, second: str | Path, relations: str | Path | None = None) -> list[CrossRow]:
    """Each procedure on the normal rows of ``first`` (one file or several) scored on ``second``, and
    on ``second``'s normal rows scored on each of ``first`` (where it has enough normal rows to learn)."""
    firsts = _paths(first)
    data = {Path(second): load_csv(second), **{f: load_csv(f) for f in firsts}}
    directions = ((firsts, [Path(second)]), ([Path(second)], firsts))
    out = []
    estimates: dict[tuple[int, str], float] = {}  # (direction, procedure) -> out-of-fold false alarm rate
    direction: list[int] = []                     # each row's direction
    for name, tuning in PROCEDURES.items():
        for way, (train, test) in enumerate(directions):
            tests = [data[f] for f in test]
            learn = [data[f] for f in train]
            if sum(len(d.values) if d.labels is None else int((d.labels == 0).sum()) for d in learn) < 48:
                continue  # too few normal rows to learn from (BATADAL's original dataset04)
            model = train_from_csv(train, relations, tuning)
            cal = model.meta.get("calibration")
            if cal:  # cross-validation also estimates how often the training rows' own limits alarm on new rows
                estimates[way, "training rows"] = cal["unwidened_false_alarm_rate"]
                estimates[way, name] = cal["false_alarm_rate"]
            alarm = np.concatenate([[v.alarm for v in stream(model, d)] for d in tests])
            truth = np.concatenate([d.labels if d.labels is not None else np.zeros(len(d.values), dtype=int)
                                    for d in tests])
            sc = score(alarm, truth)
            direction.append(way)
            out.append(CrossRow(name, names(train), names(test), int((truth == 0).sum()), sc.fp, len(sc.attacks),
                                sum(a.detected_after is not None for a in sc.attacks),
                                sc.tpr if sc.attacks else None, sc.s if sc.attacks else None, None))
    for r, way in zip(out, direction, strict=True):
        r.estimated_false_alarm_rate = estimates.get((way, r.procedure))
    return out


def cross_report(rows: list[CrossRow]) -> str:
    """The cross-file table: the spread between choosing limits on one file and scoring on the other."""
    lines = ["| limits chosen on | procedure | scored on | attacks detected | TPR | TNR | false alarms / 1,000 h "
             "| out-of-fold estimate / 1,000 h | S |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        estimate = "" if r.estimated_false_alarm_rate is None else f"{1000 * r.estimated_false_alarm_rate:.1f}"
        lines.append(
            f"| {r.trained_on} | {r.procedure} | {r.scored_on} | "
            f"{f'{r.detected}/{r.attacks}' if r.attacks else '-'} | {'-' if r.tpr is None else f'{r.tpr:.3f}'} | "
            f"{r.tnr:.3f} | {1000 * r.false_alarms / max(r.normal_rows, 1):.1f} | {estimate} | "
            f"{'-' if r.s is None else f'{r.s:.3f}'} |")
    return "\n".join(lines) + "\n"
