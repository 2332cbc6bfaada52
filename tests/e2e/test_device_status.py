"""What the central ``devices`` and ``alerts`` tables say about a device over an agent's life."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.exc import DBAPIError

from agent.central import schema
from agent.central.writer import to_datetime
from agent.pipeline.service import LAST_SEEN_EVERY_US, Agent
from simulators.power_meter import PowerMeter
from simulators.server import ModbusSimulator, SimulatorThread
from tests.helpers import device_map, run_agent

T0 = 1_900_000_000_000_000  # the agent's pinned clock, µs (2030-03-17 17:46:40 UTC)


class PinnedClock:
    """``now_us`` of the agent, moved by the test only."""

    def __init__(self, us: int) -> None:
        self.us = us

    def __call__(self) -> int:
        return self.us


def device_row(url: str, device: str) -> Any:
    """(status, status_reason, last_seen, updated_at, readings stored) of one device."""
    d, r = schema.devices, schema.readings
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            count = select(func.count()).select_from(r).where(r.c.device_id == d.c.id).scalar_subquery()
            return conn.execute(select(d.c.status, d.c.status_reason, d.c.last_seen, d.c.updated_at, count)
                                .where(d.c.device_id_str == device)).first()
    finally:
        engine.dispose()


async def until_row(url: str, device: str, predicate: Any, timeout: float = 20.0) -> Any:
    """The device's row once ``predicate(row)`` holds (read off the agent's event loop)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            row = await asyncio.to_thread(device_row, url, device)
        except DBAPIError:  # the agent has not created the schema yet
            row = None
        if row is not None and predicate(row):
            return row
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"device row never matched: {row}")
        await asyncio.sleep(0.05)


def test_last_seen_is_refreshed_every_30s_not_every_poll_and_a_stop_marks_devices_unknown(
        tmp_path: Path, central_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = PinnedClock(T0)
    monkeypatch.setattr("agent.pipeline.service.now_us", clock)
    sim = ModbusSimulator({1: PowerMeter(seed=3)})
    devices = [{"id": "m1", "host": "127.0.0.1", "port": sim.port, "interval": "50ms", "timeout": "50ms",
                "points": [{"name": "v", "address": 0, "type": "float32"}]}]
    seen: dict[str, datetime] = {}

    async def scenario(agent: Agent) -> None:
        first = await until_row(central_url, "m1", lambda row: row.status == "online" and row.last_seen)
        assert first.updated_at == to_datetime(T0)
        polls = agent.device_stats["m1"].polls + 10
        while agent.device_stats["m1"].polls < polls:
            await asyncio.sleep(0.05)
        # everything polled so far is stored: no poll since the first refreshed last_seen
        later = await until_row(central_url, "m1", lambda row: row[4] >= polls)
        assert (later.last_seen, later.updated_at) == (first.last_seen, to_datetime(T0))
        clock.us += LAST_SEEN_EVERY_US
        refreshed = await until_row(central_url, "m1", lambda row: row.last_seen > first.last_seen)
        assert (refreshed.status, refreshed.updated_at) == ("online", to_datetime(T0 + LAST_SEEN_EVERY_US))
        seen["refreshed"] = refreshed.last_seen

    with SimulatorThread([sim]):
        run_agent(device_map("gw-seen", central_url, str(tmp_path / "buf"), devices), scenario)
    stopped = device_row(central_url, "m1")
    assert (stopped.status, stopped.status_reason) == ("unknown", "agent stopped"), "delivered before exit"
    assert stopped.last_seen >= seen["refreshed"]


def test_a_device_stuck_degraded_raises_one_alert_that_closes_when_it_recovers(tmp_path: Path,
                                                                               central_url: str) -> None:
    meter = PowerMeter(seed=4)
    sim = ModbusSimulator({1: meter})
    devices = [{"id": "m1", "host": "127.0.0.1", "port": sim.port, "interval": "50ms", "timeout": "50ms",
                "points": [{"name": "v", "address": 0, "type": "float32"},
                           {"name": "ghost", "address": 500, "type": "uint16"}]}]  # not in the map: exception 2
    a = schema.alerts

    def alerts() -> list[Any]:
        engine = create_engine(central_url)
        try:
            with engine.connect() as conn:
                return list(conn.execute(select(a.c.alert_type, a.c.title, a.c.message, a.c.resolved)
                                         .where(a.c.alert_type == "device_degraded")))
        finally:
            engine.dispose()

    async def until(predicate: Any) -> list[Any]:
        rows: list[Any] = []
        for _ in range(400):
            with contextlib.suppress(DBAPIError):  # the agent has not created the schema yet
                rows = await asyncio.to_thread(alerts)
            if predicate(rows):
                return rows
            await asyncio.sleep(0.05)
        raise AssertionError(f"alerts never matched: {rows}")

    with SimulatorThread([sim]) as thread:
        async def scenario(agent: Agent) -> None:
            opened = await until(lambda rows: len(rows) == 1)
            assert agent.device_stats["m1"].polls >= 3 and agent.drivers["m1"].health.state == "degraded"
            polls = agent.device_stats["m1"].polls + 10
            while agent.device_stats["m1"].polls < polls:
                await asyncio.sleep(0.05)
            assert await asyncio.to_thread(alerts) == opened, "opened once, not once per poll"
            thread.run_sync(lambda: meter.image.put("holding", 500, 7, "uint16"))  # the register appears
            await until(lambda rows: bool(rows) and rows[0].resolved)

        run_agent(device_map("gw-degraded", central_url, str(tmp_path / "buf"), devices), scenario)
    (row,) = alerts()
    assert row.title == "m1 degraded: some points unreadable" and row.resolved
    assert row.message == "m1: exception:2 x1 (3 polls in a row)", "opened at the third degraded poll"
