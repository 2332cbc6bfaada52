"""A farm of simulated Modbus devices for load benchmarks: one port per device, as on a plant network.

``python -m bench.farm --devices 500 --points 20 --ports-file PORTS.json`` serves device ``i`` as
unit 1 on its own loopback port, ``points`` float32 holding registers from address 0, every value
changing on every refresh (so "send on change" and "send all" move the same data). The port list
is written to ``--ports-file`` once every device listens; SIGTERM stops the farm.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import struct
import time
from pathlib import Path

from simulators.server import ModbusSimulator
from simulators.store import RegisterImage


class BenchUnit:
    """``points`` float32 values (big-endian words) that all change on every refresh."""

    def __init__(self, points: int, seed: int) -> None:
        self.image = RegisterImage()
        self.points = points
        self.seed = seed
        self._pack = struct.Struct(f">{points}f").pack
        self.refresh(time.monotonic())

    def refresh(self, now: float) -> None:
        """New values: a slow ramp offset per point and device."""
        base = (now * 10.0) % 1000.0 + self.seed
        raw = self._pack(*(base + p for p in range(self.points)))
        holding = self.image.tables["holding"]
        for i in range(self.points * 2):
            holding[i] = (raw[2 * i] << 8) | raw[2 * i + 1]


async def serve(devices: int, points: int, ports_file: Path, host: str = "127.0.0.1") -> None:
    """Start every device, publish the ports, run until SIGTERM/SIGINT."""
    sims = []
    for i in range(devices):  # one at a time: a port is taken before the next free one is picked
        sim = ModbusSimulator({1: BenchUnit(points, seed=i)}, host)
        await sim.start()
        sims.append(sim)
    tmp = ports_file.with_suffix(".tmp")
    tmp.write_text(json.dumps([s.port for s in sims]))
    tmp.replace(ports_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for sim in sims:
        await sim.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.farm", description=__doc__)
    parser.add_argument("--devices", type=int, required=True)
    parser.add_argument("--points", type=int, required=True, help="float32 points per device (<= 62 per request)")
    parser.add_argument("--ports-file", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(serve(args.devices, args.points, args.ports_file))


if __name__ == "__main__":
    main()
