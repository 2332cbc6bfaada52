"""The benchmarks keep running (figures are not asserted: machines are noisy)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_detect_benchmark_prints_a_table_and_writes_json_with_ratios(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "bench", "detect", "--seconds", "0.05", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=300, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert "| bare matrix product (baseline) |" in result.stdout
    doc = json.loads((tmp_path / "detect.json").read_text())
    ratios = {r["path"]: r["vs baseline"] for r in doc["results"]}
    assert ratios["bare matrix product (baseline)"] == 1.0
    assert all(r["readings/s"] > 0 for r in doc["results"]) and doc["signals"] == 43


def test_sched_benchmark_measures_the_scheduler_against_bare_loop_timers(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "bench", "sched", "--seconds", "0.5", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=300, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    doc = json.loads((tmp_path / "sched.json").read_text())
    rows = doc["results"]
    assert [(r["path"].split(",")[0], r["devices"]) for r in rows] == [
        ("bare loop timers", 500), ("PollScheduler", 500), ("bare loop timers", 2000), ("PollScheduler", 2000)]
    assert all(r["polls/s"] > 0 and r["µs CPU per poll"] > 0 for r in rows)
    assert rows[0]["vs baseline"] == 1.0


def test_scale_harness_runs_the_agent_daemon_on_a_farm_into_mariadb(mariadb_server: str, tmp_path: Path) -> None:
    """A tiny load through the real harness: farm process, agent daemon, /metrics, /proc, baselines; one
    mode into MariaDB and one without a database (all four take a minute: the modes differ in settings only)."""
    result = subprocess.run([sys.executable, "-m", "bench", "scale", "--seconds", "3", "--step", "5x4",
                             "--mode", "one process", "--mode", "auto, null central", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=300, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert "| one process | 5 x 4 |" in result.stdout and "| auto, null central | 5 x 4 |" in result.stdout
    doc = json.loads((tmp_path / "scale.json").read_text())
    one, null = doc["results"]
    assert [r["mode"] for r in doc["results"]] == ["one process", "auto, null central"]
    assert null["raw"]["rows_written_per_s"] > 0 and null["executemany/s"] == 0.0, "no database, no baseline"
    raw = one["raw"]
    assert raw["polls_per_s"] > 0 and raw["points_per_s"] > 0 and raw["rss_mb"] > 0
    assert raw["rows_written_per_s"] > 0, "rows reached MariaDB"
    assert raw["farm_cpu_percent"] >= 0 and raw["cpu_percent"] > 0
    if one["sustained"] == "yes":  # then the same rows were re-inserted for the baselines
        assert one["executemany/s"] > 0 and one["load_data/s"] > 0


def test_mqtt_harness_publishes_through_a_broker_outage(tmp_path: Path) -> None:
    """A tiny load: bare paho baseline, the agent without and with the MQTT output, a 3 s broker outage."""
    result = subprocess.run([sys.executable, "-m", "bench", "mqtt", "--seconds", "3", "--outage", "3",
                             "--step", "5x4", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=300, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    doc = json.loads((tmp_path / "mqtt.json").read_text())
    bare, alone, live, down, catch_up = doc["results"]
    assert bare["points/s"] > 0 and bare["vs baseline"] == 1.0 and alone["points/s"] == 0.0
    assert down["points/s"] == 0.0
    assert live["points/s"] > 0, "the agent published through the output"
    assert doc["backlog"] > 0 and catch_up["points/s"] > 0, "readings waited for the broker, then went out"


@pytest.mark.galera
def test_central_benchmark_loads_maintains_serves_drops_and_compares_galera(mariadb_server: str) -> None:
    """Two days of a small plant through every step of ``bench central`` (the real run loads a month)."""
    from bench import central

    doc = central.run(seconds=1.0, rows=100_000, days=2)
    rows = {r["what"].split(":")[0].split(" (")[0]: r for r in doc["results"]}
    assert rows["load a month"]["figure"] > 0
    assert rows["maintain"]["figure"] > 0
    endpoints = [r for r in doc["results"] if r["what"].startswith("GET ")]
    assert len(endpoints) == 13 and all(r["figure"] > 0 and r["max"] >= r["figure"] for r in endpoints)
    assert all(r["baseline"] > 0 for r in endpoints if r["note"])
    assert rows["retention"]["figure"] > 0 and rows["retention"]["baseline"] > 0
    galera = doc["results"][-1]
    assert galera["figure"] > 0 and galera["baseline"] > 0, galera


@pytest.mark.browser
def test_dashboard_benchmark_times_each_page_in_chromium(mariadb_server: str) -> None:
    """A day of a meter and the raw series through ``bench dashboard`` (the real run seeds 30 days)."""
    from bench import dashboard

    doc = dashboard.run(days=1, repeats=1, step_s=60, raw_points=20_000)
    pages = doc["results"][:3]
    assert [p["what"] for p in pages] == [what for what, _ in dashboard.PAGES]
    for page in pages:
        assert 0 < page["figure"] <= page["interactive_ms"] and page["baseline"] > 0, page
    assert pages[2]["payload_bytes"] > 20_000 * 15, "the 20,000 raw points were fetched (as columns)"


def test_bus_benchmark_compares_a_dead_meter_backed_off_with_one_asked_every_cycle(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "bench", "bus", "--seconds", "0.5", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=300, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "bus.json").read_text())["results"]
    assert [r["run"].split(",")[0] for r in rows] == [
        "8 meters answer (baseline)", "1 dead", "1 dead"]
    assert rows[0]["vs baseline"] == 1.0 and all(r["line req/s"] > 0 for r in rows)


def test_rbe_benchmark_counts_rows_stored_against_every_reading_stored(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "bench", "rbe", "--seconds", "1.5", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=300, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    base, thinned = json.loads((tmp_path / "rbe.json").read_text())["results"]
    assert base["stored / taken"] == 1.0 and base["readings taken"] > 0
    assert thinned["rows stored"] < thinned["readings taken"]
