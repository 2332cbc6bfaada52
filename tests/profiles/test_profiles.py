"""Shipped meter profiles: each valid and sourced, and each read end to end through the agent's own
config and driver against values placed at the documented addresses in the documented encoding
(tests/profiles/cases, written from the manufacturer's document, not from the profile)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent import profiles
from agent.cli import main
from agent.configload import ConfigError, load_config_text
from agent.settings import AgentConfig, ModbusDevice
from agent.sources import SourceContext, source_for
from agent.sources.modbus import map_issues
from drivers.base import Reading
from drivers.modbus import ConnectionPool
from simulators import run as simrun
from simulators.encoding import encode
from simulators.profile_meter import ProfileMeter
from simulators.server import ModbusSimulator, SimulatorThread
from simulators.store import RegisterImage

CASES = Path(__file__).parent / "cases"
#: what a role's points are measured in (the central power_readings table's units)
ROLE_UNITS = {"power": "kW", "energy": "kWh", "voltage": "V", "current": "A", "frequency": "Hz",
              "power_factor": None}


def test_at_least_ten_profiles_ship_each_with_its_cases() -> None:
    names = profiles.names()
    assert len(names) >= 10, names
    assert sorted(p.stem for p in CASES.glob("*.yaml")) == names


@pytest.mark.parametrize("name", profiles.names())
def test_a_profile_is_valid_sourced_and_counts_power_once(name: str) -> None:
    profile = profiles.load(name)
    assert profile.name == name and len(profile.document) > 30 and profile.manufacturer
    device = ModbusDevice(id="x", host="h", points=profile.points, **profile.device.model_dump(
        exclude={"type"}, exclude_none=True))
    assert map_issues(device, ("devices", 0)) == []
    for point in profile.points:
        if point.role is not None:
            assert point.unit == ROLE_UNITS[point.role], (point.name, point.role, point.unit)
    power = [p.name for p in profile.points if p.role == "power"]
    # the agent sums the role-power points: the total alone, or the phases when there is no total
    assert power == ["active_power"] or (power and all(n.startswith("power_l") for n in power)
                                         and "active_power" not in {p.name for p in profile.points}), power
    assert sum(1 for p in profile.points if p.role == "power_factor") <= 1


def _image(profile: profiles.Profile) -> RegisterImage:
    """Zeros at every address the profile reads (a real meter answers its whole map)."""
    image = RegisterImage()
    for point in profile.points:
        if point.table in ("coil", "discrete"):
            image.put_bit(point.table, point.address, False)
        else:
            image.set(point.table, point.address, [0] * point.register_count)
    return image


def poll_all(cfg: AgentConfig) -> dict[str, dict[str, Reading]]:
    """One poll of every device of ``cfg`` at once by the agent's own drivers: device -> point -> reading."""
    async def read_all() -> dict[str, dict[str, Reading]]:
        context = SourceContext(pool=ConnectionPool(), gateway="gw")
        drivers = [source_for("modbus").driver(d.config, d, context) for d in cfg.enabled_devices()]
        polls = await asyncio.gather(*(d.read() for d in drivers))
        for d in drivers:
            await d.close()
        return {d.device_id: {r.point: r for r in poll} for d, poll in zip(drivers, polls, strict=True)}

    return asyncio.run(read_all())


class _Unit:
    def __init__(self, image: RegisterImage) -> None:
        self.image = image

    def refresh(self, now: float) -> None:
        pass


def test_every_profile_reads_the_documented_values_through_the_agent() -> None:
    names = profiles.names()
    units = {unit: _Unit(_image(profiles.load(name))) for unit, name in enumerate(names, start=1)}
    cases: dict[str, list[dict[str, Any]]] = {n: yaml.safe_load((CASES / f"{n}.yaml").read_text())["cases"]
                                              for n in names}
    sim = ModbusSimulator(units)  # type: ignore[arg-type]
    with SimulatorThread([sim]) as thread:
        devices = [{"id": name, "host": "127.0.0.1", "port": sim.port, "unit_id": unit, "profile": name}
                   for unit, name in enumerate(names, start=1)]
        cfg = load_config_text(yaml.safe_dump({"gateway": {"id": "gw"}, "devices": devices}))

        checked = 0
        for round_ in range(max(len(c) for c in cases.values())):
            def place(r: int = round_) -> None:
                for unit, name in enumerate(names, start=1):
                    for case in cases[name][r:r + 1]:
                        for p in case["place"]:
                            units[unit].image.set(p["table"], p["address"], encode(
                                p["raw"], p["type"], p.get("byte_order", "big"), p.get("word_order", "big")))
            thread.run_sync(place)
            polled = poll_all(cfg)
            for name in names:
                for case in cases[name][round_:round_ + 1]:
                    for point, expected in case["expect"].items():
                        got = polled[name][point]
                        assert got.quality == "good", (name, point, got)
                        assert got.value == pytest.approx(expected, rel=1e-6, abs=1e-9), (name, point, got)
                        checked += 1
    assert checked >= 4 * len(names)
    assert set(sim.requests.function_codes) <= {1, 2, 3, 4}


