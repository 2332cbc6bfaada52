"""Modbus RTU: several units on one serial line (a socat pty pair) and behind an RTU-over-TCP
converter, served by pymodbus' own RTU server (our simulator); the agent end to end on the line."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.configload import ConfigError, load_config_text
from agent.pipeline.service import Agent
from agent.settings import PointConfig
from drivers.base import ReadError, Reading
from drivers.modbus import ConnectionPool, ModbusDriver
from drivers.modbus.connection import Link
from drivers.modbus.lane import BusLane
from simulators.patterns import PatternDevice, pattern_points
from simulators.power_meter import HOLDING_MAP, PowerMeter
from simulators.server import ModbusSimulator, SimulatorThread
from tests.helpers import async_wait_until, device_map, pattern_yaml_points, query, run_agent
from tests.infra.serial import serial_pair

METER = [PointConfig(name="voltage_l1", address=HOLDING_MAP["voltage_l1"], type="float32"),
         PointConfig(name="frequency", address=HOLDING_MAP["frequency"], type="float32"),
         PointConfig(name="energy", table="input", address=10, type="uint64", scale=0.001),
         PointConfig(name="breaker", table="coil", address=0, type="bool")]


def units() -> dict[int, PatternDevice | PowerMeter]:
    return {1: PatternDevice(), 2: PowerMeter(seed=2, start=0), 3: PowerMeter(seed=3, start=0)}


@pytest.fixture
def line(tmp_path: Path) -> Iterator[tuple[str, ModbusSimulator]]:
    """The agent's end of a serial line, and the simulator on the other end (units 1-3), 8N1: a pty
    refuses parity with a read timeout (EINVAL from tcsetattr), which a real port takes."""
    with serial_pair(tmp_path) as (agent_end, device_end):
        sim = ModbusSimulator(units(), device_end, transport="serial", parity="N")
        with SimulatorThread([sim]):
            yield agent_end, sim


@pytest.fixture
def converter() -> Iterator[ModbusSimulator]:
    """An RTU-over-TCP converter with units 1-3 behind it."""
    sim = ModbusSimulator(units(), transport="rtu_over_tcp")
    with SimulatorThread([sim]):
        yield sim


def drivers_on(link: Link, pool: ConnectionPool, timeout: float = 0.3) -> list[ModbusDriver]:
    pattern = [PointConfig(**p) for p in pattern_yaml_points(pattern_points())]
    return [ModbusDriver("pattern", link.host, link.port, 1, pattern, pool=pool, timeout=timeout, link=link),
            *(ModbusDriver(f"meter{u}", link.host, link.port, u, METER, pool=pool, timeout=timeout, link=link)
              for u in (2, 3))]


async def read_all(drivers: list[ModbusDriver]) -> dict[str, dict[str, Reading]]:
    """One poll of every driver at once (they queue on the bus), by device and point."""
    polls = await asyncio.gather(*(d.read() for d in drivers))
    return {d.device_id: {r.point: r for r in readings} for d, readings in zip(drivers, polls, strict=True)}


def assert_pattern(polled: dict[str, Reading]) -> None:
    """Every point of the pattern unit reads exactly what the simulator holds."""
    for p in pattern_points():
        got = polled[p.name]
        assert got.quality == "good", (p, got)
        assert (got.text if p.type == "string" else got.value) == (p.value if p.type == "string" else float(p.value))


def assert_exact(polled: dict[str, dict[str, Reading]]) -> None:
    assert_pattern(polled["pattern"])
    for unit in ("meter2", "meter3"):
        assert 45 < (polled[unit]["frequency"].value or 0) < 55
        assert polled[unit]["breaker"].value == 1.0


@pytest.mark.parametrize("transport", ["serial", "rtu_over_tcp"])
def test_units_sharing_a_link_read_exactly_with_read_codes_only(
        transport: str, request: pytest.FixtureRequest) -> None:
    if transport == "serial":
        agent_end, sim = request.getfixturevalue("line")
        link = Link("serial", agent_end, parity="none")
    else:
        sim = request.getfixturevalue("converter")
        link = Link("rtu_over_tcp", "127.0.0.1", sim.port)

    async def main() -> None:
        pool = ConnectionPool()
        drivers = drivers_on(link, pool)
        for _ in range(3):
            assert_exact(await read_all(drivers))
        for d in drivers:
            await d.close()

    asyncio.run(main())
    codes = sim.requests.function_codes
    assert set(codes) <= {1, 2, 3, 4} and sum(codes.values()) > 20
    assert set(sim.requests.reads_by_unit) == {1, 2, 3}


def test_a_silent_unit_is_backed_off_alone_and_a_garbled_reply_is_counted(
        line: tuple[str, ModbusSimulator], caplog: pytest.LogCaptureFixture) -> None:
    agent_end, sim = line
    link = Link("serial", agent_end, parity="none")
    rounds = 12

    async def main() -> tuple[list[dict[str, dict[str, Reading]]], Counter[int], int, int]:
        pool = ConnectionPool()
        drivers = drivers_on(link, pool, timeout=0.2)
        await read_all(drivers)
        before = sim.requests.reads_by_unit.copy()
        sim.silent.add(3)
        sim.garbled.add(2)
        polls = [await read_all(drivers) for _ in range(2)]
        sim.garbled.clear()
        polls += [await read_all(drivers) for _ in range(rounds - 2)]
        for d in drivers:
            await d.close()
        return polls, sim.requests.reads_by_unit - before, len(drivers[0].requests), len(drivers[1].requests)

    with caplog.at_level(logging.DEBUG, logger="drivers"):
        polls, asked, pattern_requests, meter_requests = asyncio.run(main())
    for poll in polls:
        assert_pattern(poll["pattern"])  # the bus's other units are not held up
        assert {r.quality for r in poll["meter3"].values()} == {"bad:timeout"}
    # a garbled reply is a CRC error, the unit's next request is sent all the same
    assert [{r.quality for r in p["meter2"].values()} for p in polls[:3]] == [{"bad:crc"}, {"bad:crc"}, {"good"}]
    # the silent unit is asked far less often than it is polled; the pattern unit every time
    assert 1 <= asked[3] <= rounds // 3, asked
    assert asked[1] == rounds * pattern_requests and asked[2] == rounds * meter_requests
    down = [r.getMessage() for r in caplog.records if "meter3" in r.getMessage() and r.levelno >= logging.WARNING]
    assert down == [f"device meter3 ({agent_end} unit 3) is down: no reply within 0.2s"]


def test_the_agent_polls_a_serial_line_from_the_device_map(line: tuple[str, ModbusSimulator],
                                                           tmp_path: Path) -> None:
    agent_end, sim = line
    url = f"sqlite:///{tmp_path / 'central.db'}"
    meter_points = [{"name": "voltage_l1", "address": 0, "type": "float32", "role": "voltage"},
                    {"name": "energy", "table": "input", "address": 10, "type": "uint64", "scale": 0.001}]
    bus = {"transport": "serial", "port": agent_end, "baudrate": 9600, "parity": "none", "type": "power_meter",
           "points": meter_points}
    text = device_map("gw-rtu", url, str(tmp_path / "buf"), [
        {"id": "meter2", "unit_id": 2, **bus}, {"id": "meter3", "unit_id": 3, **bus}])
    sim.silent.add(3)

    async def scenario(agent: Agent) -> None:
        await async_wait_until(lambda: agent.stats.rows_written >= 20)

    run_agent(text, scenario)
    rows = dict(query(url, """SELECT d.device_id_str || ' ' || r.quality, count(*) FROM readings r
                              JOIN devices d ON d.id = r.device_id GROUP BY 1"""))
    assert set(rows) == {"meter2 good", "meter3 bad:timeout"}
    assert query(url, "SELECT address FROM devices ORDER BY device_id_str") == [
        (f"serial:{agent_end}/2",), (f"serial:{agent_end}/3",)]
    assert set(sim.requests.function_codes) <= {1, 2, 3, 4}


BAD_MAPS = {
    "transport: serial\n    host: 127.0.0.1\n    port: /dev/ttyUSB0":
        "devices[0].host: a serial device has no host (its port is the serial device)",
    "transport: serial\n    port: 502": "devices[0].port: a serial device needs port: the serial device's path",
    "host: 127.0.0.1\n    port: /dev/ttyUSB0": "devices[0].port: '/dev/ttyUSB0' is not a TCP port number",
    "host: 127.0.0.1\n    baudrate: 9600": "devices[0].baudrate: baudrate applies to transport: serial only",
    "transport: serial\n    port: /dev/ttyUSB0\n    parity: mark": "devices[0].parity: 'mark' is not one of",
    "transport: serial\n    port: /dev/ttyUSB0\n    unit_id: 0":
        "devices[0].unit_id: 0 is not a unit on an RTU line (1-247; 0 is a broadcast)",
    "transport: rtu_over_tcp\n    host: gw.local\n    unit_id: 250": "devices[0].unit_id: 250 is not a unit on an RTU",
}


@pytest.mark.parametrize("device", BAD_MAPS)
def test_a_wrong_transport_is_named_with_its_line(device: str) -> None:
    text = f"gateway: {{id: gw}}\ndevices:\n  - id: m\n    {device}\n    points: [{{name: x, address: 0}}]\n"
    with pytest.raises(ConfigError) as err:
        load_config_text(text, "plant.yaml")
    assert BAD_MAPS[device] in str(err.value)
    assert str(err.value).startswith("plant.yaml:")


def test_devices_on_one_serial_line_must_agree_on_its_settings() -> None:
    text = """gateway: {id: gw}
