"""Detection the way a plant runs it: device registers -> agent -> detectors -> MariaDB rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from agent.detect.dataset import load_csv
from agent.detect.evaluate import train_from_csv
from agent.detect.model import DetectorModel
from agent.detect.stream import StreamingDetector
from agent.pipeline.service import Agent
from simulators.batadal import BatadalReplay, register_points
from simulators.server import ModbusSimulator, SimulatorThread
from simulators.water_plant import WaterPlant
from tests.helpers import async_wait_until, device_map, query, run_agent

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "batadal"
#: rows of dataset04 from 25/09/2016 00:00; attack 2 is labelled 26/09 11:00 - 27/09 10:00 (rows 2027-2050)
FIRST_ROW, LAST_ROW = 1992, 2060
ROW_SECONDS = 0.15


def model_signals(path: Path) -> list[str]:
    return DetectorModel.load(path).signals


def detection_landed(agent: Agent) -> Callable[[], bool]:
    return lambda: agent.detection is not None and agent.detection.incidents.opened > 0


def test_batadal_replay_through_modbus_lands_attack_detection_in_mariadb(mariadb_url: str, tmp_path: Path) -> None:
    model = tmp_path / "ctown.npz"
    train_from_csv(DATA / "BATADAL_dataset03.csv").save(model)
    replay = BatadalReplay(DATA / "BATADAL_dataset04_relabelled.csv", ROW_SECONDS, FIRST_ROW, LAST_ROW)
    server = ModbusSimulator({1: replay})
    device = {"id": "ctown", "type": "plc", "host": "127.0.0.1", "port": 0, "unit_id": 1, "interval": "30ms",
              "timeout": "25ms", "points": register_points(replay.signals)}

    async def scenario(agent: Agent) -> None:
        await async_wait_until(lambda: agent.detection is not None
                               and agent.detection.rows_scored >= LAST_ROW - FIRST_ROW - 1, timeout=60)
        await async_wait_until(lambda: agent.stats.central_state == "up" and not agent.delivery.buffer.event_rows)

    with SimulatorThread([server]):
        device["port"] = server.port
        agent = run_agent(device_map("gw-ctown", mariadb_url, str(tmp_path / "buf"), [device],
                                     detection={"model": str(model), "clock": "ctown/hour",
                                                "target_system": "C-Town"}), scenario)
    assert agent.detection is not None
    assert agent.detection.rows_scored == LAST_ROW - FIRST_ROW - 1, "one score per replayed row (first primes)"
    rows = query(mariadb_url, """SELECT a.attack_type, a.confidence, a.threat_level, a.target_system,
        a.indicators, a.detected_at, a.gateway_id FROM attack_detections a ORDER BY a.detected_at""")
    assert len(rows) >= 1
    attack_type, conf, level, target, indicators, detected_at, gateway = rows[0]
    assert attack_type in {"Sensor Tampering", "Flow Manipulation", "Process Anomaly", "Replay"}
    assert 50 <= conf <= 100 and level in {"low", "medium", "high", "critical"}
    assert target == "C-Town" and gateway == "gw-ctown"
    evidence = json.loads(indicators)
    assert evidence["signals"] and evidence["findings"][0]["check"]
    # the same streaming code offline, fed the same (float32) rows, first alarms on the same row
    data = load_csv(DATA / "BATADAL_dataset04_relabelled.csv")
    x = data.select(model_signals(model)).astype(np.float32).astype(float)
    detector = StreamingDetector(DetectorModel.load(model))
    first = next(r for r in range(FIRST_ROW, LAST_ROW) if detector.step(x[r], float(data.hours[r])).alarm)
    assert 2020 <= first <= 2030, "attack 2 is caught at its start"
    seen = dict(query(mariadb_url, "SELECT value, min(ts) FROM readings WHERE point = 'row' GROUP BY value"))
    assert seen[first] <= detected_at < seen[first + 1]
    alerts = query(mariadb_url, "SELECT alert_type, severity, system FROM alerts WHERE alert_type = 'attack_detected'")
    assert alerts and alerts[0][2] == "edge-detection"


@pytest.mark.parametrize("scenario_name", ["level_spoof"])
def test_water_plant_attack_detected_by_the_running_agent(central_url: str, tmp_path: Path,
                                                          scenario_name: str) -> None:
    plant = WaterPlant(seed=5)
    server = ModbusSimulator({1: plant})
    points = [{"name": n, "address": a, "type": "float32"} for n, a in
              [("tank1_level", 0), ("pump1_flow", 2), ("outflow", 4), ("valve1_open", 6), ("pressure_out", 8)]]
    points.append({"name": "pump1_running", "table": "coil", "address": 0, "type": "bool"})

    async def scenario(agent: Agent) -> None:
        await async_wait_until(lambda: agent.detection is not None and agent.detection.rows_scored >= 5)
        assert agent.detection is not None and agent.detection.incidents.opened == 0, "quiet while normal"
        plant.set_scenario(scenario_name)
        await async_wait_until(detection_landed(agent), timeout=30)
        await async_wait_until(lambda: not agent.delivery.buffer.event_rows and agent.stats.central_state == "up")

    with SimulatorThread([server]):
        device = {"id": "plc", "type": "plc", "host": "127.0.0.1", "port": server.port, "unit_id": 1,
                  "interval": "500ms", "timeout": "400ms", "points": points}
        run_agent(device_map("gw-plant", central_url, str(tmp_path / "buf"), [device],
                             detection={"model": "builtin:water-plant", "interval": "2s",
                                        "target_system": "tank 1"}), scenario)
    rows = query(central_url, "SELECT attack_type, target_system FROM attack_detections")
    assert rows and rows[0][1] == "tank 1"
    assert rows[0][0] in {"Flow Manipulation", "Sensor Tampering", "Process Anomaly"}


def test_train_from_readings_in_the_central_database(central_url: str, tmp_path: Path) -> None:
    plant = WaterPlant(seed=9)
    server = ModbusSimulator({1: plant})
    points = [{"name": n, "address": a, "type": "float32"} for n, a in
              [("tank1_level", 0), ("pump1_flow", 2), ("outflow", 4), ("pressure_out", 8)]]
    with SimulatorThread([server]):
        device = {"id": "plc", "type": "plc", "host": "127.0.0.1", "port": server.port, "unit_id": 1,
                  "interval": "100ms", "timeout": "90ms", "points": points}
        text = device_map("gw-hist", central_url, str(tmp_path / "buf"), [device])

        async def scenario(agent: Agent) -> None:
            await async_wait_until(lambda: agent.stats.rows_written >= 4 * 70, timeout=30)

        run_agent(text, scenario)
    model = tmp_path / "plant.npz"
    config = tmp_path / "map.yaml"
    config.write_text(text + f"detection: {{model: {model}, interval: 100ms}}\n")
    result = subprocess.run(
        [sys.executable, "-m", "agent", "train", "--from-db", str(config), "--signals",
         "tank1_level,pump1_flow,outflow,pressure_out", "--resolution", "0.0001", "-o", str(model)],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    trained = DetectorModel.load(model)
    assert trained.signals == ["outflow", "pressure_out", "pump1_flow", "tank1_level"]
    assert trained.meta["rows"] >= 60 and trained.meta["trained_on"].startswith("gw-hist readings")
    check = subprocess.run([sys.executable, "-m", "agent", "check", "-c", str(config)], capture_output=True,
                           text=True, timeout=60, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert check.returncode == 0, check.stderr
