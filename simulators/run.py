"""Standalone simulator set: power meters on one port, the water plant on another."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from simulators.batadal import BatadalReplay
from simulators.power_meter import PowerMeter
from simulators.server import ModbusSimulator
from simulators.store import UnitModel
from simulators.water_plant import SCENARIOS, WaterPlant

log = logging.getLogger(__name__)


@dataclass
class SimulatorSet:
    """The simulators the demo and ``hacksky-edge simulate`` run."""

    meters: ModbusSimulator
    plant: ModbusSimulator
    water_plant: WaterPlant
    schedule: list[tuple[float, str]] = field(default_factory=list)
    replay: ModbusSimulator | None = None

    @property
    def servers(self) -> list[ModbusSimulator]:
        """Every listening simulator."""
        return [self.meters, self.plant] + ([self.replay] if self.replay else [])


def build(meters: int = 4, meter_port: int = 15020, plant_port: int = 15021, host: str = "127.0.0.1",
          scenario: str = "normal", schedule: list[tuple[float, str]] | None = None) -> SimulatorSet:
    """Meters as unit ids 1..N on ``meter_port``; the plant PLC as unit 1 on ``plant_port``."""
    units: dict[int, UnitModel] = {i: PowerMeter(seed=i) for i in range(1, meters + 1)}
    plant = WaterPlant(seed=7, scenario=scenario)
    return SimulatorSet(ModbusSimulator(units, host, meter_port),
                        ModbusSimulator({1: plant}, host, plant_port), plant, list(schedule or []))


def add_replay(sims: SimulatorSet, path: str, port: int, row_seconds: float, start: int = 0,
               stop: int | None = None, host: str = "127.0.0.1") -> BatadalReplay:
    """Also serve a BATADAL-format file as unit 1 on ``port``, one row per ``row_seconds``."""
    replay = BatadalReplay(path, row_seconds, start, stop)
    sims.replay = ModbusSimulator({1: replay}, host, port)
    return replay


def parse_schedule(items: list[str]) -> list[tuple[float, str]]:
    """``["30:pump_forced_frozen_level", "90:normal"]`` -> sorted (seconds, scenario) pairs."""
    out: list[tuple[float, str]] = []
    for item in items:
        seconds, _, name = item.partition(":")
        if name not in SCENARIOS:
            raise ValueError(f"unknown scenario {name!r} in {item!r}; choose from {', '.join(SCENARIOS)}")
        out.append((float(seconds), name))
    return sorted(out)


async def run_schedule(sims: SimulatorSet) -> None:
    """Switch the plant's scenario at the scheduled offsets (seconds from now)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for at, name in sims.schedule:
        await asyncio.sleep(max(0.0, start + at - loop.time()))
        sims.water_plant.set_scenario(name)
        log.warning("water plant scenario is now %r", name)


async def serve(sims: SimulatorSet, stop: asyncio.Event) -> None:
    """Run every simulator until ``stop`` is set."""
    for server in sims.servers:
        await server.start()
    switcher = asyncio.create_task(run_schedule(sims))
    try:
        await stop.wait()
    finally:
        switcher.cancel()
        for server in sims.servers:
            await server.stop()
