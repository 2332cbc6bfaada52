"""Each detector fires on its own kind of attack and stays quiet on normal operation."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from agent.detect.builtin import WATER_PLANT_SIGNALS, water_plant_model
from agent.detect.model import DetectorModel, Tuning
from agent.detect.plant import Actuator, PlantRelations, Tank
from agent.detect.stream import StreamingDetector, Verdict
from agent.detect.train import MIN_REPLAY_WINDOW, REPLAY_MARGIN, fit
from simulators.clock import START_ENV
from simulators.water_plant import WaterPlant
from tests.clock import PinnedClock

INTERVAL = 2.0
ATTACK_AT = 100


@pytest.fixture(scope="module")
def plant_model() -> DetectorModel:
    return water_plant_model(INTERVAL)


@dataclass
class PlantRun:
    """What the detector said on each row, and whether the pump really ran."""

    verdicts: list[Verdict]
    pump_on: list[bool]


def run_plant(model: DetectorModel, scenario: str, seed: int, clock: PinnedClock, rows: int = 250) -> PlantRun:
    """The simulated plant sampled every INTERVAL s from the pinned time of day; ``scenario`` starts at row
    ATTACK_AT. The hour of day is the gateway's local time, as the agent's detection runner computes it."""
    detector = StreamingDetector(model)
    plant = WaterPlant(seed=seed, start=clock.start)
    run = PlantRun([], [])
    for k in range(rows):
        if k == ATTACK_AT:
            plant.set_scenario(scenario)
        now = k * INTERVAL
        plant.refresh(now)
        x = np.array([plant.reported[s] for s in WATER_PLANT_SIGNALS], dtype=np.float32).astype(float)
        run.verdicts.append(detector.step(x, clock.local_hour(clock.start + now)))
        run.pump_on.append(plant.pump_on)
    return run


def kinds(verdicts: list[Verdict]) -> set[str]:
    return {f.kind for v in verdicts for f in v.findings}


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_normal_plant_raises_no_alarm(plant_model: DetectorModel, seed: int, pinned_clock: PinnedClock) -> None:
    verdicts = run_plant(plant_model, "normal", seed, pinned_clock, rows=400).verdicts
    assert sum(v.alarm for v in verdicts) == 0, kinds(verdicts)


@pytest.mark.parametrize(("scenario", "evidence", "within"), [
    ("level_spoof", {"mass_balance", "pressure"}, 2),          # level reported constant mid-range
    ("flow_spoof", {"mass_balance"}, 2),                       # pump flow reported as zero while it runs
    ("pump_forced_frozen_level", {"frozen", "pressure"}, 5),   # pump forced on, level frozen: pressure betrays it
])
def test_each_attack_is_detected_with_its_evidence(plant_model: DetectorModel, scenario: str, evidence: set[str],
                                                   within: int, pinned_clock: PinnedClock) -> None:
    run = run_plant(plant_model, scenario, 21, pinned_clock)
    verdicts = run.verdicts
    assert not any(v.alarm for v in verdicts[:ATTACK_AT]), "no alarm before the attack"
    alarms = [i for i, v in enumerate(verdicts) if v.alarm]
    assert alarms and alarms[0] - ATTACK_AT <= within, f"first alarm at row {alarms[:1]}"
    assert evidence <= kinds(verdicts[ATTACK_AT:]), kinds(verdicts[ATTACK_AT:])
    # a zero flow is a lie only while the pump runs: how long it runs depends on the hour's demand
    lying = [i for i in range(alarms[0], len(verdicts)) if run.pump_on[i] or scenario != "flow_spoof"]
    assert lying, "the attack had rows to show on"
    assert sum(verdicts[i].alarm for i in lying) > 0.9 * len(lying)


def test_detection_is_the_same_in_every_time_zone(plant_model: DetectorModel, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway's zone shifts the hour it feeds the detector; the built-in model must not care."""
    outcomes = []
    for tz in ("UTC", "Asia/Kathmandu", "Pacific/Chatham"):
        monkeypatch.setenv("TZ", tz)
        time.tzset()
        run = run_plant(plant_model, "level_spoof", 31, PinnedClock("22:30", tz))
        outcomes.append([v.alarm for v in run.verdicts])
    monkeypatch.undo()
    time.tzset()
    assert outcomes[0] == outcomes[1] == outcomes[2]
    assert any(outcomes[0])


def test_the_built_in_model_is_the_same_whenever_and_wherever_it_is_trained(monkeypatch: pytest.MonkeyPatch) -> None:
    models = []
    for start, tz in (("2026-01-01T03:00:00Z", "UTC"), ("2026-07-01T21:45:00Z", "Asia/Kathmandu")):
        monkeypatch.setenv(START_ENV, start)
        monkeypatch.setenv("TZ", tz)
        time.tzset()
        models.append(water_plant_model(INTERVAL, hours=0.5))
    monkeypatch.undo()
    time.tzset()
    runs = [[v.score for v in run_plant(m, "flow_spoof", 5, PinnedClock("06:00", "UTC"), 150).verdicts]
            for m in models]
    assert runs[0] == runs[1]


