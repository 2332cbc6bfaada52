"""Power meter detectors: every simulated attack kind caught, normal days quiet, feeders checked at load,
what meters learned kept over a reload and a restart."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC
from typing import Any

import pytest

from agent.configload import ConfigError, load_config_text
from agent.detect.meters import MeterDetection
from agent.detect.meters.evaluate import (
    ATTACKED,
    ATTACKS,
    FEEDER,
    START,
    Evaluation,
    Plant,
    devices,
    evaluate,
    meter_device,
    readings,
)
from agent.detect.meters.profile import LoadProfile
from agent.pipeline.power import PowerSampler
from agent.settings import AnyDevice
from drivers.base import Reading
from tests.clock import PinnedClock

#: the evaluation CI keeps: polled every minute, four days learned, three normal days
INTERVAL = 60.0
#: floor on each attack kind: detected within this long (simulated time) of its start
DETECTED_WITHIN_S = 30 * 60


@pytest.fixture(scope="module")
def evaluation() -> Evaluation:
    return evaluate(seed=1, interval=INTERVAL, learn_days=4, normal_days=3, attack_hours=2.0)


@pytest.fixture(scope="module")
def learned_plant() -> Plant:
    plant = Plant(seed=2, interval=INTERVAL)
    assert not list(plant.run(2 * 86400))
    return plant


@pytest.fixture
def plant(learned_plant: Plant) -> Plant:
    return copy.deepcopy(learned_plant)


@pytest.mark.parametrize("kind", list(ATTACKS))
def test_each_attack_kind_is_detected_on_time(evaluation: Evaluation, kind: str) -> None:
    result = next(r for r in evaluation.attacks if r.kind == kind)
    assert result.detected, evaluation.table()
    assert result.delay_s is not None and result.delay_s <= DETECTED_WITHIN_S, evaluation.table()


def test_normal_days_raise_no_detection(evaluation: Evaluation) -> None:
    assert evaluation.false_alarms == 0, evaluation.table()
    assert evaluation.false_alarms_per_meter_day == 0.0


def test_findings_name_signals_and_expected_against_read(plant: Plant) -> None:
    plant.meters[ATTACKED].attack = copy.deepcopy(ATTACKS["scaled_power"])
    opened = list(plant.run(3600))
    physics = next(f for p in opened for f in p["indicators"]["findings"] if f["check"] == "physics")
    assert f"{ATTACKED}/active_power" in physics["signals"] and f"{ATTACKED}/current_l1" in physics["signals"]
    assert physics["read_kw"] == pytest.approx(0.8 * physics["expected_kw"], rel=0.03)
    assert physics["score"] >= 1.0
    assert opened[0]["attack_type"] == "Meter Tampering" and opened[0]["target_system"] == f"meter {ATTACKED}"


def test_reload_keeps_what_unchanged_meters_learned_and_closes_removed_ones(plant: Plant) -> None:
    before = plant.detection
    plant.meters[ATTACKED].attack = copy.deepcopy(ATTACKS["frozen_counter"])
    assert list(plant.run(3600)), "the frozen counter opened an incident"
    kept = [d for d in devices() if d.id != ATTACKED]
    after = MeterDetection(kept, before)
    assert all(after.watches[d.id] is before.watches[d.id] for d in kept)
    assert after.trackers["meter/sub-2"] is before.trackers["meter/sub-2"]
    # the feeder's sum lost a term: it learns again
    assert after.feeders["feeder"] is not before.feeders["feeder"]
    assert after.feeders["feeder"].subs == ("sub-2", "sub-3")
    closed = after.retired(int((START + plant.t) * 1e6))
    assert [e.payload["op"] for e in closed] == ["close", "close"]  # the detection and its alert
    assert after.retired(0) == []


def test_a_changed_meter_learns_again() -> None:
    before = MeterDetection(devices())
    changed = [meter_device("sub-1").model_copy(update={"points": meter_device("sub-1").points[:-1]}),
               *devices()[1:]]
    after = MeterDetection(changed, before)
    assert after.watches["sub-1"] is not before.watches["sub-1"]
    assert after.watches["sub-2"] is before.watches["sub-2"]


def test_open_incidents_survive_a_restart(plant: Plant) -> None:
    plant.meters[ATTACKED].attack = copy.deepcopy(ATTACKS["phase_current"])
    opened = list(plant.run(1800))
    saved = plant.detection.state()
    assert set(saved) == {f"meter/{ATTACKED}"} and saved[f"meter/{ATTACKED}"]["key"] == opened[0]["key"]
    restarted = MeterDetection(devices(), state=saved)
    assert restarted.trackers[f"meter/{ATTACKED}"].open is not None
    assert restarted.state() == saved


def run(plant: Plant, seconds: float) -> list[tuple[str, list[Any], float | None]]:
    """Each poll's events and load-profile z-score, meter by meter, as :meth:`Plant.run` feeds them."""
    seen = []
    for _ in range(round(seconds / plant.interval)):
        ts_us = int((START + plant.t) * 1e6)
        for device, meter in plant.meters.items():
            meter.refresh(plant.t)
            events = plant.detection.observe(device, readings(device, meter, ts_us))
            seen.append((device, [e.payload for e in events], plant.detection.load_score(device)))
        plant.t += plant.interval
    return seen