def test_a_device_overrides_and_adds_to_its_profile_and_errors_name_their_place() -> None:
    text = """gateway: {id: gw}
devices:
  - id: m1
    host: 127.0.0.1
    profile: siemens-pac3200
    points:
      - {name: active_power, limits: {max: 500}}
      - {name: extra, address: 1, type: float32}
"""
    with pytest.raises(ConfigError) as err:
        load_config_text(text, "plant.yaml")
    assert [str(i) for i in err.value.issues] == [
        "plant.yaml:8:32: devices[0].points[1].address: overlaps voltage_l1 (holding 1..2)"]
    cfg = load_config_text(text.replace("address: 1,", "address: 4000,"), "plant.yaml")
    (device,) = cfg.devices
    points = {p.name: p for p in device.points}
    assert points["active_power"].limits is not None and points["active_power"].limits.max == 500
    assert points["active_power"].role == "power" and points["extra"].address == 4000
    assert len(points) == len(profiles.load("siemens-pac3200").points) + 1
    assert device.type == "power_meter" and device.profile == "siemens-pac3200"
    with pytest.raises(ConfigError) as err:
        load_config_text(text.replace("siemens-pac3200", "siemens-pac320"), "plant.yaml")
    assert str(err.value) == "plant.yaml:5:14: devices[0].profile: no profile 'siemens-pac320' " \
                             "(did you mean 'siemens-pac3200'?)"


def test_the_simulator_impersonates_every_profile_with_consistent_physics() -> None:
    """``simulate --profile NAME``: each profile's meter, read through the agent, measures what a
    three-phase load does (P = V·I·PF over the phases, 50 Hz, 230 V) whatever its encoding."""
    names = profiles.names()
    sims = simrun.build(meters=2, profile=profiles.raw(names[0]))
    assert [type(u) for u in sims.meters.units.values()] == [ProfileMeter, ProfileMeter]
    units = {unit: ProfileMeter(profiles.raw(name) or {}, seed=unit, start=0)
             for unit, name in enumerate(names, start=1)}
    sim = ModbusSimulator(units)  # type: ignore[arg-type]
    devices = [{"id": name, "host": "127.0.0.1", "port": sim.port, "unit_id": unit, "profile": name}
               for unit, name in enumerate(names, start=1)]
    with SimulatorThread([sim]):
        cfg = load_config_text(yaml.safe_dump({"gateway": {"id": "gw"}, "devices": devices}))

        polled = {device: {point: r.value for point, r in readings.items() if r.good}
                  for device, readings in poll_all(cfg).items()}
    for name in names:
        got = polled[name]
        assert len(got) == len(profiles.load(name).points), (name, sorted(set(units) - set(got)))
        phases = ("_l1", "_l2", "_l3") if "voltage_l1" in got else ("",)  # three-phase or single-phase
        volts = [got[f"voltage{phase}"] for phase in phases]
        amps = [got[f"current{phase}"] for phase in phases]
        assert all(225 < (v or 0) < 235 for v in volts), (name, volts)
        assert got["frequency"] == pytest.approx(50, abs=0.1)
        pf = got.get("power_factor") or 0.92
        watts = sum((v or 0) * (a or 0) for v, a in zip(volts, amps, strict=True)) * pf
        assert (got["active_power"] or 0) * 1000 == pytest.approx(watts, rel=0.05), name
        assert (got.get("energy_import") or got["energy_export"] or 0) > 1000, name


def test_the_profiles_command_lists_them_and_shows_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profiles"]) == 0
    listed = capsys.readouterr().out
    assert all(f"\n{name} " in listed for name in profiles.names())
    assert main(["profiles", "show", "siemens-pac3200"]) == 0
    shown = capsys.readouterr().out
    assert "document: Siemens" in shown and "A5E01168664B" in shown
    assert [line.split() for line in shown.splitlines() if line.startswith("active_power ")] == [
        ["active_power", "holding", "65", "float32", "0.001", "kW", "power"]]
    assert "profile: siemens-pac3200}" in shown
    assert main(["profiles", "show", "nope"]) == 2
    assert "no profile 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize(("factor", "message"), [
    ("{name: w_sf, address: 1, type: uint16}", "w_sf must be an int16 register (a signed power of ten), not uint16"),
    ("{name: w_sf, address: 1, type: int16, scale: 0.1}", "w_sf is a power of ten as read: no scale, offset or"),
])
def test_a_scale_factor_is_a_plain_int16(factor: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config_text(f"""gateway: {{id: gw}}
devices:
  - id: inverter
    host: 127.0.0.1
    points:
      - {{name: w, address: 0, type: int16, scale_factor: w_sf}}
      - {factor}
""", "plant.yaml")
    assert f"devices[0].points[0].scale_factor: {message}" in str(err.value)
