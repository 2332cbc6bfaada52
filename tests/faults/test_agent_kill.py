"""The agent SIGKILLed at random moments and restarted: nothing duplicated, loss bounded."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy.exc import ProgrammingError

from tests.faults.conftest import FaultRow
from tests.faults.plant import POINTS_PER_METER, count_rows, plant
from tests.helpers import device_map, wait_until

ROOT = Path(__file__).resolve().parents[2]
KILLS = 10


def stored_rows(url: str) -> int:
    """Readings stored so far; 0 while no start got as far as creating the schema (on a slow
    machine every kill may land before the first migration: each start resumes it)."""
    try:
        return count_rows(url)[0]
    except ProgrammingError:
        return 0


@pytest.mark.parametrize("commit_interval", ["100ms", "0"])
def test_agent_killed_ten_times_loses_at_most_the_commit_window(
        commit_interval: str, mariadb_url: str, tmp_path: Path, fault_report: list[FaultRow]) -> None:
    rng = random.Random(7)
    meters, interval = 10, 0.2
    with plant(meters=meters) as p:
        doc = yaml.safe_load(device_map("gw-kill", mariadb_url, str(tmp_path / "buf"), p.devices("200ms")))
        doc["buffer"]["commit_interval"] = commit_interval
        doc["central"]["writer"] = "process"  # a killed agent takes its writer process with it
        config = tmp_path / "edge.yaml"
        config.write_text(yaml.safe_dump(doc))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}

        def start() -> subprocess.Popen[bytes]:
            return subprocess.Popen([sys.executable, "-m", "agent", "run", "-c", str(config)], cwd=tmp_path,
                                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        for _ in range(KILLS):
            proc = start()
            time.sleep(rng.uniform(0.8, 2.6))  # sometimes during start-up, mostly while polling
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        proc = start()
        try:
            wait_until(lambda: stored_rows(mariadb_url) > 0, timeout=60)
            time.sleep(3)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        finally:  # never leave an agent polling after a failed assertion
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        served = p.readings_served()
    stored, distinct = count_rows(mariadb_url)
    per_poll = meters * POINTS_PER_METER
    # a kill loses what was polled but not yet committed to disk: one commit window of polls,
    # plus the replies in flight (one poll per device)
    window = float(commit_interval.removesuffix("ms") or 0) / 1000
    bound = KILLS * per_poll * (1 + int(window / interval + 0.999))
    lost = served - stored
    assert stored == distinct, "no reading is stored twice"
    assert 0 <= lost <= bound, f"lost {lost} readings in {KILLS} kills; bound {bound}"
    fault_report.append(FaultRow(
        f"Agent SIGKILLed {KILLS}x (commit_interval {commit_interval})", "kill -9 at random moments, restart",
        served, stored, lost, stored - distinct, None, f"loss bound {bound} (= kills x un-committed polls)"))
