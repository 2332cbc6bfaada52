"""Robustness evaluation: attacks of each kind injected into normal rows the model never saw,
streamed through the agent's :class:`StreamingDetector`, scored per kind.

Two plants: BATADAL's C-Town (trained on dataset03's first 9 months, attacked in its last 3) and
the built-in simulated water plant (trained as the agent trains it, attacked in a later run with
another seed). Extra row checks (prototype detectors) can be composed with the verdicts to show
what they add; they never change the streaming detector itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from agent.detect.attacks import HOURLY, KINDS, AttackedSeries, Profile, Targets, inject
from agent.detect.builtin import WATER_PLANT_RELATIONS, WATER_PLANT_SIGNALS, water_plant_model
from agent.detect.dataset import load_csv
from agent.detect.drift import DriftLimits, DriftWatch, fit_drift_limits, watched_residuals
from agent.detect.evaluate import load_relations
from agent.detect.model import DetectorModel
from agent.detect.plant import PlantRelations
from agent.detect.scoring import Scores, score
from agent.detect.stream import Finding, StreamingDetector
from agent.detect.train import fit

BATADAL = Path(__file__).resolve().parents[2] / "data" / "batadal"
BATADAL_NORMAL = BATADAL / "BATADAL_dataset03.csv"
BATADAL_LABELLED = BATADAL / "BATADAL_dataset04_relabelled.csv"
#: Sampling of the simulated plant (s), as the detector tests use; its attacks last 2-6 minutes,
#: a replay copies from 5, 10 or 15 minutes before (a pump cycle is about 20 minutes) with noise
#: like the simulated level sensor's (0.002 m: 0.2-0.6 % of the level's spread).
PLANT_INTERVAL = 2.0
EVERY_2S = Profile(length=(60, 180), gap=60, lags=(150, 300, 450), noise=(0.002, 0.006),
                   drift=(0.05, 0.15), offset=(0.10, 0.25), step=(0.10, 0.25), ramp=15)
#: Epoch second the attacked plant run starts: a day after the model's training day, same 01:00 UTC
PLANT_TEST_START = 86400.0 + 3600.0


class RowCheck(Protocol):
    """A streaming check composed with the detector's verdicts: findings for one row."""

    def step(self, x: np.ndarray, hour: float) -> list[Finding]: ...


#: Builds fresh checks (their state starts empty) for a model, once per attacked series.
CheckFactory = Callable[[DetectorModel], Sequence[RowCheck]]


@dataclass(frozen=True)
class Scenario:
    """A plant's model, its clean held-out rows, how to attack them, and extra checks to compare."""

    name: str
    model: DetectorModel
    clean: np.ndarray          # held-out normal rows, in the model's signal order
    hours: np.ndarray
    targets: Targets
    profile: Profile
    checks: CheckFactory | None = None


@dataclass(frozen=True)
class KindResult:
    """Detection of one attack kind in one scenario, by one detector."""

    scenario: str
    kind: str
    detector: str
    attacks: int
    detected: int
    ttd_median: float | None   # rows from an attack's start to its first alarm (detected attacks)
    ttd_p90: float | None
    tpr: float                 # share of attacked rows alarmed
    false_per_1000: float      # alarms per 1,000 normal rows of the same run
    named: int                 # detected attacks whose findings named an altered signal

    @property
    def rate(self) -> float:
        return self.detected / self.attacks if self.attacks else 0.0


def drift_checks(limits: DriftLimits) -> CheckFactory:
    """A factory of fresh :class:`DriftWatch` checks with these limits."""
    return lambda model: [DriftWatch(model, limits)]