def _cycling_plant(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A tank under on/off level control: level, pump status, pump flow, a smooth demand signal."""
    rng = np.random.default_rng(seed)
    level, pump, out = 3.0, 1.0, []
    for k in range(rows):
        if level > 4.0:
            pump = 0.0
        elif level < 2.0:
            pump = 1.0
        demand = 0.5 + 0.2 * np.sin(2 * np.pi * k / 24) + rng.normal(0, 0.01)
        level += 0.3 * pump - 0.4 * demand * 0.5
        out.append([level + rng.normal(0, 0.005), pump, 10.0 * pump + rng.normal(0, 0.05) * pump, demand])
    return np.array(out), np.arange(rows) % 24.0


SIGNALS = ["level", "pump", "pump_flow", "demand"]
RELATIONS = PlantRelations(tanks=[Tank(level="level", pumps=[Actuator(status="pump", flow="pump_flow")])])


@pytest.fixture(scope="module")
def cycling_model() -> DetectorModel:
    x, hours = _cycling_plant(3000, seed=1)
    return fit(x, hours, SIGNALS, RELATIONS, Tuning(resolution=0.001, replay_window=8))


def _stream(model: DetectorModel, x: np.ndarray, hours: np.ndarray) -> list[Verdict]:
    det = StreamingDetector(model)
    return [det.step(x[i], float(hours[i])) for i in range(len(x))]


def test_pump_running_above_its_stop_level_is_a_control_violation(cycling_model: DetectorModel) -> None:
    x, hours = _cycling_plant(300, seed=2)
    assert not any(v.alarm for v in _stream(cycling_model, x, hours))
    tampered = x.copy()
    tampered[200:, 1] = 1.0                            # pump forced on...
    tampered[200:, 2] = 10.0
    tampered[200:, 0] = np.linspace(4.0, 6.5, 100)     # ...while the level climbs past where it stops
    found = kinds(_stream(cycling_model, tampered, hours)[200:])
    assert "control" in found


def test_pump_on_without_flow_is_an_actuator_violation(cycling_model: DetectorModel) -> None:
    x, hours = _cycling_plant(300, seed=3)
    tampered = x.copy()
    running = np.flatnonzero(tampered[150:, 1] > 0.5) + 150
    tampered[running, 2] = 0.0                         # flow reported as zero while the pump runs
    verdicts = _stream(cycling_model, tampered, hours)
    assert "actuator" in kinds(verdicts[150:])
    assert all(not v.alarm for v in verdicts[:150])


def test_replayed_window_is_recognised(cycling_model: DetectorModel) -> None:
    x, hours = _cycling_plant(300, seed=4)
    replayed = x.copy()
    replayed[250:270, 0] = x[200:220, 0]               # the level sensor replays 20 earlier samples
    verdicts = _stream(cycling_model, replayed, hours)
    replay = [f for v in verdicts[250:270] for f in v.findings if f.kind == "replay"]
    assert replay and replay[0].signals == ("level",) and replay[0].detail["samples_back"] == 50


def test_each_signal_gets_the_shortest_replay_window_its_history_never_repeats() -> None:
    """A noisy signal never repeats even 3 samples, so its window is 3 + REPLAY_MARGIN; one that
    repeats a 6-sample motif every 8 samples never repeats 7, so its window is 7 + REPLAY_MARGIN.
    A replay of the noisy signal is then seen at its 5th replayed sample."""
    rng = np.random.default_rng(9)
    rows = 2000
    noisy = np.round(rng.normal(0, 1, rows), 3)
    motif = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    patterned = np.array([v for _ in range(rows // 8) for v in [*motif, *np.round(rng.uniform(10, 1000, 2), 3)]])
    x = np.column_stack((noisy, patterned))
    model = fit(x, np.arange(rows) % 24.0, ["noisy", "patterned"], None,
                Tuning(resolution=0.001, replay_window=12, daily_baseline=False))
    assert model.replay_signals == [0, 1]
    assert model.replay_windows == [MIN_REPLAY_WINDOW + REPLAY_MARGIN, 7 + REPLAY_MARGIN]

    live = np.column_stack((np.round(rng.normal(0, 1, 100), 3), patterned[:100]))
    live[60:80, 0] = live[20:40, 0]                    # the noisy signal replays 20 samples from 40 back
    verdicts = _stream(model, live, np.arange(100) % 24.0)
    first = next(t for t, v in enumerate(verdicts) if any(f.kind == "replay" for f in v.findings))
    assert first == 60 + model.replay_windows[0] - 1
    assert not any(v.alarm for v in verdicts[:60])


def test_frozen_sensor_and_sudden_jump_are_flagged_per_signal(cycling_model: DetectorModel) -> None:
    x, hours = _cycling_plant(300, seed=7)
    tampered = x.copy()
    tampered[100:140, 0] = tampered[100, 0]            # level frozen at one value for 40 samples
    tampered[200, 3] += 1.0                            # a demand reading jumps by five times its daily swing
    verdicts = _stream(cycling_model, tampered, hours)
    frozen = [i for i, v in enumerate(verdicts) if any(f.kind == "frozen" for f in v.findings)]
    assert frozen and 100 < frozen[0] < 110 and frozen[-1] < 141
    rate = [f for f in verdicts[200].findings if f.kind == "rate"]
    assert rate and rate[0].signals == ("demand",)
    assert not any(v.alarm for v in verdicts[:100])


def test_an_alarm_clears_a_few_rows_after_its_evidence(cycling_model: DetectorModel) -> None:
    """One absurd reading alarms at once, but it enters the smoothed scores at most score_cap x
    their limits: the alarm ends within log2(8) = 3 rows of the last row it touches (the glitch
    and the row after, whose lag features hold it), not after the many rows an uncapped average
    of a millionfold score needs to decay."""
    x, hours = _cycling_plant(300, seed=8)
    x[200, 0] += 50.0                                  # one glitch of ten times the tank's height
    lasted = {}
    for cap in (8.0, 0.0):
        model = replace(cycling_model, tuning=replace(cycling_model.tuning, score_cap=cap))
        verdicts = _stream(model, x, hours)
        assert not any(v.alarm for v in verdicts[:200]) and verdicts[200].alarm
        lasted[cap] = max(i for i, v in enumerate(verdicts) if v.alarm) - 200
    assert 1 <= lasted[8.0] <= 4
    assert lasted[0.0] >= 10


def test_model_file_round_trip_gives_identical_verdicts(cycling_model: DetectorModel, tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    cycling_model.save(path)
    loaded = DetectorModel.load(path)
    x, hours = _cycling_plant(200, seed=5)
    x[150:, 0] += 1.0
    assert loaded.replay_windows == cycling_model.replay_windows and loaded.replay_windows
    assert loaded.tuning == cycling_model.tuning
    a, b = _stream(cycling_model, x, hours), _stream(loaded, x, hours)
    assert [(v.alarm, round(v.score, 9)) for v in a] == [(v.alarm, round(v.score, 9)) for v in b]
    assert any(v.alarm for v in a)


def test_a_format_2_model_file_loads_with_the_defaults_of_later_fields(cycling_model: DetectorModel,
                                                                          tmp_path: Path) -> None:
    """Files written before score_cap and per-signal replay windows: every signal keeps the
    tuning's replay window, and the cap takes its default."""
    path = tmp_path / "m.npz"
    cycling_model.save(path)
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(str(arrays["header"]))
    header["format"] = 2
    del header["replay_windows"], header["tuning"]["score_cap"]
    arrays["header"] = np.array(json.dumps(header))
    old = tmp_path / "old.npz"
    np.savez_compressed(old, **arrays)
    loaded = DetectorModel.load(old)
    assert loaded.replay_windows == [] and loaded.tuning.score_cap == Tuning().score_cap
    assert [loaded.replay_window(k) for k in range(len(loaded.replay_signals))] == [
        loaded.tuning.replay_window] * len(loaded.replay_signals)
    header["format"] = 1
    arrays["header"] = np.array(json.dumps(header))
    np.savez_compressed(old, **arrays)
    with pytest.raises(ValueError, match=r"old\.npz: model format 1, expected one of 2, 3"):
        DetectorModel.load(old)


def test_a_limit_of_zero_is_left_uncapped(cycling_model: DetectorModel) -> None:
    """A group whose limit is 0 alarms on any score, capped or not (a cap of 0 x the limit would
    clip every score to 0 and 0 / 0 would never alarm)."""
    thresholds = np.asarray(cycling_model.meta["thresholds"], dtype=float).copy()
    thresholds[0] = 0.0
    x, hours = _cycling_plant(50, seed=6)
    verdicts = StreamingDetector(cycling_model, thresholds).step_many(x, hours)
    assert all(any(f.kind == "residual" for f in v.findings) for v in verdicts[2:])


def test_damaged_model_file_is_refused_with_its_name(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match=r"bad\.npz: not a HackSky detector model"):
        DetectorModel.load(bad)


def test_relations_naming_unknown_signals_are_refused() -> None:
    x, hours = _cycling_plant(100, seed=6)
    wrong = PlantRelations(tanks=[Tank(level="levle")])
    with pytest.raises(ValueError, match="levle"):
        fit(x, hours, SIGNALS, wrong)