def restarted(plant: Plant, map_devices: list[AnyDevice] | None = None) -> Plant:
    """The plant with a new MeterDetection given what the running one learned, through JSON as the buffer keeps it."""
    saved = json.loads(json.dumps(plant.detection.learned()))
    again = copy.deepcopy(plant)
    again.detection = MeterDetection(map_devices or devices(), zone=UTC, learned=saved)
    return again


def test_learned_state_through_json_gives_the_same_verdicts_as_the_running_detection(plant: Plant) -> None:
    again = restarted(plant)
    assert not any(c.is_learning for w in again.detection.watches.values() for c in w.checks)
    assert not again.detection.feeders[FEEDER].is_learning
    assert again.detection.learned() == plant.detection.learned()
    assert len(json.dumps(plant.detection.learned())) < 40_000, "thresholds and buckets, no learning samples"
    for p in (plant, again):
        run(p, 1800)
        p.meters[ATTACKED].attack = copy.deepcopy(ATTACKS["phase_current"])
    running, restored = run(plant, 3600), run(again, 3600)
    assert any(events for _, events, _ in running), "the attack opened an incident"
    assert restored == running


def test_a_changed_layout_learns_again_and_unchanged_meters_do_not(plant: Plant) -> None:
    sub1 = meter_device(ATTACKED, FEEDER)
    rescaled = [p.model_copy(update={"scale": 0.001}) if p.name == "active_power" else p for p in sub1.points]
    changed = [sub1.model_copy(update={"points": rescaled}), *devices()[1:]]
    again = restarted(plant, changed).detection
    assert all(c.is_learning for c in again.watches[ATTACKED].checks)
    assert again.watches[ATTACKED].profile.buckets == {}
    assert not any(c.is_learning for c in again.watches["sub-2"].checks)
    assert again.feeders[FEEDER].is_learning, "one of its sub-meters changed"
    # a check's alarm limit is not what is read: the meter keeps what it learned
    limited = [p.model_copy(update={"stuck_after": 5}) if p.name == "active_power" else p for p in sub1.points]
    kept = restarted(plant, [sub1.model_copy(update={"points": limited}), *devices()[1:]]).detection
    assert not any(c.is_learning for c in kept.watches[ATTACKED].checks)


def test_learned_state_of_another_shape_or_broken_learns_again(plant: Plant) -> None:
    saved = plant.detection.learned()
    assert all(c.is_learning for c in MeterDetection(devices(), learned={**saved, "version": 0})
               .watches["sub-2"].checks)
    broken = copy.deepcopy(saved)
    del broken["meters"]["meter/sub-2"]["physics"]["peak"]
    again = MeterDetection(devices(), learned=broken)
    assert all(c.is_learning for c in again.watches["sub-2"].checks)
    assert not any(c.is_learning for c in again.watches["sub-3"].checks)


@pytest.mark.parametrize(("feeder", "message"), [
    ("mian", "no device 'mian' in the map (did you mean 'main'?)"),
    ("sub", "a meter cannot be its own feeder"),
    ("plc", "'plc' is not a power meter with a point of role power"),
])
def test_a_bad_feeder_is_refused_with_file_and_line(feeder: str, message: str) -> None:
    text = MAP.replace("feeder: main", f"feeder: {feeder}")
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "plant.yaml")
    assert [str(i) for i in info.value.issues] == [f"plant.yaml:9:13: devices[1].feeder: {message}"]


def test_feeders_in_a_loop_are_refused() -> None:
    text = MAP.replace("  - id: main\n", "  - id: main\n    feeder: sub\n")
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "plant.yaml")
    assert [str(i) for i in info.value.issues] == [
        "plant.yaml:5:13: devices[0].feeder: feeders form a loop: main -> sub -> main"]