def batadal_scenario(train_share: float = 0.75, path: Path = BATADAL_NORMAL) -> Scenario:
    """C-Town: fit on dataset03's first ``train_share`` (time order), attack the rest; the drift
    check's limits come from the training rows only."""
    data = load_csv(path)
    split = int(len(data.values) * train_share)
    relations = load_relations(None, data.signals)
    hours = data.hours
    model = fit(data.values[:split], hours[:split], data.signals, relations,
                meta={"trained_on": f"{path.name} rows 0..{split - 1}"})
    limits = batadal_drift_limits(data.values[:split], hours[:split], data.signals, relations)
    seen = data.select(model.signals)[:split]
    return Scenario("batadal", model, data.select(model.signals)[split:], hours[split:],
                    Targets.from_relations(relations, seen, model.signals), HOURLY, drift_checks(limits))


def batadal_drift_limits(values: np.ndarray, hours: np.ndarray, signals: list[str], relations: PlantRelations
                         ) -> DriftLimits:
    """The drift check's limits for C-Town, from its training rows (the settings docs/detection-robustness.md
    measured: allowance 0.75, a two-week baseline)."""
    return fit_drift_limits(values, hours, signals, relations, allowance=0.75, baseline=336,
                            watch=watched_residuals(relations))


def simulate_water_plant(rows: int, interval: float, seed: int, start: float) -> tuple[np.ndarray, np.ndarray]:
    """Normal operation of the simulated plant as the PLC reports it (float32), and the UTC hour of each row."""
    from simulators.water_plant import WaterPlant

    plant = WaterPlant(seed=seed, start=start)
    values = np.empty((rows, len(WATER_PLANT_SIGNALS)))
    for k in range(rows):
        plant.refresh(k * interval)
        values[k] = [plant.reported[s] for s in WATER_PLANT_SIGNALS]
    hours = ((start + np.arange(rows) * interval) % 86400) / 3600
    return values.astype(np.float32).astype(float), hours


def water_plant_scenario(hours: float = 3.0, seed: int = 21) -> Scenario:
    """The built-in water plant: its own model, attacked in a pinned later run with another seed."""
    model = water_plant_model(PLANT_INTERVAL)
    clean, hour = simulate_water_plant(int(hours * 3600 / PLANT_INTERVAL), PLANT_INTERVAL, seed, PLANT_TEST_START)
    # the attacker learns the plant's relations from an earlier normal run of their own
    seen, _ = simulate_water_plant(len(clean), PLANT_INTERVAL, seed + 1, PLANT_TEST_START)
    return Scenario("water-plant", model, clean, hour,
                    Targets.from_relations(WATER_PLANT_RELATIONS, seen, WATER_PLANT_SIGNALS), EVERY_2S)


@dataclass
class _Outcome:
    """Alarms of one detector over a series, and per attack whether a finding named an altered signal."""

    alarm: np.ndarray
    named: list[bool]


def stream_series(model: DetectorModel, series: AttackedSeries, checks: CheckFactory | None = None
                  ) -> tuple[_Outcome, _Outcome]:
    """Stream one series through a fresh detector: its own outcome, and with the extra checks composed."""
    verdicts = StreamingDetector(model).step_many(series.values, series.hours)  # the same verdicts as row by row
    extra = checks(model) if checks else ()
    attack_at = np.full(len(series.values), -1)
    for k, a in enumerate(series.attacks):
        attack_at[a.start:a.end] = k
    runs = (_Outcome(np.zeros(len(series.values), dtype=bool), [False] * len(series.attacks)),
            _Outcome(np.zeros(len(series.values), dtype=bool), [False] * len(series.attacks)))
    for i, x in enumerate(series.values):
        hour = float(series.hours[i])
        own = list(verdicts[i].findings)
        composed = own + [f for c in extra for f in c.step(x, hour)]
        for out, findings in zip(runs, (own, composed), strict=True):
            out.alarm[i] = bool(findings)
            k = int(attack_at[i])
            if k >= 0 and findings and not out.named[k]:
                out.named[k] = any(set(series.attacks[k].signals) & set(f.signals) for f in findings)
    return runs


