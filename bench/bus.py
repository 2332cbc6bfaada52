"""Eight meters on one RTU link, one of them dead: do the other seven keep their schedule?

The agent (in-process, central ``null://``) polls 8 simulated meters (the demo's 14-point map: 3
requests a poll) behind one RTU-over-TCP converter whose line is emulated at 9600 baud 8N1, so
every request and reply takes the time its frames take on a real line (~117 ms a meter a poll
with the 4 ms turnaround: the seven live meters keep the line ~80 % busy at 1 s). Runs:

- baseline: all 8 answer;
- one dead, as the agent runs: the silent meter is backed off alone and probed only when the
  line is idle;
- one dead, no backoff: the same agent with the unit backoff switched off, as a gateway that
  asks the dead meter every cycle and waits its timeout (what the peers do).

Figures for the seven live meters: polls/s, missed cycles, poll latency; the line's requests/s.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from agent.configload import load_config_text
from bench.inprocess import running_agent
from drivers.modbus.driver import ModbusDriver
from simulators.power_meter import PowerMeter
from simulators.server import ModbusSimulator, SimulatorThread

TITLE = "Bus scheduler: 8 meters on one RTU link at 9600 baud, interval 1 s, timeout 500 ms"
COLUMNS = ["run", "live polls/s", "vs baseline", "live missed", "dead missed", "latency p99 ms", "line req/s"]
METERS, DEAD, BAUD = 8, 8, 9600
POINTS = [{"name": f"f{a}", "address": a, "type": "float32"} for a in range(0, 20, 2)] + [
    {"name": "running", "address": 20, "type": "bool", "bit": 0},
    {"name": "overtemperature", "address": 20, "type": "bool", "bit": 3},
    {"name": "energy", "table": "input", "address": 10, "type": "uint64", "scale": 0.001},
    {"name": "breaker", "table": "coil", "address": 0, "type": "bool"}]


def device_map(port: int, buffer: Path) -> str:
    devices = [{"id": f"meter{u}", "transport": "rtu_over_tcp", "host": "127.0.0.1", "port": port, "unit_id": u,
                "turnaround": "4ms", "points": POINTS} for u in range(1, METERS + 1)]
    return yaml.safe_dump({"gateway": {"id": "bench-bus"}, "central": {"url": "null://"},
                           "buffer": {"path": str(buffer)}, "defaults": {"interval": "1s", "timeout": "500ms"},
                           "devices": devices, "monitoring": {"enabled": False}, "workers": 1})


@contextmanager
def backoff_switched_off(off: bool) -> Iterator[None]:
    """The unit backoff disabled (each poll of a dead meter sends and waits its timeout)."""
    kept = ModbusDriver._track_silence
    if off:
        ModbusDriver._track_silence = lambda self, skipped: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        ModbusDriver._track_silence = kept  # type: ignore[method-assign]


def measure(seconds: float, dead: bool, backoff: bool) -> dict[str, Any]:
    sim = ModbusSimulator({u: PowerMeter(seed=u, start=0) for u in range(1, METERS + 1)}, transport="rtu_over_tcp",
                          line_baud=BAUD)
    if dead:
        sim.silent.add(DEAD)
    with SimulatorThread([sim]), tempfile.TemporaryDirectory() as tmp, backoff_switched_off(not backoff):
        cfg = load_config_text(device_map(sim.port, Path(tmp) / "buffer"))
        figures: dict[str, Any] = {}

        async def main() -> None:
            async with running_agent(cfg) as agent:
                await asyncio.sleep(min(3.0, seconds))  # warm-up: the dead meter's first timeouts and backoffs
                before = {d: (s.polls, s.missed) for d, s in agent.device_stats.items()}
                requests = sum(sim.requests.reads_by_unit.values())
                await asyncio.sleep(seconds)
                for s in agent.device_stats.values():
                    s.update_percentiles()
                live = [d for d in agent.device_stats if d != f"meter{DEAD}"]
                stats = agent.device_stats
                figures.update({
                    "live polls/s": sum(stats[d].polls - before[d][0] for d in live) / seconds,
                    "live missed": sum(stats[d].missed - before[d][1] for d in live),
                    "dead missed": stats[f"meter{DEAD}"].missed - before[f"meter{DEAD}"][1],
                    "latency p99 ms": max(stats[d].figures[1] for d in live),
                    "line req/s": (sum(sim.requests.reads_by_unit.values()) - requests) / seconds})

        asyncio.run(main())
    return figures


def run(seconds: float = 40.0) -> dict[str, Any]:
    """Measure and return the figures."""
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # its timeouts are the workload (the agent's setting)
    rows = []
    runs = [("8 meters answer (baseline)", False, True), ("1 dead, backed off alone (the agent)", True, True),
            ("1 dead, no backoff (asked every cycle)", True, False)]
    for name, dead, backoff in runs:
        row = {"run": name, **measure(seconds, dead, backoff)}
        rows.append(row)
    base = rows[0]["live polls/s"] or 1.0
    for row in rows:
        row["vs baseline"] = round(row["live polls/s"] / base, 3)
        row["live polls/s"] = round(row["live polls/s"], 2)
        row["line req/s"] = round(row["line req/s"], 1)
    return {"results": rows, "meters": METERS, "baud": BAUD, "seconds": seconds}
