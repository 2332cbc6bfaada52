"""Standalone simulator set: power meters on one port, the water plant on another."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulators.batadal import BatadalReplay
from simulators.opcua_plant import OpcUaPlant
from simulators.power_meter import PowerMeter
from simulators.profile_meter import ProfileMeter
from simulators.server import ModbusSimulator, Startable
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
    opcua: OpcUaPlant | None = None

    @property
    def servers(self) -> list[Startable]:
        """Every listening simulator."""
        return [self.meters, self.plant, *(s for s in (self.replay, self.opcua) if s is not None)]


def build(meters: int = 4, meter_port: int = 15020, plant_port: int = 15021, host: str = "127.0.0.1",
          scenario: str = "normal", schedule: list[tuple[float, str]] | None = None,
          profile: Mapping[str, Any] | None = None, meter_transport: str = "tcp",
          serial: str | None = None, baudrate: int = 19200, parity: str = "even") -> SimulatorSet:
    """Meters as unit ids 1..N on ``meter_port`` (or the serial device ``serial``), impersonating
    ``profile`` (a meter profile's YAML mapping) if given; the plant PLC as unit 1 on ``plant_port``."""
    units: dict[int, UnitModel]
    if profile is not None:
        units = {i: ProfileMeter(profile, seed=i) for i in range(1, meters + 1)}
    else:
        units = {i: PowerMeter(seed=i) for i in range(1, meters + 1)}
    plant = WaterPlant(seed=7, scenario=scenario)
    meter_sim = (ModbusSimulator(units, serial, transport="serial", baudrate=baudrate,
                                 parity={"none": "N", "even": "E", "odd": "O"}[parity]) if serial else
                 ModbusSimulator(units, host, meter_port, transport=meter_transport))
    return SimulatorSet(meter_sim, ModbusSimulator({1: plant}, host, plant_port), plant, list(schedule or []))


def add_opcua(sims: SimulatorSet, port: int, host: str = "127.0.0.1", state_dir: Path | None = None,
              user: str | None = None, password: str | None = None) -> OpcUaPlant:
    """Also serve the same water plant over OPC UA; with ``state_dir``, secured (certificate made once)."""
    cert = key = None
    if state_dir is not None:
        cert, key = state_dir / "server" / "cert.der", state_dir / "server" / "key.pem"
        if not cert.exists() or not key.exists():
            from drivers.opcua.security import make_certificate  # a key pair, made on first start
            make_certificate(state_dir / "server", "urn:hacksky:simulator:water-plant", "HackSky water plant",
                             "localhost", server=True)
            log.warning("OPC UA simulator certificate created in %s", state_dir / "server")
    sims.opcua = OpcUaPlant(sims.water_plant, port, host, certificate=cert, private_key=key,
                            users={user: password or ""} if user else None, secure_only=state_dir is not None)
    return sims.opcua


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
