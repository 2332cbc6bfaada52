"""Simulators -> agent -> real MariaDB: exact values, no loss, no duplicates, read-only."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.pipeline.service import Agent
from simulators.patterns import PatternDevice, pattern_points
from simulators.power_meter import PowerMeter
from simulators.server import ModbusSimulator, SimulatorThread
from simulators.water_plant import WaterPlant
from tests.helpers import TcpProxy, async_wait_until, device_map, pattern_yaml_points, query, run_agent

METER_POINTS = [
    {"name": "voltage", "address": 0, "type": "float32", "role": "voltage"},
    {"name": "power", "address": 12, "type": "float32", "role": "power"},
    {"name": "energy", "table": "input", "address": 10, "type": "uint64", "scale": 0.001},
    {"name": "breaker", "table": "coil", "address": 0, "type": "bool"},
]


@pytest.fixture
def sim() -> Iterator[ModbusSimulator]:
    server = ModbusSimulator({1: PatternDevice(), 2: PowerMeter(seed=3)})
    with SimulatorThread([server]):
        yield server


def devices(port: int) -> list[dict]:
    return [
        {"id": "pattern", "type": "plc", "host": "127.0.0.1", "port": port, "unit_id": 1,
         "interval": "500ms", "timeout": "400ms", "points": pattern_yaml_points(pattern_points())},
        {"id": "meter", "type": "power_meter", "host": "127.0.0.1", "port": port, "unit_id": 2,
         "points": METER_POINTS},
    ]


def test_every_type_and_order_lands_exactly_and_only_reads_are_sent(
        sim: ModbusSimulator, mariadb_url: str, tmp_path: Path) -> None:
    async def scenario(agent: Agent) -> None:
        await async_wait_until(lambda: agent.stats.rows_written > 2000)

    agent = run_agent(device_map("gw-e2e", mariadb_url, str(tmp_path / "buf"), devices(sim.port)), scenario)
    stored = {(p, v, t, q) for p, v, t, q in query(mariadb_url, """
        SELECT r.point, r.value, r.value_text, r.quality FROM readings r
        JOIN devices d ON d.id = r.device_id WHERE d.device_id_str = 'pattern'""")}
    expected = set()
    for p in pattern_points():
        if p.type == "string":
            expected.add((p.name, None, p.value, "good"))
        else:
            expected.add((p.name, float(p.value), None, "good"))
    assert stored == expected, "each point's stored values are exactly what the simulator serves"
    # nothing lost or duplicated: stored rows == readings the agent took == polls the simulator served
    (count,) = query(mariadb_url, "SELECT count(*) FROM readings")[0]
    assert count == agent.stats.readings_taken
    served_meter_polls = sum(1 for r in sim.requests.recent if r.unit == 2 and r.function_code == 3 and r.address == 0)
    (meter_voltage_rows,) = query(mariadb_url, """SELECT count(*) FROM readings r JOIN devices d
        ON d.id = r.device_id WHERE d.device_id_str = 'meter' AND r.point = 'voltage'""")[0]
    assert meter_voltage_rows == served_meter_polls
    (power_rows,) = query(mariadb_url, "SELECT count(*) FROM power_readings WHERE voltage BETWEEN 220 AND 240")[0]
    assert power_rows == served_meter_polls
    assert set(sim.requests.function_codes) <= {1, 2, 3, 4}


def test_mysql_outage_mid_run_loses_and_duplicates_nothing(
        sim: ModbusSimulator, mariadb_url: str, mariadb_server: str, tmp_path: Path) -> None:
    host_port = mariadb_server.rsplit("@", 1)[1]
    host, port = host_port.split(":")
    proxy = TcpProxy(host, int(port))
    observed: dict[str, object] = {}

    async def scenario(agent: Agent) -> None:
        await async_wait_until(lambda: agent.stats.rows_written > 100)
        thread.run_sync(proxy.cut)
        written_before = agent.stats.rows_written
        await async_wait_until(lambda: agent.stats.central_state == "down", timeout=30)
        await asyncio.sleep(2.0)
        assert agent.delivery.buffer is not None
        observed["buffered_during_outage"] = agent.delivery.buffer.reading_rows
        observed["written_during_outage"] = agent.stats.rows_written - written_before
        thread.run_sync(proxy.restore)
        await async_wait_until(lambda: agent.stats.central_state == "up" and agent.delivery.buffer is not None
                               and agent.delivery.buffer.reading_rows < 50, timeout=60)
        await asyncio.sleep(0.5)

    async def start_proxy() -> None:
        await proxy.start()

    # the proxy runs on the simulators' loop so it lives across the agent's own loop
    thread = SimulatorThread([])
    thread.start()
    try:
        thread.call(start_proxy).result(5)
        url = mariadb_url.replace(host_port, f"127.0.0.1:{proxy.port}")
        agent = run_agent(device_map("gw-outage", url, str(tmp_path / "buf"), devices(sim.port)), scenario)
    finally:
        thread.call(proxy.stop).result(5)
        thread.stop()
    assert int(observed["buffered_during_outage"]) > 100  # type: ignore[call-overload]
    assert observed["written_during_outage"] == 0
    (count, distinct) = query(mariadb_url, """SELECT count(*), count(DISTINCT device_id, point, ts)
                                              FROM readings""")[0]
    assert count == distinct == agent.stats.readings_taken, "0 lost, 0 duplicated"
    assert agent.stats.rows_written >= count
    served = sum(1 for r in sim.requests.recent if r.unit == 2 and r.function_code == 3 and r.address == 0)
    (voltage_rows,) = query(mariadb_url, "SELECT count(*) FROM readings WHERE point = 'voltage'")[0]
    assert voltage_rows == served


def test_frozen_level_attack_raises_then_resolves_an_alert(mariadb_url: str, tmp_path: Path) -> None:
    plant = WaterPlant(seed=1)
    server = ModbusSimulator({1: plant})
    points = [{"name": "tank1_level", "address": 0, "type": "float32", "stuck_after": 4,
               "limits": {"min": 0.5, "max": 5.5}},
              {"name": "pump1_running", "table": "coil", "address": 0, "type": "bool"}]
    yaml_text = device_map("gw-plant", mariadb_url, str(tmp_path / "buf"), [
        {"id": "plc", "type": "plc", "host": "127.0.0.1", "port": server.port, "points": points}])

    with SimulatorThread([server]) as sims:
        async def scenario(agent: Agent) -> None:
            await asyncio.sleep(1.0)
            assert not agent.tracker.open
            sims.run_sync(lambda: plant.set_scenario("pump_forced_frozen_level"))
            await async_wait_until(lambda: bool(agent.tracker.open), timeout=10)
            sims.run_sync(lambda: plant.set_scenario("normal"))
            await async_wait_until(lambda: not agent.tracker.open, timeout=10)
            await asyncio.sleep(0.5)

        run_agent(yaml_text, scenario)
    rows = query(mariadb_url, "SELECT alert_type, severity, resolved, point, title FROM alerts")
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [("stuck_value", "medium", 1, "tank1_level")]
