"""``hacksky-edge import-csv``: BATADAL history into MariaDB, idempotent, checked with SQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from agent.pipeline.service import Agent
from simulators.power_meter import PowerMeter
from simulators.server import ModbusSimulator, SimulatorThread
from tests.helpers import async_wait_until, device_map, query, run_agent

ROOT = Path(__file__).resolve().parents[2]
BATADAL04 = ROOT / "data" / "batadal" / "BATADAL_dataset04.csv"  # the original: headers with leading spaces


def import_csv(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", "import-csv", *args, "-c", str(config), "--quiet"],
                          capture_output=True, text=True, timeout=600, cwd=config.parent,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.fixture
def config(mariadb_url: str, tmp_path: Path) -> Path:
    path = tmp_path / "ctown.yaml"
    path.write_text(f"gateway: {{id: ctown-gw}}\ncentral: {{url: '{mariadb_url}'}}\nmonitoring: {{enabled: false}}\n")
    return path


def test_batadal_file_imports_exactly_once(config: Path, mariadb_url: str) -> None:
    first = import_csv(config, str(BATADAL04), "--device", "ctown-scada", "--map", "L_T1=tank1_level")
    assert first.returncode == 0, first.stderr
    assert "4,177 rows, 179,611 readings (179,611 new, 0 already present" in first.stdout
    rows = query(mariadb_url, """SELECT count(*), count(DISTINCT r.point), min(r.ts), max(r.ts) FROM readings r
        JOIN devices d ON d.id = r.device_id WHERE d.gateway_id = 'ctown-gw' AND d.device_id_str = 'ctown-scada'""")
    count, points, first_ts, last_ts = rows[0]
    assert (count, points) == (4177 * 43, 43)
    assert str(first_ts) == "2016-07-04 00:00:00" and str(last_ts) == "2016-12-25 00:00:00"
    # a cell checked against the file: 04/07/16 00, L_T1 (renamed) = 2.44, F_PU1 = 93.63
    values = dict(query(mariadb_url, """SELECT point, value FROM readings WHERE ts = '2016-07-04 00:00:00'
        AND point IN ('tank1_level', 'F_PU1', 'L_T1', 'ATT_FLAG')"""))
    assert values == {"tank1_level": 2.44, "F_PU1": 93.63}
    # history is marked for the rollups like live data: one mark per hour of the file (hourly rows)
    assert query(mariadb_url, "SELECT count(*), min(hour), max(hour) FROM rollup_pending")[0] == (
        4177, first_ts, last_ts)
    again = import_csv(config, str(BATADAL04), "--device", "ctown-scada", "--map", "L_T1=tank1_level")
    assert again.returncode == 0 and "(0 new, 179,611 already present" in again.stdout
    assert query(mariadb_url, "SELECT count(*) FROM readings")[0][0] == 4177 * 43
    assert query(mariadb_url, "SELECT type, protocol FROM devices WHERE device_id_str = 'ctown-scada'")[0] == (
        "other", "import")


def test_bad_row_names_file_and_line_and_bad_map_is_refused(config: Path, tmp_path: Path) -> None:
    bad = tmp_path / "history.csv"
    bad.write_text("DATETIME,flow\n2026-01-01 00:00:00,1.5\n2026-13-01 00:00:00,2\n")
    result = import_csv(config, str(bad), "--device", "m1")
    assert result.returncode == 1 and f"{bad}:3: time '2026-13-01 00:00:00'" in result.stderr
    assert "Traceback" not in result.stderr
    wrong = import_csv(config, str(bad), "--device", "m1", "--map", "flow")
    assert wrong.returncode == 1 and "--map item 'flow' is not COLUMN=POINT" in wrong.stderr


def test_readings_the_agent_writes_meanwhile_are_not_counted_as_imported(mariadb_url: str, tmp_path: Path) -> None:
    """Issue #12: a second import said "56 new": the live readings of the same device, written meanwhile."""
    history = tmp_path / "history.csv"
    start = datetime(2020, 1, 1)
    with history.open("w") as f:
        f.write("DATETIME,a,b,c,d,e\n")
        for i in range(20_000):
            f.write(f"{start + timedelta(minutes=i):%Y-%m-%d %H:%M:%S},{i},{i + 1},{i + 2},{i + 3},{i + 4}\n")
    sim = ModbusSimulator({1: PowerMeter(seed=6)})
    config = tmp_path / "edge.yaml"
    point = {"name": "v", "address": 0, "type": "float32"}
    config.write_text(device_map("gw-live", mariadb_url, str(tmp_path / "buf"), [
        {"id": "m1", "host": "127.0.0.1", "port": sim.port, "points": [point]}]))
    live = """SELECT count(*) FROM readings r JOIN devices d ON d.id = r.device_id
               WHERE d.device_id_str = 'm1' AND r.point = 'v'"""
    runs: list[tuple[subprocess.CompletedProcess[str], int, int]] = []

    async def scenario(agent: Agent) -> None:
        await async_wait_until(lambda: agent.stats.rows_written > 0)
        for _ in range(2):
            before = (await asyncio.to_thread(query, mariadb_url, live))[0][0]
            result = await asyncio.to_thread(import_csv, config, str(history), "--device", "m1")
            runs.append((result, before, (await asyncio.to_thread(query, mariadb_url, live))[0][0]))

    with SimulatorThread([sim]):
        run_agent(config.read_text(), scenario)
    (first, _, _), (again, live_before, live_after) = runs
    assert first.returncode == 0, first.stderr
    assert "20,000 rows, 100,000 readings (100,000 new, 0 already present" in first.stdout, first.stdout
    assert again.returncode == 0, again.stderr
    assert "(0 new, 100,000 already present" in again.stdout, again.stdout
    assert live_after > live_before, "the agent wrote readings of the same device during the import"
    assert query(mariadb_url, "SELECT count(*) FROM readings WHERE point <> 'v'")[0][0] == 100_000
