"""A simulated plant under load for fault tests, and exact loss/duplicate accounting."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import create_engine, text

from simulators.power_meter import PowerMeter
from simulators.server import ModbusSimulator, SimulatorThread

POINTS_PER_METER = 10


@dataclass
class Plant:
    """Meters as unit ids 1..N on one simulator port."""

    sim: ModbusSimulator
    thread: SimulatorThread
    meters: int

    def devices(self, interval: str = "200ms") -> list[dict[str, Any]]:
        """Device-map entries for every meter: ten float32 points in one request each."""
        points = [{"name": f"p{k}", "address": 2 * k, "type": "float32"} for k in range(POINTS_PER_METER)]
        return [{"id": f"meter-{u:02d}", "type": "power_meter", "host": "127.0.0.1", "port": self.sim.port,
                 "unit_id": u, "interval": interval, "timeout": interval, "points": points}
                for u in range(1, self.meters + 1)]

    def readings_served(self) -> int:
        """Readings the simulator handed out: every read request served carries 10 points."""
        return sum(n for unit, n in self.sim.requests.reads_by_unit.items()) * POINTS_PER_METER


@contextmanager
def plant(meters: int = 10) -> Iterator[Plant]:
    """Start the simulated plant; stop it afterwards."""
    sim = ModbusSimulator({u: PowerMeter(seed=u) for u in range(1, meters + 1)})
    thread = SimulatorThread([sim])
    thread.start()
    try:
        yield Plant(sim, thread, meters)
    finally:
        thread.stop()


def count_rows(url: str) -> tuple[int, int]:
    """(rows, distinct (device, point, ts)) in ``readings``."""
    engine = create_engine(url)
    with engine.connect() as conn:
        total, distinct = conn.execute(text(
            "SELECT count(*), count(DISTINCT device_id, point, ts) FROM readings")).one()
    engine.dispose()
    return int(total), int(distinct)
