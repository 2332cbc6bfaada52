"""Power meters: spikes, drops and off-pattern load flagged in power_readings."""

from __future__ import annotations

import struct
from pathlib import Path

from agent.detect.load import LoadWatch
from agent.pipeline.service import Agent
from simulators.power_meter import HOLDING_MAP, PowerMeter
from simulators.server import ModbusSimulator, SimulatorThread
from tests.helpers import async_wait_until, device_map, query, run_agent


def power_of(meter: PowerMeter) -> float:
    hi, lo = meter.image.read("holding", HOLDING_MAP["active_power"], 2) or [0, 0]
    return float(struct.unpack(">f", struct.pack(">HH", hi, lo))[0])


def test_spike_sustained_load_and_drop_are_flagged_normal_load_is_not() -> None:
    meter, watch = PowerMeter(seed=4), LoadWatch()
    flags: dict[str, int] = {"normal": 0, "doubled": 0, "dropped": 0}
    for k in range(2400):
        phase = "doubled" if 1500 <= k < 1600 else "dropped" if 2000 <= k < 2010 else "normal"
        meter.spike_factor = {"normal": 1.0, "doubled": 2.0, "dropped": 0.0}[phase]
        meter.refresh(float(k))
        score, anomalous = watch.score(power_of(meter))
        flags[phase] += anomalous
        assert score >= 6.0 or not anomalous
    assert flags == {"normal": 0, "doubled": 100, "dropped": 10}


def test_agent_fills_is_anomaly_and_anomaly_score(central_url: str, tmp_path: Path) -> None:
    meter = PowerMeter(seed=6)
    server = ModbusSimulator({1: meter})
    points = [{"name": "power", "address": HOLDING_MAP["active_power"], "type": "float32", "role": "power"},
              {"name": "voltage", "address": HOLDING_MAP["voltage_l1"], "type": "float32", "role": "voltage"}]

    async def scenario(agent: Agent) -> None:
        await async_wait_until(lambda: agent.device_stats["m"].polls >= 40, timeout=30)
        meter.spike_factor = 3.0
        polls = agent.device_stats["m"].polls
        await async_wait_until(lambda: agent.device_stats["m"].polls >= polls + 5)

    with SimulatorThread([server]):
        device = {"id": "m", "type": "power_meter", "host": "127.0.0.1", "port": server.port, "unit_id": 1,
                  "interval": "100ms", "timeout": "90ms", "points": points}
        run_agent(device_map("gw-load", central_url, str(tmp_path / "buf"), [device]), scenario)
    rows = query(central_url,
                 "SELECT power_consumption, is_anomaly, anomaly_score FROM power_readings ORDER BY timestamp")
    flagged = [r for r in rows if r[1]]
    assert flagged, "the tripled load is flagged"
    first = rows.index(flagged[0])
    assert first >= 40 and all(not r[1] for r in rows[:first])
    assert flagged[0][2] >= 6.0 and flagged[0][0] > 2 * rows[first - 1][0]
    assert all(r[2] is not None for r in rows)


def test_a_lasting_new_level_becomes_the_new_normal() -> None:
    meter, watch = PowerMeter(seed=8), LoadWatch(adopt_after=50)
    flagged = []
    for k in range(400):
        meter.spike_factor = 1.0 if k < 200 else 1.5
        meter.refresh(float(k))
        flagged.append(watch.score(power_of(meter))[1])
    assert not any(flagged[:200]) and all(flagged[200:249]) and not any(flagged[260:])
