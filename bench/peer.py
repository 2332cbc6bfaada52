"""Peer: ThingsBoard IoT Gateway 3.8 polling the same device farm, next to the agent at the same load.

thingsboard-gateway is installed from PyPI into its own virtualenv (``bench/.peer-venv``; its
Modbus connector pins its own pymodbus). Its Modbus connector polls the farm (every value sent:
report strategy ``ON_RECEIVED``) and publishes to the local Mosquitto broker; ``bench.mqtt_stub``
stands in for the ThingsBoard server (it answers the session-limits request, without which the
gateway publishes nothing, and counts the data points published). Measured over the same window
for both: points/s delivered and CPU seconds of the gateway process; the agent delivers into
MariaDB (poll, checks, disk buffer, central write), the peer into MQTT.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.load import ROOT, Farm, cpu_seconds, memory_mb, run_load, scratch_database, terminate, wait_for

TITLE = "Peer: thingsboard-gateway 3.8 vs the agent, same farm, 1 s interval"
COLUMNS = ["gateway", "load", "delivers to", "points/s offered", "points/s delivered", "CPU %", "points per CPU-second",
           "RSS MB", "vs peer"]
DEFAULT_SECONDS = 60.0
PEER_VERSION = "3.8.5"
VENV = Path(__file__).parent / ".peer-venv"
STEPS = [(100, 20), (200, 50)]  # issue #7 compared at 100 x 20; issue #13 at 200 x 50 (10,000 points/s)
BROKER_PORT = 1883


def peer_python() -> Path:
    """The peer's virtualenv, created on first use (pip from PyPI), with its Modbus connector's pymodbus."""
    python = VENV / "bin" / "python"
    marker = VENV / f".thingsboard-gateway-{PEER_VERSION}"
    if not marker.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"thingsboard-gateway=={PEER_VERSION}"], check=True)
        # importing the connector installs the pymodbus version it pins (as it would at its first start)
        subprocess.run([str(python), "-c", "import thingsboard_gateway.connectors.modbus.modbus_connector"],
                       check=True, capture_output=True, cwd=VENV)
        marker.touch()
    return python


def _peer_config(farm: Farm, directory: Path, python: Path) -> None:
    """tb_gateway.json, modbus.json and logs.json (warnings only) for the farm."""
    package = Path(subprocess.run([str(python), "-c", "import thingsboard_gateway, os; "
                                   "print(os.path.dirname(thingsboard_gateway.__file__))"],
                                  check=True, capture_output=True, text=True).stdout.strip())
    directory.mkdir(parents=True, exist_ok=True)
    logs = json.loads((package / "config" / "logs.json").read_text())
    for logger in logs.get("loggers", {}).values():
        logger["level"] = "WARNING"
    (directory / "logs.json").write_text(json.dumps(logs))
    gateway = {
        "thingsboard": {
            "host": "127.0.0.1", "port": BROKER_PORT, "remoteShell": False, "remoteConfiguration": False,
            "statistics": {"enable": False, "statsSendPeriodInSeconds": 3600},
            "minPackSendDelayMS": 50, "minPackSizeToSend": 500, "checkConnectorsConfigurationInSeconds": 3600,
            "handleDeviceRenaming": False, "security": {"type": "accessToken", "accessToken": "hacksky-bench"},
            "qos": 1, "reportStrategy": {"type": "ON_RECEIVED"},
            "checkingDeviceActivity": {"checkDeviceInactivity": False},
        },
        "storage": {"type": "memory", "read_records_count": 100, "max_records_count": 1_000_000},
        "grpc": {"enabled": False},
        "connectors": [{"type": "modbus", "name": "Modbus", "configuration": "modbus.json"}],
    }
    (directory / "tb_gateway.json").write_text(json.dumps(gateway, indent=1))
    timeseries = [{"tag": f"p{i:03d}", "type": "32float", "functionCode": 3, "objectsCount": 2, "address": 2 * i}
                  for i in range(farm.points)]
    slaves = [{"host": "127.0.0.1", "port": port, "type": "tcp", "method": "socket", "unitId": 1,
               "deviceName": f"dev{i:04d}", "deviceType": "power_meter", "timeout": 1000, "byteOrder": "BIG",
               "wordOrder": "BIG", "retries": 0, "pollPeriod": 1000, "reportStrategy": {"type": "ON_RECEIVED"},
               "connectAttemptTimeMs": 5000, "connectAttemptCount": 5, "waitAfterFailedAttemptsMs": 5000,
               "attributes": [], "timeseries": timeseries, "attributeUpdates": [], "rpc": []}
              for i, port in enumerate(farm.ports)]
    (directory / "modbus.json").write_text(json.dumps({"master": {"slaves": slaves}}, indent=1))


def _stub_points(path: Path) -> tuple[float, float]:
    doc = json.loads(path.read_text())
    return float(doc["at"]), float(doc["points"])


def measure_peer(seconds: float, workdir: Path, devices: int, points: int, warmup: float = 20.0) -> dict[str, Any]:
    """The peer on its own farm: points/s published and its CPU over ``seconds``."""
    python = peer_python()
    farm = Farm(devices, points, workdir)
    counts = workdir / "stub.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    stub = subprocess.Popen([str(python), "-m", "bench.mqtt_stub", "--port", str(BROKER_PORT), "--out", str(counts)],
                            env=env, cwd=ROOT)
    gateway: subprocess.Popen[bytes] | None = None
    try:
        wait_for(counts.exists, 30, "the MQTT stub")
        _peer_config(farm, workdir / "tb-config", python)
        gateway = subprocess.Popen([str(VENV / "bin" / "thingsboard-gateway")], cwd=workdir,
                                   env={**os.environ, "TB_GW_CONFIG_DIR": str(workdir / "tb-config")},
                                   stdout=open(workdir / "tb-stdout.log", "wb"), stderr=subprocess.STDOUT)
        wait_for(lambda: _stub_points(counts)[1] > 0 or gateway.poll() is not None, 120, "the peer's first points")
        if gateway.poll() is not None:
            raise RuntimeError(f"peer exited: {(workdir / 'tb-stdout.log').read_text()[-2000:]}")
        time.sleep(warmup)
        (t0, n0), c0 = _stub_points(counts), cpu_seconds(gateway.pid)
        time.sleep(seconds)
        (t1, n1), c1 = _stub_points(counts), cpu_seconds(gateway.pid)
        rss = memory_mb(gateway.pid)[1]
    finally:
        for proc in (gateway, stub):
            if proc is not None:
                terminate(proc, 30)
        farm.stop()
    return {"points_per_s": (n1 - n0) / (t1 - t0), "cpu_percent": 100 * (c1 - c0) / (t1 - t0),
            "points_per_cpu_s": (n1 - n0) / max(c1 - c0, 1e-9), "rss_mb": rss}


def run(seconds: float = DEFAULT_SECONDS, steps: list[tuple[int, int]] | None = None) -> dict[str, Any]:
    """Peer first, then the agent, each alone with the farm, at each load of ``steps`` (default ``STEPS``)."""
    try:
        socket.create_connection(("127.0.0.1", BROKER_PORT), timeout=2).close()
    except OSError as exc:
        raise RuntimeError(f"the peer benchmark needs an MQTT broker on 127.0.0.1:{BROKER_PORT}: {exc}") from exc
    rows: list[dict[str, Any]] = []
    for devices, points in steps or STEPS:
        with tempfile.TemporaryDirectory() as tmp:
            peer = measure_peer(seconds, Path(tmp), devices, points)
        with scratch_database() as url, tempfile.TemporaryDirectory() as tmp:
            ours = run_load(devices, points, 1.0, seconds, url, Path(tmp))
        offered = devices * points
        our_per_cpu = ours["rows_written_per_s"] / max(ours["cpu_percent"] / 100, 1e-9)
        load = f"{devices} x {points}"
        rows += [
            {"gateway": f"thingsboard-gateway {PEER_VERSION}", "load": load, "delivers to": "MQTT (Mosquitto)",
             "points/s offered": offered, "points/s delivered": peer["points_per_s"], "CPU %": peer["cpu_percent"],
             "points per CPU-second": peer["points_per_cpu_s"], "RSS MB": peer["rss_mb"], "vs peer": 1.0},
            {"gateway": "HackSky Edge agent", "load": load, "delivers to": "MariaDB (via disk buffer)",
             "points/s offered": offered, "points/s delivered": ours["rows_written_per_s"],
             "CPU %": ours["cpu_percent"], "points per CPU-second": our_per_cpu, "RSS MB": ours["rss_peak_mb"],
             "vs peer": our_per_cpu / max(peer["points_per_cpu_s"], 1e-9)},
        ]
    return {"peer_version": PEER_VERSION, "results": rows}
