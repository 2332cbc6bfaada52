"""Misbehaving devices: each is marked down/degraded with a reason; every other device keeps its schedule."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from agent.service import Agent
from simulators.power_meter import PowerMeter
from simulators.server import ModbusSimulator, SimulatorThread, free_port
from tests.faults.conftest import FaultRow
from tests.faults.hostile import MODES, HostileServer
from tests.helpers import device_map, run_agent

RUN_SECONDS = 6.0
INTERVAL = 0.2


def test_hostile_devices_are_isolated(tmp_path: Path, sqlite_url: str, caplog: pytest.LogCaptureFixture,
                                      fault_report: list[FaultRow]) -> None:
    healthy = ModbusSimulator({1: PowerMeter(seed=1)})
    hostile = {mode: HostileServer(mode) for mode in MODES}
    refused_port = free_port()
    point = [{"name": "v", "address": 0, "type": "float32"}]
    devices = [{"id": "healthy", "host": "127.0.0.1", "port": healthy.port, "points": point,
                "interval": "200ms", "timeout": "200ms"},
               {"id": "refused", "host": "127.0.0.1", "port": refused_port, "points": point,
                "interval": "200ms", "timeout": "200ms"}]
    devices += [{"id": mode, "host": "127.0.0.1", "port": server.port, "points": point,
                 "interval": "200ms", "timeout": "200ms"} for mode, server in hostile.items()]
    states: dict[str, tuple[str, str]] = {}
    with SimulatorThread([healthy]) as thread:
        for server in hostile.values():
            thread.call(server.start).result(5)

        async def scenario(agent: Agent) -> None:
            await asyncio.sleep(RUN_SECONDS)
            states.update({d: (drv.health.state, drv.health.reason) for d, drv in agent.drivers.items()})

        with caplog.at_level(logging.DEBUG):
            agent = run_agent(device_map("gw-hostile", sqlite_url, str(tmp_path / "buf"), devices), scenario)
        for server in hostile.values():
            thread.call(server.stop).result(5)
    stats = agent.device_stats
    expected_polls = RUN_SECONDS / INTERVAL
    assert states["healthy"] == ("up", "")
    assert stats["healthy"].polls >= 0.8 * expected_polls, "the healthy device kept its schedule"
    assert stats["healthy"].bad_readings == 0
    assert max(stats["healthy"].lag_s) < INTERVAL
    for device in ["refused", *MODES]:
        state, reason = states[device]
        assert state == "down" and reason, (device, state, reason)
        assert stats[device].polls >= 3, f"{device} is still polled (and so recovers when it heals)"
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR and f"device {device} " in r.getMessage()]
        assert len(errors) <= 2, f"{device} logged {len(errors)} errors: logged once, not every cycle"
    assert not [r for r in caplog.records if r.exc_info], "no tracebacks"
    reasons = ", ".join(f"{d}: {states[d][1]}" for d in ["refused", *MODES])
    fault_report.append(FaultRow(
        "Devices misbehaving (10 kinds)", "refused, silent, RST mid-reply, exception reply, short, garbage, "
        "oversized, wrong transaction id / unit / function code", stats["healthy"].readings,
        stats["healthy"].readings, 0, 0, None,
        f"healthy device {stats['healthy'].polls} polls of {expected_polls:.0f} scheduled, 0 bad; {reasons}"))