def test_a_valid_feeder_map_loads_and_groups_its_meters() -> None:
    cfg = load_config_text(MAP, "plant.yaml")
    detection = MeterDetection(cfg.devices)
    assert detection.feeders["main"].subs == ("sub",)
    assert set(detection.trackers) == {"meter/main", "meter/sub", "feeder/main"}


MAP = """\
gateway: {id: gw}
central: {url: "sqlite:///x.db"}
devices:
  - id: main
    type: power_meter
    host: 127.0.0.1
    points: [{name: p, address: 0, type: float32, role: power}]
  - id: sub
    feeder: main
    type: power_meter
    host: 127.0.0.1
    points: [{name: p, address: 0, type: float32, role: power}]
  - id: plc
    type: plc
    host: 127.0.0.1
    points: [{name: p, address: 0, type: float32}]
"""


@pytest.fixture
def local_zone(pinned_clock: PinnedClock) -> Iterator[PinnedClock]:
    yield pinned_clock


def test_the_profile_buckets_hours_in_the_gateways_time_zone(local_zone: PinnedClock) -> None:
    profile = LoadProfile("m", ("m/p",))  # no zone given: the process's (pinned) local zone
    for k in range(3):
        wall = local_zone.start + k * 3600
        profile.step(int(wall * 1e6), 10.0)
        assert profile.visit is not None and profile.visit.bucket[0] == int(local_zone.local_hour(wall))
    utc = LoadProfile("m", ("m/p",), UTC)
    utc.step(int(local_zone.start * 1e6), 10.0)
    assert utc.visit is not None and utc.visit.bucket[0] == int(local_zone.day_time[:2])


def test_the_power_row_takes_the_larger_of_baseline_and_profile_scores() -> None:
    sampler = PowerSampler(devices())
    rows = [sampler.sample("sub-1", [Reading("sub-1", "active_power", k, 10.0)], profile_z)
            for k, profile_z in enumerate([None] * 40 + [2.0, 7.5])]
    fields = [r.payload["fields"] for r in rows if r is not None]  # type: ignore[index]
    assert fields[-2]["anomaly_score"] == 2.0 and fields[-2]["is_anomaly"] is False
    assert fields[-1]["anomaly_score"] == 7.5 and fields[-1]["is_anomaly"] is True


def _poll(detection: MeterDetection, device: str, ts_us: int, power: float) -> list[object]:
    return list(detection.observe(device, [Reading(device, "active_power", ts_us, power)]))


def test_a_feeder_reading_zero_for_days_neither_crashes_nor_alarms() -> None:
    """A feeder whose breaker is open reads exactly 0 kW: the deviation, relative to its power, is undefined."""
    detection = MeterDetection(devices(), zone=UTC)
    start = int(START * 1e6)
    for k in range(3 * 1440):
        for device in ("sub-1", "sub-2", "sub-3", "feeder"):
            assert _poll(detection, device, start + k * 60_000_000, 0.0) == []


def test_a_reading_that_is_not_a_number_counts_as_not_read() -> None:
    detection = MeterDetection(devices(), zone=UTC)
    layout = detection.watches["sub-1"].layout
    poll = layout.poll([Reading("sub-1", "active_power", 1, float("nan")), Reading("sub-1", "frequency", 1, 50.0)])
    assert poll is not None and poll.power is None


def test_standby_load_in_an_hour_that_is_usually_off_is_not_thousands_of_spreads_off() -> None:
    profile = LoadProfile("m", ("m/p",), UTC)
    day = 86400_000_000
    start = int(START * 1e6)
    for d in range(3):  # off at 02:00, 100 kW at 12:00 (Thursday to Saturday: two weekdays)
        for hour, power in ((2, 0.0), (12, 100.0)):
            for minute in range(0, 60, 5):
                profile.step(start + d * day + hour * 3600_000_000 + minute * 60_000_000, power)
    z, finding = profile.step(start + 7 * day + 2 * 3600_000_000, 0.05)  # a Thursday again: 50 W of standby
    assert z is not None and z < 1.0 and finding is None


def test_a_meter_reporting_power_in_watts_is_named_in_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    plant = Plant(seed=3, interval=INTERVAL)
    meter = plant.meters["sub-2"]
    real = meter.refresh

    def in_watts(now: float) -> None:
        real(now)
        meter.reported["active_power"] *= 1000

    meter.refresh = in_watts  # type: ignore[method-assign]
    with caplog.at_level("WARNING", logger="agent.detect.meters.check"):
        list(plant.run(2 * 3600))
    assert any("physics check of sub-2" in r.getMessage() and "kW" in r.getMessage() for r in caplog.records)