def _result(scenario: Scenario, kind: str, detector: str, series: list[AttackedSeries], outcomes: list[_Outcome]
            ) -> KindResult:
    ttd: list[int] = []
    attacked = alarmed = normal = false = named = 0
    settle = scenario.profile.gap // 2  # rows after an attack still under its influence: not counted as normal
    for s, out in zip(series, outcomes, strict=True):
        normal_rows = np.ones(len(s.values), dtype=bool)
        normal_rows[:max(scenario.profile.lags)] = False  # the detector's warm-up, never attacked either
        for a, was_named in zip(s.attacks, out.named, strict=True):
            normal_rows[a.start:a.end + settle] = False
            hits = np.flatnonzero(out.alarm[a.start:a.end])
            attacked += a.end - a.start
            alarmed += len(hits)
            if len(hits):
                ttd.append(int(hits[0]))
                named += was_named
        normal += int(normal_rows.sum())
        false += int(out.alarm[normal_rows].sum())
    return KindResult(scenario.name, kind, detector, sum(len(s.attacks) for s in series), len(ttd),
                      float(np.median(ttd)) if ttd else None, float(np.percentile(ttd, 90)) if ttd else None,
                      alarmed / attacked, 1000 * false / normal if normal else 0.0, named)


def measure(scenario: Scenario, kind: str, count: int, seed: int = 0) -> list[KindResult]:
    """Inject ``count`` attacks of ``kind``; the streaming detector's result, then with the scenario's checks."""
    series = inject(scenario.clean, scenario.hours, scenario.model.signals, scenario.targets, kind, count,
                    scenario.profile, seed)
    runs = [stream_series(scenario.model, s, scenario.checks) for s in series]
    out = [_result(scenario, kind, "detector", series, [r[0] for r in runs])]
    if scenario.checks:
        out.append(_result(scenario, kind, "+ drift CUSUM", series, [r[1] for r in runs]))
    return out


def evaluate_robustness(scenarios: Sequence[Scenario], count: int = 30, seed: int = 0,
                        kinds: Sequence[str] = KINDS) -> list[KindResult]:
    """Every kind in every scenario, ``count`` attacks each (seeded: the same attacks every run)."""
    return [r for sc in scenarios for k, kind in enumerate(kinds) for r in measure(sc, kind, count, seed + k)]


def labelled_scores(train: Path = BATADAL_NORMAL, test: Path = BATADAL_LABELLED) -> tuple[Scores, Scores]:
    """BATADAL's scores on the labelled attacks: the streaming detector alone, and with the drift check
    (trained and calibrated on ``train`` only)."""
    data = load_csv(train)
    relations = load_relations(None, data.signals)
    model = fit(data.values, data.hours, data.signals, relations)
    limits = batadal_drift_limits(data.values, data.hours, data.signals, relations)
    labelled = load_csv(test)
    assert labelled.labels is not None
    series = AttackedSeries(labelled.select(model.signals), labelled.hours, model.signals, [])
    own, composed = stream_series(model, series, drift_checks(limits))
    return score(own.alarm, labelled.labels), score(composed.alarm, labelled.labels)


def table(results: Sequence[KindResult]) -> str:
    """The per-kind results as a Markdown table (times to detection in rows: hours for BATADAL, 2 s for the plant)."""
    lines = ["| plant | attack kind | detector | detected | time to detection, median / p90 (rows) "
             "| TPR in attacks | false alarms / 1,000 normal rows | named an altered signal |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        ttd = "-" if r.ttd_median is None else f"{r.ttd_median:g} / {r.ttd_p90:g}"
        lines.append(f"| {r.scenario} | {r.kind} | {r.detector} | {r.detected}/{r.attacks} ({r.rate:.0%}) | {ttd} "
                     f"| {r.tpr:.2f} | {r.false_per_1000:.1f} | {r.named}/{r.detected} |")
    return "\n".join(lines) + "\n"
