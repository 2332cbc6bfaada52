"""Simulator physics and scenarios, read back through a real Modbus client."""

from __future__ import annotations

import time

import pytest

from drivers.modbus.decode import decode_number
from simulators.clock import START_ENV, parse_start
from simulators.encoding import encode
from simulators.power_meter import HOLDING_MAP as METER_MAP
from simulators.power_meter import PowerMeter
from simulators.water_plant import HOLDING_MAP, WaterPlant
from tests.clock import PinnedClock


def value(plant: WaterPlant, name: str) -> float:
    regs = plant.image.read("holding", HOLDING_MAP[name], 2)
    assert regs is not None
    return float(decode_number(regs, "float32"))


def test_tank_level_follows_the_mass_balance(pinned_clock: PinnedClock) -> None:
    plant = WaterPlant(seed=3, start=pinned_clock.start)
    t = time.monotonic()
    plant.refresh(t)
    for _ in range(600):
        before = plant.level
        t += 1.0
        plant.refresh(t)
        inflow = WaterPlant.PUMP_FLOW_M3S if plant.pump_on else 0.0
        expected = before + (inflow - value(plant, "outflow")) / WaterPlant.AREA_M2
        assert plant.level == pytest.approx(min(max(expected, 0), WaterPlant.MAX), abs=1e-9)
        if not plant.pump_on:
            assert value(plant, "pump1_flow") == 0.0
    assert WaterPlant.LOW - 0.1 <= plant.level <= WaterPlant.HIGH + 0.1, "the PLC keeps the level in band"


def test_frozen_level_scenario_freezes_the_report_while_the_tank_fills(pinned_clock: PinnedClock) -> None:
    plant = WaterPlant(seed=3, start=pinned_clock.start)
    t0 = time.monotonic()
    plant.set_scenario("pump_forced_frozen_level")
    reported = []
    for step in range(1, 30):
        plant.refresh(t0 + step * 5.0)
        reported.append(value(plant, "tank1_level"))
        assert plant.pump_on
    assert len(set(reported)) == 1, "the attacker replays one level value"
    assert plant.level > reported[0] + 0.1
    plant.set_scenario("normal")
    plant.refresh(t0 + 200.0)
    assert value(plant, "tank1_level") != reported[0]
    with pytest.raises(ValueError, match="unknown scenario"):
        plant.set_scenario("meltdown")


def test_power_meter_values_are_plausible_and_energy_counts_up(pinned_clock: PinnedClock) -> None:
    meter = PowerMeter(seed=1, start=pinned_clock.start)
    t0 = time.monotonic()
    meter.refresh(t0)
    regs = meter.image.read("input", 10, 4)
    assert regs is not None
    e0 = decode_number(regs, "uint64")
    meter.refresh(t0 + 3600.0)
    voltage = decode_number(meter.image.read("holding", METER_MAP["voltage_l1"], 2) or [], "float32")
    power = decode_number(meter.image.read("holding", METER_MAP["active_power"], 2) or [], "float32")
    e1 = decode_number(meter.image.read("input", 10, 4) or [], "uint64")
    assert 220 < voltage < 240 and 0 < power < 80
    assert e1 - e0 == pytest.approx(power * 1000, rel=0.05), "one hour at P kW adds P kWh"
    assert meter.image.read("holding", 21, 1) is None, "addresses outside the map are holes"
    assert encode(1.0, "float32") == [0x3F80, 0]


def test_daily_patterns_follow_the_pinned_clock_not_the_machine() -> None:
    night, noon = PinnedClock("03:00", "UTC").start, PinnedClock("13:00", "UTC").start
    plants = {start: WaterPlant(seed=1, start=start) for start in (night, noon)}
    for plant in plants.values():
        plant.refresh(5.0)
        plant.refresh(7.0)
    assert value(plants[noon], "valve1_open") > value(plants[night], "valve1_open") + 30, "demand peaks at 13:00"
    twin = WaterPlant(seed=1, start=night)
    twin.refresh(123.0)
    twin.refresh(125.0)
    assert twin.reported == plants[night].reported, "same start and steps: same plant, whatever the machine clock"


@pytest.mark.parametrize(("text", "epoch"), [("2026-11-29T22:30:00Z", 1795991400.0),
                                             ("2026-11-29T23:30:00+01:00", 1795991400.0),
                                             ("2026-11-29T22:30:00", 1795991400.0), ("1795991400", 1795991400.0)])
def test_simulator_start_is_read_from_iso_or_epoch(text: str, epoch: float, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(START_ENV, text)
    assert PowerMeter(seed=1).clock.start == epoch == parse_start(text)
    monkeypatch.setenv(START_ENV, "tomorrow")
    with pytest.raises(ValueError, match="HACKSKY_SIM_START: 'tomorrow' is not a time"):
        WaterPlant(seed=1)
