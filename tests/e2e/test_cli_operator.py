"""What a newcomer hit with the command line (issue #12), as real subprocesses."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from simulators import run as simrun
from simulators.power_meter import PowerMeter
from simulators.server import ModbusSimulator, SimulatorThread
from simulators.water_plant import SCENARIOS
from tests.helpers import device_map

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT), **env})


def test_status_of_a_stopped_agent_exits_3_with_one_line_and_log_lines_carry_the_offset(tmp_path: Path) -> None:
    sim = ModbusSimulator({1: PowerMeter(seed=9)})
    config = tmp_path / "edge.yaml"
    config.write_text(device_map("gw-stopped", f"sqlite:///{tmp_path / 'c.db'}", str(tmp_path / "buf"), [
        {"id": "m1", "host": "127.0.0.1", "port": sim.port, "points": [{"name": "v", "address": 0}]}]))
    with SimulatorThread([sim]):
        ran = cli("run", "-c", str(config), "--duration", "1", cwd=tmp_path, TZ="Asia/Kolkata")
    assert ran.returncode == 0, ran.stderr
    stamped = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+05:30 (INFO|WARNING|ERROR) ")
    assert ran.stderr and all(stamped.match(line) for line in ran.stderr.splitlines()), ran.stderr
    status = cli("status", "-c", str(config), cwd=tmp_path)
    assert status.returncode == 3
    (line,) = status.stderr.splitlines()
    assert line.startswith("agent not running: process ") and " is gone" in line
    assert "gateway gw-stopped" in status.stdout, "the last state is still shown"
    as_json = cli("status", "-c", str(config), "--json", cwd=tmp_path)
    assert as_json.returncode == 3 and json.loads(as_json.stdout)["gateway"] == "gw-stopped"


def test_simulate_help_shows_the_defaults_the_simulators_use() -> None:
    result = cli("simulate", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())  # argparse wraps lines
    defaults = {name: p.default for name, p in inspect.signature(simrun.build).parameters.items()
                if name != "schedule"}
    for option, name in [("--meters", "meters"), ("--meter-port", "meter_port"), ("--plant-port", "plant_port"),
                         ("--host", "host"), ("--scenario", "scenario")]:
        assert re.search(rf"{option} \S+ [^()]*\(default: {re.escape(str(defaults[name]))}\)", text), option
    for option in ["--opcua-port", "--batadal-port", "--row-seconds", "--start-row", "--opcua-state"]:
        assert re.search(rf"{option} \S+ [^-]*\(default: ", text), option
    assert all(name in text for name in SCENARIOS)
