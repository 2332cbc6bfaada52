"""``discover modbus`` against the power meter and test-pattern simulators on loopback (TCP and RTU over TCP)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent import profiles
from agent.configload import load_config_text
from agent.sources import SourceContext, source_for
from drivers.base import Reading
from drivers.modbus import ConnectionPool
from simulators.patterns import PatternDevice, pattern_points
from simulators.power_meter import ENERGY_ADDRESS, HOLDING_MAP, STATUS_ADDRESS, PowerMeter
from simulators.profile_meter import ProfileMeter
from simulators.server import ModbusSimulator, SimulatorThread
from simulators.store import UnitModel
from tests.discover.conftest import SIM_START, Run
from tests.infra.serial import serial_pair

METER, PATTERN, ABSENT = 1, 2, 9
#: seconds between the two reads: the meter's energy counter moves at least 60 Wh/s (nominal_kw below)
WAIT = "0.2"


def units() -> dict[int, UnitModel]:
    return {METER: PowerMeter(seed=1, nominal_kw=2000.0, start=SIM_START), PATTERN: PatternDevice()}


@pytest.fixture(scope="module")
def tcp() -> Iterator[ModbusSimulator]:
    sim = ModbusSimulator(units())
    with SimulatorThread([sim]):
        yield sim


@pytest.fixture(scope="module")
def rtu() -> Iterator[ModbusSimulator]:
    sim = ModbusSimulator(units(), transport="rtu_over_tcp")
    with SimulatorThread([sim]):
        yield sim


def by_address(run: Run) -> dict[tuple[str, int], dict[str, object]]:
    assert run.status == 0, run.err
    return {(p["table"], p["address"]): p for p in run.device()["points"]}


def assert_meter_found(found: dict[tuple[str, int], dict[str, object]], comments: dict[str, str]) -> None:
    for address in HOLDING_MAP.values():
        assert found[("holding", address)]["type"] == "float32", address
        assert found[("holding", address)]["word_order"] == "big", address
    assert found[("holding", STATUS_ADDRESS)]["type"] == "uint16"
    energy = found[("input", ENERGY_ADDRESS)]
    assert (energy["type"], energy["word_order"]) == ("uint64", "big")
    assert comments[str(energy["name"])].startswith("counter: ")
    assert found[("coil", 0)]["type"] == "bool"
    assert set(found) == {*(("holding", a) for a in HOLDING_MAP.values()), ("holding", STATUS_ADDRESS),
                          ("input", ENERGY_ADDRESS), ("coil", 0)}, "nothing else answers"


def test_power_meter_floats_word_order_status_and_energy_counter(tcp: ModbusSimulator,
                                                                 discover: Callable[..., Run]) -> None:
    run = discover("modbus", "127.0.0.1", "--port", str(tcp.port), "--unit", str(METER), "--range", "0-99",
                   "--wait", WAIT)
    assert_meter_found(by_address(run), run.comments())
    device = run.device()
    assert {k: device[k] for k in ("protocol", "host", "port", "unit_id")} == {
        "protocol": "modbus", "host": "127.0.0.1", "port": tcp.port, "unit_id": METER}
    assert "# holding: answers at 0-20; float32 word order big" in run.out
    assert "# discrete: no address answers (exception:2 x" in run.out
    assert set(tcp.requests.function_codes) <= {1, 2, 3, 4}, tcp.requests.function_codes


def test_the_proposed_meter_loads_and_the_agent_reads_it(tcp: ModbusSimulator, discover: Callable[..., Run]) -> None:
    run = discover("modbus", "127.0.0.1", "--port", str(tcp.port), "--unit", str(METER), "--range", "0-30",
                   "--wait", WAIT, "--id", "meter-01")
    cfg = load_config_text("gateway: {id: gw-discover}\n" + run.out)
    (device,) = cfg.devices

    async def read() -> list[Reading]:
        pool = ConnectionPool()
        driver = source_for("modbus").driver(device, cfg.resolved(device), SourceContext(pool, "gw"))
        try:
            return await driver.read()
        finally:
            await driver.close()
            pool.close_all()

    got = {r.point: r for r in asyncio.run(read())}
    assert all(r.good for r in got.values()), got
    assert 200 < (got["holding_0"].value or 0) < 260, "voltage_l1 decodes as volts"
    assert 49 < (got["holding_14"].value or 0) < 51, "frequency decodes as Hz"
    assert (got["input_10"].value or 0) >= 1_000_000, "the energy counter in Wh"
    assert set(tcp.requests.function_codes) <= {1, 2, 3, 4}


def test_pattern_device_float32_word_orders_are_found(tcp: ModbusSimulator, discover: Callable[..., Run]) -> None:
    before = tcp.requests.function_codes.copy()
    run = discover("modbus", "127.0.0.1", "--port", str(tcp.port), "--unit", str(PATTERN), "--range", "0-299",
                   "--tables", "holding,input", "--wait", "0")
    found, comments = by_address(run), run.comments()
    floats = [p for p in pattern_points() if p.type == "float32" and p.byte_order == "big"]
    assert len(floats) == 8  # 2 tables x 2 word orders x 2 values
    for p in floats:
        got = found[(p.table, p.address)]
        assert (got["type"], got["word_order"]) == ("float32", p.word_order), (p, got)
        assert comments[str(got["name"])] == f"{p.value:g}", (p, comments[str(got["name"])])
    # the input table has a hole after every point: each is its own run
    assert "# input: answers at 0, 2, 4, 6" in run.out
    assert set(tcp.requests.function_codes - before) == {3, 4}, "only the tables asked for"


def test_rtu_over_tcp_finds_the_same_meter(rtu: ModbusSimulator, discover: Callable[..., Run]) -> None:
    run = discover("modbus", "127.0.0.1", "--rtu", "--port", str(rtu.port), "--unit", str(METER),
                   "--range", "0-49", "--wait", WAIT)
    assert_meter_found(by_address(run), run.comments())
    assert run.device()["transport"] == "rtu_over_tcp"
    assert "(RTU over TCP)" in run.out.splitlines()[0]
    assert set(rtu.requests.function_codes) <= {1, 2, 3, 4}, rtu.requests.function_codes


def test_a_silent_unit_is_one_line_and_exit_2(rtu: ModbusSimulator, discover: Callable[..., Run]) -> None:
    run = discover("modbus", "127.0.0.1", "--rtu", "--port", str(rtu.port), "--unit", str(ABSENT),
                   "--timeout", "0.1")
    assert (run.status, run.out) == (2, "")
    assert run.err == f"unit {ABSENT} at 127.0.0.1:{rtu.port} (RTU) does not answer: no reply within 0.1s x3\n"


def test_serial_line_finds_the_meter_and_the_entry_loads(tmp_path: Path, discover: Callable[..., Run]) -> None:
    with serial_pair(tmp_path) as (our_end, device_end):
        sim = ModbusSimulator(units(), device_end, transport="serial", parity="N")  # a pty refuses parity
        with SimulatorThread([sim]):
            run = discover("modbus", "--serial", our_end, "--parity", "none", "--baudrate", "9600",
                           "--unit", str(METER), "--range", "0-29", "--wait", WAIT, "--timeout", "0.5")
    assert_meter_found(by_address(run), run.comments())
    device = run.device()
    assert {k: device[k] for k in ("transport", "port", "baudrate", "parity", "unit_id")} == {
        "transport": "serial", "port": our_end, "baudrate": 9600, "parity": "none", "unit_id": METER}
    assert "host" not in device
    load_config_text("gateway: {id: gw-discover}\n" + run.out)
    assert set(sim.requests.function_codes) <= {1, 2, 3, 4}


def test_a_meter_answering_where_a_profile_keeps_its_points_is_named(discover: Callable[..., Run]) -> None:
    sim = ModbusSimulator({1: ProfileMeter(profiles.raw("eastron-sdm630") or {}, seed=1, start=SIM_START)})
    with SimulatorThread([sim]):
        found = discover("modbus", "127.0.0.1", "--port", str(sim.port), "--range", "0-120", "--tables", "input",
                         "--wait", WAIT)
        absent = discover("modbus", "127.0.0.1", "--port", str(sim.port), "--range", "1000-1010", "--tables",
                          "holding", "--wait", WAIT)
    lines = found.out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("# profiles whose points all answer here"))
    assert lines[at + 1].startswith("#   eastron-sdm630: 27 of its 27 points in the range answer"), found.out
    assert "meters often keep their registers far from 0" in absent.err
