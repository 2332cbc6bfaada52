"""The Modbus driver against real pymodbus servers (our simulators) on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import pytest
from pymodbus.client import AsyncModbusTcpClient

from agent.settings import PointConfig
from drivers.modbus import ConnectionPool, ModbusDriver
from simulators.patterns import PatternDevice, pattern_points
from simulators.power_meter import PowerMeter
from simulators.server import ModbusSimulator, SimulatorThread, free_port
from tests.faults.hostile import HostileServer
from tests.helpers import pattern_yaml_points


@pytest.fixture
def sims() -> Iterator[ModbusSimulator]:
    sim = ModbusSimulator({1: PatternDevice(), 2: PowerMeter(seed=2)})
    with SimulatorThread([sim]):
        yield sim


def pattern_configs() -> list[PointConfig]:
    return [PointConfig(**p) for p in pattern_yaml_points(pattern_points())]


def make_driver(port: int, unit: int, points: list[PointConfig], pool: ConnectionPool,
                device: str = "dev", timeout: float = 0.5) -> ModbusDriver:
    return ModbusDriver(device, "127.0.0.1", port, unit, points, pool=pool, timeout=timeout)


def test_every_type_and_order_decodes_to_what_the_simulator_holds(sims: ModbusSimulator) -> None:
    async def main() -> None:
        pool = ConnectionPool()
        driver = make_driver(sims.port, 1, pattern_configs(), pool)
        first = {r.point: r for r in await driver.read()}
        refused_after_first = sims.requests.function_codes.copy()
        second = {r.point: r for r in await driver.read()}
        await driver.close()
        for p in pattern_points():
            for got in (first[p.name], second[p.name]):
                assert got.quality == "good", (p, got)
                if p.type == "string":
                    assert got.text == p.value
                else:
                    assert got.value == float(p.value), (p, got)
        # the input table has holes: merged spans were refused once, then read point by point
        assert driver.health.state == "up"
        assert len(driver.requests) == sum(1 for p in pattern_points() if p.table in ("input", "coil", "discrete")) + 2
        assert sims.requests.function_codes[4] - refused_after_first[4] == sum(
            1 for p in pattern_points() if p.table == "input")

    asyncio.run(main())


def test_agent_driver_sends_only_read_function_codes(sims: ModbusSimulator) -> None:
    async def main() -> None:
        pool = ConnectionPool()
        drivers = [make_driver(sims.port, 1, pattern_configs(), pool, "a"),
                   make_driver(sims.port, 2, [PointConfig(name="v", address=0, type="float32"),
                                              PointConfig(name="e", table="input", address=10, type="uint64"),
                                              PointConfig(name="b", table="coil", address=0, type="bool")],
                               pool, "b"),
                   make_driver(sims.port, 9, [PointConfig(name="x", address=0)], pool, "missing-unit")]
        for _ in range(3):
            for d in drivers:
                await d.read()
        for d in drivers:
            await d.close()
        # control: the recorder does see writes when someone sends them
        client = AsyncModbusTcpClient("127.0.0.1", port=sims.port, timeout=1, retries=0)
        await client.connect()
        reply = await client.write_register(0, 1, device_id=1)
        client.close()
        assert reply.isError()

    asyncio.run(main())
    codes = sims.requests.function_codes
    assert codes[6] == 1  # only the control write
    assert set(codes) - {6} <= {1, 2, 3, 4}
    assert sum(codes[fc] for fc in (1, 2, 3, 4)) > 100


def test_unreachable_device_is_down_while_others_keep_reading(sims: ModbusSimulator,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    dead_port = free_port()

    async def main() -> None:
        pool = ConnectionPool()
        dead = make_driver(dead_port, 1, [PointConfig(name="x", address=0)], pool, "dead")
        live = make_driver(sims.port, 2, [PointConfig(name="v", address=0, type="float32")], pool, "live")
        for _ in range(5):
            bad = await dead.read()
            good = await live.read()
            assert [r.quality for r in bad] == ["bad:connection"]
            assert good[0].good and 200 < (good[0].value or 0) < 260
        assert dead.health.state == "down" and "connection" in dead.health.reason
        assert live.health.state == "up"
        await dead.close()
        await live.close()

    with caplog.at_level(logging.DEBUG, logger="drivers"):
        asyncio.run(main())
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and "dead" in r.getMessage()]
    assert len(errors) == 1, "a down device is logged once at ERROR"


def test_silent_device_times_out_and_exception_replies_are_per_point(sims: ModbusSimulator) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections (kernel backlog) and never answers

    async def main() -> None:
        pool = ConnectionPool()
        mute = make_driver(silent.getsockname()[1], 1, [PointConfig(name="x", address=0)], pool, "mute", 0.3)
        partial = make_driver(sims.port, 2, [PointConfig(name="v", address=0, type="float32"),
                                             PointConfig(name="ghost", address=500)], pool, "partial")
        assert [r.quality for r in await mute.read()] == ["bad:timeout"]
        readings = {r.point: r.quality for r in await partial.read()}
        assert readings == {"v": "good", "ghost": "bad:exception:2"}
        assert partial.health.state == "degraded"
        await mute.close()
        await partial.close()

    try:
        asyncio.run(main())
    finally:
        silent.close()


def test_device_recovers_when_its_server_comes_back(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()

    async def main() -> None:
        pool = ConnectionPool()
        driver = make_driver(port, 1, [PointConfig(name="v", address=0, type="float32")], pool)
        assert not (await driver.read())[0].good
        sim = ModbusSimulator({1: PowerMeter()}, port=port)
        await sim.start()
        try:
            for _ in range(100):
                if (await driver.read())[0].good:
                    break
                await asyncio.sleep(0.1)
            assert driver.health.state == "up"
        finally:
            await driver.close()
            await sim.stop()

    with caplog.at_level(logging.INFO, logger="drivers"):
        asyncio.run(main())
    assert any("recovered" in r.getMessage() for r in caplog.records)


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A port whose accept queue is full: the kernel drops further SYNs, so a connect gets no answer."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield port
    finally:
        for s in [*fillers, listener]:
            s.close()


def test_a_down_device_is_logged_once_with_address_and_cause(unanswered_port: int,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    refused_port = free_port()
    causes = {"refused": ("127.0.0.1", refused_port, "connection refused"),
              "unanswered": ("127.0.0.1", unanswered_port, "no answer within 0.3s"),
              "unnamed": ("plc.invalid", 502, "name not resolved")}  # .invalid never resolves (RFC 2606)

    async def main() -> None:
        pool = ConnectionPool()
        drivers = {name: ModbusDriver(name, host, port, 1, [PointConfig(name="x", address=0)], pool=pool,
                                      timeout=0.3) for name, (host, port, _) in causes.items()}
        for _ in range(4):
            for driver in drivers.values():
                assert [r.quality for r in await driver.read()] == ["bad:connection"]
        for driver in drivers.values():
            await driver.close()

    with caplog.at_level(logging.DEBUG, logger="drivers"):
        asyncio.run(main())
    for name, (host, port, cause) in causes.items():
        lines = [r.getMessage() for r in caplog.records
                 if r.levelno >= logging.WARNING and r.name.startswith("drivers") and name in r.getMessage()]
        assert len(lines) == 1, lines
        assert lines[0].startswith(f"device {name} ({host}:{port} unit 1) is down: {cause}"), lines[0]


def test_a_silent_device_costs_one_timeout_per_poll_not_one_per_request(caplog: pytest.LogCaptureFixture) -> None:
    silent = HostileServer("silent")
    points = [PointConfig(name="v", address=0, type="float32"),
              PointConfig(name="e", table="input", address=10, type="uint64"),
              PointConfig(name="b", table="coil", address=0, type="bool")]

    async def main() -> None:
        await silent.start()
        pool = ConnectionPool()
        driver = make_driver(silent.port, 1, points, pool, "mute", timeout=0.2)
        assert len(driver.requests) == 3
        for _ in range(3):
            assert [r.quality for r in await driver.read()] == ["bad:timeout"] * 3
        await driver.close()
        await silent.stop()

    with caplog.at_level(logging.DEBUG, logger="drivers"):
        asyncio.run(main())
    assert silent.requests == 3, "one request per poll: the device did not answer, the rest is not sent"
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("drivers")]
    assert lines == [f"device mute (127.0.0.1:{silent.port} unit 1) is down: no reply within 0.2s"]


def test_a_new_cause_is_logged_again_and_recovery_once(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()

    async def main() -> None:
        pool = ConnectionPool()
        driver = make_driver(port, 1, [PointConfig(name="v", address=0, type="float32")], pool, "flaky", 0.3)
        await driver.read()  # refused
        silent = HostileServer("silent")
        silent.port = port
        await silent.start()
        for _ in range(200):  # reads fail fast until the backoff lets the next connect through
            if (await driver.read())[0].quality == "bad:timeout":
                break
            await asyncio.sleep(0.05)
        await driver.read()
        await silent.stop()
        sim = ModbusSimulator({1: PowerMeter()}, port=port)
        await sim.start()
        for _ in range(200):
            if (await driver.read())[0].good:
                break
            await asyncio.sleep(0.05)
        await driver.read()
        await driver.close()
        await sim.stop()

    with caplog.at_level(logging.DEBUG, logger="drivers"):
        asyncio.run(main())
    lines = [(r.levelname, r.getMessage()) for r in caplog.records
             if r.levelno >= logging.INFO and r.name.startswith("drivers")]
    assert lines == [("ERROR", f"device flaky (127.0.0.1:{port} unit 1) is down: connection refused"),
                     ("ERROR", f"device flaky (127.0.0.1:{port} unit 1) is down: no reply within 0.3s"),
                     ("INFO", "device flaky recovered (was down)")]
