"""Report by exception: rows stored per reading taken, on meters whose values vary as real ones do.

The agent (in-process, central ``null://``) polls simulated power meters (the demo's map: phase
voltages, currents, power, frequency, power factor, temperature, energy counter, status bits) at
1 s. Baseline: every reading stored (no deadband). Measured: the same map with the deadbands a
plant engineer would pick for trending (0.5 V, 1 % of current and power, 0.02 Hz, 0.01 PF, 0.5 degC,
0.1 kWh; bits on change) and a 5-minute heartbeat. Figures: stored / taken per kind of point, the
agent's CPU per reading taken, and what the stored fraction means for the largest fleet a central
database sustains (its rows/s divided by the stored fraction).
"""

from __future__ import annotations

import asyncio
import resource
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from agent.configload import load_config_text
from bench.inprocess import running_agent
from drivers.base import Reading
from simulators.power_meter import HOLDING_MAP, PowerMeter
from simulators.server import ModbusSimulator, SimulatorThread

TITLE = "Report by exception: 10 meters at 1 s, deadbands vs every reading stored"
COLUMNS = ["run", "readings taken", "rows stored", "stored / taken", "voltage", "current", "power", "frequency",
           "energy", "bits", "CPU µs per reading", "fleet vs baseline"]
METERS = 10
#: kind -> (points, deadband)
KINDS: dict[str, tuple[list[dict[str, Any]], object]] = {
    "voltage": ([{"name": f"voltage_l{i}", "address": HOLDING_MAP[f"voltage_l{i}"], "unit": "V"} for i in (1, 2, 3)],
                0.5),
    "current": ([{"name": f"current_l{i}", "address": HOLDING_MAP[f"current_l{i}"], "unit": "A"} for i in (1, 2, 3)],
                "1%"),
    "power": ([{"name": "active_power", "address": HOLDING_MAP["active_power"], "unit": "kW"}], "1%"),
    "frequency": ([{"name": "frequency", "address": HOLDING_MAP["frequency"], "unit": "Hz"}], 0.02),
    "pf": ([{"name": "power_factor", "address": HOLDING_MAP["power_factor"]}], 0.01),
    "temperature": ([{"name": "temperature", "address": HOLDING_MAP["temperature"], "unit": "degC"}], 0.5),
    "energy": ([{"name": "energy", "table": "input", "address": 10, "type": "uint64", "scale": 0.001,
                 "unit": "kWh"}], 0.1),
    "bits": ([{"name": "running", "address": 20, "type": "bool", "bit": 0},
              {"name": "breaker", "table": "coil", "address": 0, "type": "bool"}], None),
}


def points(thinned: bool) -> list[dict[str, Any]]:
    out = []
    for specs, band in KINDS.values():
        for spec in specs:
            point = {"type": "float32", **spec}
            if thinned:
                point.update({"heartbeat": "5m", **({"deadband": band} if band is not None else {})})
            out.append(point)
    return out


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(seconds: float, thinned: bool) -> dict[str, Any]:
    sim = ModbusSimulator({u: PowerMeter(seed=u, start=0) for u in range(1, METERS + 1)})
    with SimulatorThread([sim]), tempfile.TemporaryDirectory() as tmp:
        devices = [{"id": f"meter{u}", "host": "127.0.0.1", "port": sim.port, "unit_id": u, "points": points(thinned)}
                   for u in range(1, METERS + 1)]
        cfg = load_config_text(yaml.safe_dump({
            "gateway": {"id": "bench-rbe"}, "central": {"url": "null://", "writer": "thread"},
            "buffer": {"path": str(Path(tmp) / "buffer")}, "defaults": {"interval": "1s", "timeout": "500ms"},
            "devices": devices, "monitoring": {"enabled": False}, "workers": 1}))
        out: dict[str, Any] = {}

        async def main() -> None:
            stored: Counter[str] = Counter()
            taken: Counter[str] = Counter()
            async with running_agent(cfg) as agent:
                keep = agent.thinning.keep

                def counting(device: str, readings: list[Reading]) -> list[Reading]:
                    kept = keep(device, readings)
                    taken.update(r.point for r in readings)
                    stored.update(r.point for r in kept)
                    return kept

                agent.thinning.keep = counting  # type: ignore[method-assign]
                cpu = _cpu()
                await asyncio.sleep(seconds)
                cpu = _cpu() - cpu
            total, kept_total = sum(taken.values()), sum(stored.values())
            kinds = {kind: [s["name"] for s in specs] for kind, (specs, _) in KINDS.items()}
            out.update({"readings taken": total, "rows stored": kept_total,
                        "stored / taken": round(kept_total / max(1, total), 3),
                        **{kind: round(sum(stored[n] for n in names) / max(1, sum(taken[n] for n in names)), 3)
                           for kind, names in kinds.items()},
                        "CPU µs per reading": round(1e6 * cpu / max(1, total), 1)})

        asyncio.run(main())
    return out


def run(seconds: float = 60.0) -> dict[str, Any]:
    """Measure and return the figures."""
    rows = [{"run": "every reading stored (baseline)", **measure(seconds, thinned=False)},
            {"run": "deadbands + 5 min heartbeat", **measure(seconds, thinned=True)}]
    for row in rows:
        row["fleet vs baseline"] = round(rows[0]["stored / taken"] / max(row["stored / taken"], 1e-9), 2)
    return {"results": rows, "meters": METERS, "seconds": seconds}