devices:
  - {id: a, transport: serial, port: /dev/ttyUSB0, unit_id: 1, baudrate: 9600, points: [{name: x, address: 0}]}
  - {id: b, transport: serial, port: /dev/ttyUSB0, unit_id: 2, baudrate: 19200, points: [{name: x, address: 0}]}
  - {id: c, host: gw.local, port: 502, points: [{name: x, address: 0}]}
  - {id: d, transport: rtu_over_tcp, host: gw.local, port: 502, points: [{name: x, address: 0}]}
"""
    with pytest.raises(ConfigError) as err:
        load_config_text(text, "plant.yaml")
    assert [str(i) for i in err.value.issues] == [
        "plant.yaml:4:74: devices[1].baudrate: 19200 differs from devices[0]'s 9600 on the same serial line "
        "/dev/ttyUSB0",
        "plant.yaml:6:24: devices[3].transport: gw.local:502 is used with transport tcp by devices[2]",
    ]


def test_the_turnaround_defaults_to_three_and_a_half_characters_on_a_serial_line() -> None:
    cfg = load_config_text("""gateway: {id: gw}
devices:
  - {id: a, transport: serial, port: /dev/ttyUSB0, baudrate: 9600, points: [{name: x, address: 0}]}
  - {id: b, transport: serial, port: /dev/ttyUSB1, baudrate: 115200, points: [{name: x, address: 0}]}
  - {id: c, transport: rtu_over_tcp, host: gw.local, turnaround: 20ms, points: [{name: x, address: 0}]}
  - {id: d, host: plc.local, points: [{name: x, address: 0}]}
