"""Modbus poll path: points/s of the agent's driver (plan + decode) vs a bare pymodbus read loop.

Same simulator, same registers, same requests: 10 units x 100 float32 points (2 requests of
100 registers per unit). The baseline sends the requests and keeps the raw registers; the
agent's path also decodes every point into a Reading with quality and timestamp.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from pymodbus.client import AsyncModbusTcpClient

from agent.settings import PointConfig
from drivers.modbus import ConnectionPool, ModbusDriver
from simulators.server import ModbusSimulator, SimulatorThread
from simulators.store import RegisterImage

UNITS, POINTS = 10, 100
TITLE = f"Modbus poll path, {UNITS} units x {POINTS} float32 points"
COLUMNS = ["path", "points/s", "vs baseline", "note"]


@dataclass
class _Bank:
    """A unit with POINTS float32 values in holding registers 0..2*POINTS-1."""

    image: RegisterImage = field(default_factory=RegisterImage)

    def __post_init__(self) -> None:
        for k in range(POINTS):
            self.image.put("holding", 2 * k, k + 0.5, "float32")

    def refresh(self, now: float) -> None:
        """Values are static: the benchmark measures transport and decoding."""


async def _bare(port: int, seconds: float) -> float:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=5)
    await client.connect()
    n, started = 0, time.perf_counter()
    try:
        while time.perf_counter() - started < seconds:
            for unit in range(1, UNITS + 1):
                for start in (0, 100):
                    reply = await client.read_holding_registers(start, count=100, device_id=unit)
                    n += len(reply.registers) // 2
    finally:
        client.close()
    return n / (time.perf_counter() - started)


async def _agent(port: int, seconds: float) -> float:
    pool = ConnectionPool()
    points = [PointConfig(name=f"p{k}", address=2 * k, type="float32") for k in range(POINTS)]
    drivers = [ModbusDriver(f"u{u}", "127.0.0.1", port, u, points, pool=pool, timeout=5.0) for u in range(1, UNITS + 1)]
    n, started = 0, time.perf_counter()
    try:
        while time.perf_counter() - started < seconds:
            for d in drivers:
                n += sum(1 for r in await d.read() if r.good)
    finally:
        pool.close_all()
    return n / (time.perf_counter() - started)


def run(seconds: float = 3.0) -> dict[str, Any]:
    """Measure and return the figures."""
    server = ModbusSimulator({u: _Bank() for u in range(1, UNITS + 1)})
    with SimulatorThread([server]):
        base = asyncio.run(_bare(server.port, seconds))
        agent = asyncio.run(_agent(server.port, seconds))
    return {"results": [
        {"path": "bare pymodbus read loop (baseline)", "points/s": base, "vs baseline": 1.0, "note": "raw registers"},
        {"path": "agent ModbusDriver.read", "points/s": agent, "vs baseline": agent / base,
         "note": "planned requests, decoded Readings"},
    ], "units": UNITS, "points_per_unit": POINTS}
