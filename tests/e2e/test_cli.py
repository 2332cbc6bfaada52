"""The hacksky-edge command line as an operator uses it (real subprocesses)."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, text

from agent.central import migrate
from simulators.power_meter import PowerMeter
from simulators.server import ModbusSimulator, SimulatorThread, free_port
from tests.helpers import device_map, wait_until

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, cwd: Path = ROOT, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_check_reports_errors_with_location_and_exit_1(tmp_path: Path) -> None:
    good = cli("check", "-c", "config/demo.yaml")
    assert good.returncode == 0 and "OK (6 devices" in good.stdout
    bad = tmp_path / "plant.yaml"
    bad.write_text("gateway: {id: gw}\ndevices:\n"
                   "  - {id: m, host: h, points: [{name: v, address: 0, type: flaot32}]}\n")
    result = cli("check", "-c", str(bad))
    assert result.returncode == 1
    assert result.stderr.startswith(f"{bad}:3:") and "devices[0].points[0].type: 'flaot32'" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_flushes_on_sigterm_and_status_reports(tmp_path: Path) -> None:
    sim = ModbusSimulator({1: PowerMeter(seed=5)})
    db = tmp_path / "central.db"
    config = tmp_path / "edge.yaml"
    config.write_text(device_map("gw-cli", f"sqlite:///{db}", str(tmp_path / "buf"), [
        {"id": "m1", "type": "power_meter", "host": "127.0.0.1", "port": sim.port,
         "points": [{"name": "v", "address": 0, "type": "float32", "role": "voltage"}]}],
        flush_interval="30s"))  # long flush interval: the SIGTERM flush must deliver the rest
    notify_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(20)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "1000000"}
    with SimulatorThread([sim]):
        proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "-c", str(config)], cwd=tmp_path,
                                env=env, stderr=subprocess.PIPE, text=True)
        assert notify.recv(256) == b"READY=1"
        assert notify.recv(256) == b"WATCHDOG=1"
        state_file = tmp_path / "buf" / "state.json"
        wait_until(lambda: state_file.exists() and json.loads(state_file.read_text())["readings_taken"] >= 10)
        status = cli("status", "-c", str(config), cwd=tmp_path)
        assert status.returncode == 0 and "gateway gw-cli" in status.stdout and "m1" in status.stdout
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    messages = []
    notify.settimeout(0.1)
    try:
        while True:
            messages.append(notify.recv(256))
    except TimeoutError:
        pass
    notify.close()
    assert messages[-1] == b"STOPPING=1"
    final = json.loads(state_file.read_text())
    assert final["buffer"]["readings"] == 0
    with sqlite3.connect(db) as conn:
        (rows,) = conn.execute("SELECT count(*) FROM readings").fetchone()
    assert rows == final["readings_taken"] >= 10


def test_check_connect_tells_a_wrong_database_from_a_reachable_one(mariadb_url: str, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text(device_map("gw", "${CENTRAL_URL}", str(tmp_path / "buf"), [  # not read: disabled
        {"id": "m", "host": "127.0.0.1", "enabled": False, "points": [{"name": "v", "address": 0}]}],
        auto_migrate=False))
    monkeypatch.setenv("CENTRAL_URL", mariadb_url)
    fresh = cli("check", "--connect", "-c", str(config))
    assert fresh.returncode == 0, fresh.stderr
    head = migrate.head_revision()
    assert f"connected, schema at revision none (this agent needs {head}: run `hacksky-edge init-db`" in fresh.stdout
    assert cli("init-db", "-c", str(config)).returncode == 0
    current = cli("check", "--connect", "-c", str(config))
    assert current.returncode == 0 and f"connected, schema at revision {head}\n" in current.stdout
    assert "holds every privilege of hacksky_gateway the gateway needs" in current.stdout
    assert "device m: disabled, not read\n" in current.stdout
    monkeypatch.setenv("CENTRAL_URL", mariadb_url + "_no_such_db")
    wrong = cli("check", "--connect", "-c", str(config))
    assert wrong.returncode == 1 and "refused the gateway's settings: (1049, \"Unknown database" in wrong.stderr
    assert "Traceback" not in wrong.stderr


def test_init_db_creates_the_schema_in_mariadb(mariadb_url: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text(device_map("gw", "${CENTRAL_URL}", str(tmp_path / "buf"), [
        {"id": "m", "host": "127.0.0.1", "points": [{"name": "v", "address": 0}]}]))
    monkeypatch.setenv("CENTRAL_URL", mariadb_url)
    first = cli("init-db", "-c", str(config))
    second = cli("init-db", "-c", str(config))
    assert first.returncode == 0 and f"revision {migrate.head_revision()}" in first.stdout
    assert second.returncode == 0
    engine = create_engine(mariadb_url)
    with engine.connect() as conn:
        tables = {r[0] for r in conn.execute(text("SHOW TABLES"))}
    engine.dispose()
    assert {"devices", "readings", "power_readings", "alerts", "attack_detections", "system_metrics",
            "alembic_version"} <= tables


def test_sigterm_with_central_down_keeps_the_backlog_and_exits_0(tmp_path: Path) -> None:
    sim = ModbusSimulator({1: PowerMeter(seed=6)})
    config = tmp_path / "edge.yaml"
    config.write_text(device_map("gw-down", f"mysql+pymysql://edge@127.0.0.1:{free_port()}/hacksky",
                                 str(tmp_path / "buf"), [
        {"id": "m1", "host": "127.0.0.1", "port": sim.port, "points": [{"name": "v", "address": 0,
                                                                      "type": "float32"}]}]))
    with SimulatorThread([sim]):
        proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "-c", str(config)], cwd=tmp_path,
                                env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE, text=True)
        state_file = tmp_path / "buf" / "state.json"
        wait_until(lambda: state_file.exists() and json.loads(state_file.read_text())["readings_taken"] >= 10)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0 and time.monotonic() - started < 15
    final = json.loads(state_file.read_text())
    assert final["buffer"]["readings"] == final["readings_taken"] >= 10, "everything kept for the next start"
    assert "left in the buffer (delivered on next start)" in stderr


def test_json_log_format_writes_one_object_per_line(tmp_path: Path) -> None:
    sim = ModbusSimulator({1: PowerMeter(seed=8)})
    config = tmp_path / "edge.yaml"
    config.write_text(device_map("gw-json", f"sqlite:///{tmp_path / 'c.db'}", str(tmp_path / "buf"), [
        {"id": "m1", "host": "127.0.0.1", "port": sim.port, "points": [{"name": "v", "address": 0}]},
        {"id": "gone", "host": "127.0.0.1", "port": free_port(), "points": [{"name": "v", "address": 0}]}]))
    with SimulatorThread([sim]):
        result = cli("--log-format", "json", "run", "-c", str(config), "--duration", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines()]
    assert {"ts", "level", "logger", "message"} <= set(records[0])
    assert any(r["level"] == "ERROR" and "gone" in r["message"] for r in records), "the down device, once"
    assert any("agent stopped" in r["message"] for r in records)


def test_check_connect_logs_in_to_each_mqtt_broker_without_taking_over_the_agents_session(
        tmp_path: Path) -> None:
    from tests.infra.private_mosquitto import PrivateMosquitto

    broker = PrivateMosquitto(tmp_path / "broker", users={"edge": "right-horse"})
    broker.start()
    try:
        (tmp_path / "mqtt.pass").write_text("right-horse\n")
        (tmp_path / "wrong.pass").write_text("wrong\n")
        doc = yaml.safe_load(device_map("gw-check", f"sqlite:///{tmp_path / 'c.db'}", str(tmp_path / "buf"), [
            {"id": "m", "host": "127.0.0.1", "points": [{"name": "v", "address": 0}]}]))
        doc["outputs"] = [
            {"type": "mqtt", "url": broker.url, "username": "edge", "password_file": str(tmp_path / "mqtt.pass"),
             "allow_plaintext_password": True},  # loopback
            {"type": "mqtt", "name": "wrong", "url": broker.url, "username": "edge",
             "password_file": str(tmp_path / "wrong.pass"), "allow_plaintext_password": True, "connect_timeout": "2s"},
            {"type": "mqtt", "name": "away", "url": f"mqtt://127.0.0.1:{free_port()}", "connect_timeout": "2s"}]
        config = tmp_path / "edge.yaml"
        config.write_text(yaml.safe_dump(doc))
        result = cli("check", "--connect", "-c", str(config))
    finally:
        broker.stop()
    assert result.returncode == 1, "two outputs cannot connect"
    assert f"mqtt output mqtt {broker.url}: connected (as hacksky-edge-gw-check-check)" in result.stdout
    assert f"mqtt output wrong {broker.url} refused the gateway's settings: " in result.stderr
    assert "mqtt output away mqtt://127.0.0.1:" in result.stderr and " unreachable: " in result.stderr
    assert "right-horse" not in result.stdout + result.stderr