""")
    a, b, c, d = cfg.devices
    assert a.line_turnaround == pytest.approx(3.5 * 11 / 9600)  # 4.0 ms: 11 bits a character (8E1)
    assert b.line_turnaround == 0.00175  # the specification's floor above 19200 baud
    assert (c.line_turnaround, d.line_turnaround) == (0.02, 0.0)
    assert [x.address for x in cfg.devices] == ["serial:/dev/ttyUSB0/1", "serial:/dev/ttyUSB1/1",
                                                "rtu://gw.local:502/1", "plc.local:502/1"]


def test_the_lane_serves_requests_in_order_and_a_probe_when_idle_or_after_its_patience() -> None:
    async def main() -> tuple[list[str], list[str]]:
        lane = BusLane()
        order: list[str] = []

        async def ask(name: str, probe: bool = False, hold: float = 0.0) -> None:
            async with lane.turn(probe):
                order.append(name)
                await asyncio.sleep(hold)

        first = asyncio.create_task(ask("a", hold=0.01))
        await asyncio.sleep(0)
        rest = [asyncio.create_task(ask(n, probe=n == "p")) for n in ("p", "b", "c")]
        await asyncio.gather(first, *rest)
        # a bus never idle: two askers keep a request queued at every release
        lane.patience = 0.05
        busy: list[str] = []

        async def keep_busy(name: str) -> None:
            for _ in range(40):
                async with lane.turn():
                    busy.append(name)
                    await asyncio.sleep(0.005)

        askers = [asyncio.create_task(keep_busy(n)) for n in ("x", "y")]
        await asyncio.sleep(0.01)
        await ask("probe", probe=True)
        busy.append("probe")
        await asyncio.gather(*askers)
        assert lane.waiting == 0
        return order, busy

    order, busy = asyncio.run(main())
    assert order == ["a", "b", "c", "p", "probe"]  # the probe waited for the queue to empty
    assert 0 < busy.index("probe") < len(busy) - 1  # ...and on a busy bus it got a turn all the same


def test_each_unit_on_a_link_keeps_its_own_timeout_and_silence_never_closes_the_link() -> None:
    """A slow line (300 baud: a 2-register read takes 0.57 s): the unit allowed 0.1 s times out, the
    one allowed 2 s on the same link answers; a silent unit asked 8 times in a row leaves the link open."""
    sim = ModbusSimulator(units(), transport="rtu_over_tcp", line_baud=300)
    voltage = [PointConfig(name="v", address=0, type="float32")]

    async def main() -> tuple[list[str], list[str], list[str]]:
        pool = ConnectionPool()
        link = Link("rtu_over_tcp", "127.0.0.1", sim.port)
        hasty = ModbusDriver("hasty", link.host, link.port, 2, voltage, pool=pool, timeout=0.1, link=link)
        patient = ModbusDriver("patient", link.host, link.port, 3, voltage, pool=pool, timeout=2.0, link=link)
        first = [r.quality for r in await hasty.read()]
        await asyncio.sleep(0.8)  # its late reply arrives and is dropped with no request waiting
        second = [r.quality for r in await patient.read()]
        conn = pool.acquire(link)
        sim.silent.add(2)
        silent = []
        for _ in range(8):
            try:
                await conn.read(3, 0, 2, 2, 0.05)
            except ReadError as exc:
                silent.append(exc.reason)
        pool.release(conn)
        for d in (hasty, patient):
            await d.close()
        return first, second, silent

    with SimulatorThread([sim]):
        first, second, silent = asyncio.run(main())
    assert (first, second) == (["bad:timeout"], ["good"])
    assert silent == ["timeout"] * 8


def test_a_serial_port_refusing_its_settings_reads_bad_connection_saying_why(
        line: tuple[str, ModbusSimulator]) -> None:
    agent_end, _ = line

    async def main() -> tuple[list[str], str]:
        pool = ConnectionPool()
        link = Link("serial", agent_end, parity="even")  # a pty takes no parity with a read timeout
        driver = ModbusDriver("meter", link.host, 0, 2, METER, pool=pool, timeout=0.2, link=link)
        qualities = [r.quality for r in await driver.read()]
        cause = pool.acquire(link).cause
        await driver.close()
        return qualities, cause

    qualities, cause = asyncio.run(main())
    assert set(qualities) == {"bad:connection"}
    assert cause.startswith("the port refuses 19200 baud, parity even, 8 data and 1 stop bits")
