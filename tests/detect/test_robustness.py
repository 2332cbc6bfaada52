"""Attack injectors and the robustness evaluation: floors per attack kind on held-out normal rows."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from agent.detect.attacks import (
    HOURLY,
    KINDS,
    Targets,
    concealed_level,
    concealed_pump,
    inject,
    noisy_replay,
    windows,
)
from agent.detect.builtin import WATER_PLANT_RELATIONS, WATER_PLANT_SIGNALS
from agent.detect.drift import Cusum
from agent.detect.robustness import (
    KindResult,
    batadal_scenario,
    evaluate_robustness,
    simulate_water_plant,
    water_plant_scenario,
)

#: A cut-down run (12 attacks per kind on C-Town, 8 on the simulated plant): about 20 s.
#: Floors sit a little under what it measures (see docs/detection-robustness.md for the full run).
#: (plant, kind, detector) -> (attacks detected at least, false alarms per 1,000 normal rows at most)
FLOORS = {
    ("batadal", "step", "detector"): (11, 8.0),
    ("batadal", "drift", "detector"): (2, 8.0),
    ("batadal", "noisy_replay", "detector"): (11, 6.0),
    ("batadal", "concealed_level", "detector"): (9, 6.0),
    ("batadal", "concealed_pump", "detector"): (11, 4.0),
    ("batadal", "step", "+ drift CUSUM"): (11, 20.0),
    ("batadal", "drift", "+ drift CUSUM"): (6, 8.0),
    ("batadal", "noisy_replay", "+ drift CUSUM"): (11, 6.0),
    ("batadal", "concealed_level", "+ drift CUSUM"): (11, 6.0),
    ("batadal", "concealed_pump", "+ drift CUSUM"): (11, 8.0),
    **{("water-plant", kind, "detector"): (7, 1.0) for kind in KINDS},
}


@pytest.fixture(scope="module")
def results() -> dict[tuple[str, str, str], KindResult]:
    found = evaluate_robustness([batadal_scenario()], count=12)
    found += evaluate_robustness([water_plant_scenario(hours=1.5)], count=8)
    return {(r.scenario, r.kind, r.detector): r for r in found}


@pytest.mark.parametrize("key", sorted(FLOORS))
def test_each_attack_kind_is_detected_above_its_floor(results: dict[tuple[str, str, str], KindResult],
                                                      key: tuple[str, str, str]) -> None:
    detected, false_alarms = FLOORS[key]
    r = results[key]
    assert r.detected >= detected, r
    assert r.false_per_1000 <= false_alarms, r
    assert r.named >= r.detected - 1, r  # the findings point at what the attacker altered


def test_drift_check_detects_more_drifts_than_the_detector_alone(
        results: dict[tuple[str, str, str], KindResult]) -> None:
    alone, composed = results["batadal", "drift", "detector"], results["batadal", "drift", "+ drift CUSUM"]
    assert composed.detected >= alone.detected + 3
    assert composed.false_per_1000 <= alone.false_per_1000 + 2.0


@pytest.fixture(scope="module")
def plant_rows() -> tuple[np.ndarray, np.ndarray, Targets]:
    values, hours = simulate_water_plant(1200, 2.0, seed=3, start=3600.0)
    return values, hours, Targets.from_relations(WATER_PLANT_RELATIONS, values, WATER_PLANT_SIGNALS)


def test_injection_is_seeded_and_leaves_the_clean_rows_alone(
        plant_rows: tuple[np.ndarray, np.ndarray, Targets]) -> None:
    values, hours, targets = plant_rows
    before = values.copy()
    for kind in KINDS:
        a = inject(values, hours, WATER_PLANT_SIGNALS, targets, kind, 4, HOURLY, seed=5)
        b = inject(values, hours, WATER_PLANT_SIGNALS, targets, kind, 4, HOURLY, seed=5)
        assert [s.attacks for s in a] == [s.attacks for s in b]
        assert all(np.array_equal(s.values, t.values) for s, t in zip(a, b, strict=True))
        for s in a:  # only the declared signals of the attacked rows differ
            changed = s.values != values
            allowed = np.zeros_like(changed)
            for att in s.attacks:
                allowed[att.start:att.end, [WATER_PLANT_SIGNALS.index(n) for n in att.signals]] = True
            assert not (changed & ~allowed).any()
            assert s.labels.sum() == sum(att.end - att.start for att in s.attacks)
    assert np.array_equal(values, before)


def test_attack_windows_keep_clean_gaps_between_them() -> None:
    spans = windows(2000, 50, HOURLY, np.random.default_rng(1), first=168)
    assert len(spans) >= 5 and spans[0][0] >= 168 + HOURLY.gap
    assert all(b[0] - a[1] >= HOURLY.gap for a, b in pairwise(spans))
    assert spans[-1][1] + HOURLY.gap <= 2000


def test_noisy_replay_copies_the_past_with_noise_so_no_window_repeats_exactly(
        plant_rows: tuple[np.ndarray, np.ndarray, Targets]) -> None:
    values, _, _ = plant_rows
    level = WATER_PLANT_SIGNALS.index("tank1_level")
    c = noisy_replay(values, (level,), 600, 700, 300, np.array([0.002]), 10, np.random.default_rng(0))
    replayed = c.block[10:, 0]
    source = values[310:400, level]
    assert (replayed != source).all() and np.abs(replayed - source).max() < 0.01
    with pytest.raises(ValueError, match="cannot start"):
        noisy_replay(values, (level,), 100, 200, 300, np.array([0.002]), 10, np.random.default_rng(0))


def test_concealed_attacks_keep_the_simple_relations_consistent(
        plant_rows: tuple[np.ndarray, np.ndarray, Targets]) -> None:
    values, _, t = plant_rows
    level, pressure = (WATER_PLANT_SIGNALS.index(s) for s in ("tank1_level", "pressure_out"))
    c = concealed_level(values, level, (pressure,), t.slopes[level], 500, 600, 0.4, 10)
    shift = c.block - values[500:600][:, [level, pressure]]
    assert shift[-1, 0] == pytest.approx(0.4)
    assert np.allclose(shift[:, 1], shift[:, 0] * t.slopes[level][0])  # the pressure follows the fake level
    status, flow = t.pumps[0]
    c = concealed_pump(values, status, flow, t.pump_flow_on[flow], 500, 600, np.random.default_rng(0))
    shown_on, shown_flow = c.block[:, 0] > 0.5, c.block[:, 1]
    assert np.array_equal(shown_on, values[500:600, status] <= 0.5)  # the opposite state...
    assert (shown_flow[~shown_on] == 0).all() and (shown_flow[shown_on] > 0).all()  # ...with a matching flow


def test_cusum_adds_up_a_small_bias_but_not_noise_or_one_spike() -> None:
    rng = np.random.default_rng(0)
    noise = rng.normal(0.0, 1.0, (2000, 1))
    quiet = Cusum(1, allowance=0.75, baseline=0, clip=3.0)
    assert max(float(quiet.update(z)[0]) for z in noise) < 25
    spike = Cusum(1, allowance=0.75, baseline=0, clip=3.0)
    assert float(spike.update(np.array([50.0]))[0]) == pytest.approx(2.25)
    biased = Cusum(1, allowance=0.75, baseline=0, clip=3.0)
    assert max(float(biased.update(z + 1.5)[0]) for z in noise[:100]) > 50
