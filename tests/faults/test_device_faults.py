"""Misbehaving devices: each is marked down/degraded with a reason; every other device keeps its schedule."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from agent.pipeline.service import Agent
from simulators.power_meter import PowerMeter
from simulators.server import ModbusSimulator, SimulatorThread, free_port
from tests.faults.conftest import FaultRow
from tests.faults.hostile import MODES, HostileServer
from tests.helpers import async_wait_until, device_map, run_agent

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


def test_dead_devices_are_logged_once_each_with_address_and_cause(tmp_path: Path, sqlite_url: str,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """Issue #12: a silent device logged APScheduler's "skipped" line 33 times in 45 s and took 3 s a poll."""
    silent = HostileServer("silent")
    refused_port = free_port()
    three_spans = [{"name": "v", "address": 0, "type": "float32"},
                   {"name": "e", "table": "input", "address": 10, "type": "uint64"},
                   {"name": "b", "table": "coil", "address": 0, "type": "bool"}]
    timing = {"interval": "200ms", "timeout": "200ms"}  # a poll of a silent device takes the whole interval
    devices = [{"id": "silent", "host": "127.0.0.1", "port": silent.port, "points": three_spans, **timing},
               {"id": "refused", "host": "127.0.0.1", "port": refused_port, "points": three_spans, **timing},
               {"id": "unnamed", "host": "plc.invalid", "port": 502, "points": three_spans, **timing}]

    async def scenario(agent: Agent) -> None:
        await silent.start()
        await async_wait_until(lambda: agent.device_stats["silent"].missed >= 3 and silent.requests >= 5)
        await silent.stop()

    with caplog.at_level(logging.INFO):
        agent = run_agent(device_map("gw-dead", sqlite_url, str(tmp_path / "buf"), devices), scenario)
    stats = agent.device_stats["silent"]
    assert silent.requests <= stats.polls + 1, "one request per poll of a silent device, not one per span"
    lines = sorted(r.getMessage() for r in caplog.records
                   if r.levelno >= logging.WARNING and not r.name.startswith(("pymodbus", "asyncio")))
    # the resolver's own words vary by system ("Name or service not known", "No address associated ...")
    unnamed = [line for line in lines if line.startswith("device unnamed (plc.invalid:502 unit 1) is down: "
                                                         "name not resolved")]
    assert len(unnamed) == 1, lines
    assert sorted(set(lines) - set(unnamed)) == sorted([
        f"device silent (127.0.0.1:{silent.port} unit 1) is down: no reply within 0.2s",
        f"device refused (127.0.0.1:{refused_port} unit 1) is down: connection refused",
        "device silent: a poll took longer than the 0.2s interval (timeout 0.2s); cycles skipped meanwhile "
        "are counted (missed_cycles), not logged, until it keeps its schedule again",
    ]) and len(lines) == 4, lines
