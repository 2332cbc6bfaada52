"""Five gateways with the same device ids write to one MariaDB at once: nothing lost, nothing mixed up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest
from sqlalchemy import create_engine

from agent.api.app import create_app
from agent.central import migrate
from simulators.server import ModbusSimulator, SimulatorThread
from simulators.store import RegisterImage
from tests.helpers import device_map, query, wait_until
from tests.infra.api_server import TOKEN, serve

ROOT = Path(__file__).resolve().parents[2]
GATEWAYS = 5


class Tagged:
    """A unit whose register 0 holds a constant float32 naming it (gateway * 10 + device)."""

    def __init__(self, tag: float) -> None:
        self.image = RegisterImage()
        self.image.put("holding", 0, tag, "float32")

    def refresh(self, now: float) -> None:
        """Constant: nothing to do."""


@pytest.fixture
def central(mariadb_server: str) -> Iterator[str]:
    name = f"hacksky_fleet_{os.getpid()}_{int(time.time())}"
    admin = pymysql.connect(host="127.0.0.1", user="root", password="", autocommit=True)
    admin.cursor().execute(f"CREATE DATABASE `{name}`")
    engine = create_engine(f"{mariadb_server}/{name}")
    migrate.upgrade(engine)  # once, as init-db would: the agents start together
    engine.dispose()
    try:
        yield f"{mariadb_server}/{name}"
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


def test_five_gateways_same_device_ids_one_database(central: str, tmp_path: Path) -> None:
    units = {g * 2 + d: Tagged(float(g * 10 + d)) for g in range(1, GATEWAYS + 1) for d in (1, 2)}
    server = ModbusSimulator(units)  # type: ignore[arg-type]
    procs: list[tuple[str, Path, subprocess.Popen[str]]] = []
    with SimulatorThread([server]):
        for g in range(1, GATEWAYS + 1):
            devices = [{"id": f"meter-0{d}", "type": "power_meter", "host": "127.0.0.1", "port": server.port,
                        "unit_id": g * 2 + d, "interval": "100ms", "timeout": "90ms",
                        "points": [{"name": "tag", "address": 0, "type": "float32"}]} for d in (1, 2)]
            config = tmp_path / f"gw{g}.yaml"
            config.write_text(device_map(f"gw-{g}", central, str(tmp_path / f"buf{g}"), devices,
                                         metrics_interval="1s"))
            procs.append((f"gw-{g}", tmp_path / f"buf{g}" / "state.json", subprocess.Popen(
                [sys.executable, "-m", "agent", "run", "-c", str(config)], cwd=tmp_path, text=True,
                env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE)))
        for _, state, _ in procs:
            wait_until(lambda state=state: state.exists() and json.loads(state.read_text())["readings_taken"] >= 40,
                       timeout=60)
        for _, _, proc in procs:
            proc.send_signal(signal.SIGTERM)
        for _, _, proc in procs:
            _, stderr = proc.communicate(timeout=60)
            assert proc.returncode == 0, stderr
            assert "Traceback" not in stderr
    taken = {gw: json.loads(state.read_text())["readings_taken"] for gw, state, _ in procs}
    stored = dict(query(central, """SELECT d.gateway_id, count(*) FROM readings r JOIN devices d ON d.id = r.device_id
        GROUP BY d.gateway_id"""))
    assert stored == taken, "every reading of every gateway, once"
    tags = query(central, """SELECT d.gateway_id, d.device_id_str, min(r.value), max(r.value) FROM readings r
        JOIN devices d ON d.id = r.device_id GROUP BY d.gateway_id, d.device_id_str""")
    assert sorted(tags) == sorted((f"gw-{g}", f"meter-0{d}", float(g * 10 + d), float(g * 10 + d))
                                  for g in range(1, GATEWAYS + 1) for d in (1, 2)), "no reading under another's id"
    gateways = query(central, "SELECT gateway_id, stopped_at IS NOT NULL, beat_seq >= 2 FROM gateways")
    assert sorted(gateways) == [(f"gw-{g}", 1, 1) for g in range(1, GATEWAYS + 1)]
    engine = create_engine(central)
    try:
        with serve(create_app(engine, TOKEN)) as api:
            devices = api.get("/api/devices?gateway=gw-3")
            series = api.get("/api/series?device=meter-02&point=tag&gateway=gw-4&step=1m")
            ambiguous = api.call("GET", "/api/series?device=meter-02&point=tag")
    finally:
        engine.dispose()
    assert [(d["gateway_id"], d["device"]) for d in devices["items"]] == [("gw-3", "meter-01"), ("gw-3", "meter-02")]
    assert {p["min"] for p in series["points"]} == {42.0}
    assert ambiguous == (400, {"error": "device 'meter-02' exists on gateways gw-1, gw-2, gw-3, gw-4, gw-5: "
                                        "give gateway="})
