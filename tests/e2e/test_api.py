"""The central read API over HTTP, on data a real agent wrote into MariaDB."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from sqlalchemy import create_engine, event

from agent.api.app import create_app
from agent.service import Agent
from simulators.power_meter import PowerMeter
from simulators.server import ModbusSimulator, SimulatorThread, free_port
from simulators.water_plant import WaterPlant
from tests.helpers import async_wait_until, device_map, run_agent

TOKEN = "s3cret-token"
PLANT_POINTS = [{"name": n, "address": a, "type": "float32"} for n, a in
                [("tank1_level", 0), ("pump1_flow", 2), ("outflow", 4), ("valve1_open", 6), ("pressure_out", 8)]]
PLANT_POINTS.append({"name": "pump1_running", "table": "coil", "address": 0, "type": "bool"})


class Api:
    def __init__(self, port: int, statements: list[str]) -> None:
        self.base, self.statements = f"http://127.0.0.1:{port}", statements

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             token: str | None = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.base + path, method=method, headers=headers,
                                     data=json.dumps(body).encode() if body is not None else None)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def get(self, path: str) -> Any:
        code, body = self.call("GET", path)
        assert code == 200, body
        return body


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory, mariadb_server: str) -> Iterator[str]:
    """A database an agent filled: 2 meters, the water plant under attack, metrics every second."""
    import pymysql

    name = f"hacksky_api_{int(time.time())}"
    admin = pymysql.connect(host="127.0.0.1", user="root", password="", autocommit=True)
    admin.cursor().execute(f"CREATE DATABASE `{name}`")
    url = f"{mariadb_server}/{name}"
    plant = WaterPlant(seed=4)
    meters = ModbusSimulator({1: PowerMeter(seed=1), 2: PowerMeter(seed=2)})
    plc = ModbusSimulator({1: plant})
    tmp = tmp_path_factory.mktemp("api")

    async def scenario(agent: Agent) -> None:
        await async_wait_until(lambda: agent.detection is not None and agent.detection.rows_scored >= 3)
        plant.set_scenario("level_spoof")
        await async_wait_until(lambda: agent.detection is not None and agent.detection.incidents.opened > 0)
        await async_wait_until(lambda: agent.stats.central_state == "up" and not agent.delivery.buffer.event_rows)

    with SimulatorThread([meters, plc]):
        devices = [{"id": f"meter-0{u}", "name": f"Feeder {u}", "type": "power_meter", "host": "127.0.0.1",
                    "port": meters.port, "unit_id": u, "interval": "200ms",
                    "points": [{"name": "power", "address": 12, "type": "float32", "role": "power"},
                               {"name": "voltage", "address": 0, "type": "float32", "role": "voltage"}]}
                   for u in (1, 2)]
        devices.append({"id": "plc-01", "type": "plc", "host": "127.0.0.1", "port": plc.port, "interval": "500ms",
                        "timeout": "400ms", "points": PLANT_POINTS})
        devices.append({"id": "gone", "host": "127.0.0.1", "port": free_port(),
                        "points": [{"name": "v", "address": 0}]})
        run_agent(device_map("gw-api", url, str(tmp / "buf"), devices, metrics_interval="1s",
                             detection={"model": "builtin:water-plant", "interval": "1s", "target_system": "tank 1"}),
                  scenario)
    try:
        yield url
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


@pytest.fixture(scope="module")
def api(populated: str) -> Iterator[Api]:
    engine = create_engine(populated)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(engine, TOKEN), host="127.0.0.1", port=port,
                                          log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield Api(port, statements)
    server.should_exit = True
    thread.join(10)
    engine.dispose()


def test_health_devices_and_database_status(api: Api) -> None:
    assert api.get("/api/health") == {"status": "ok", "database": "up"}
    devices = {d["device"]: d for d in api.get("/api/devices")["items"]}
    assert set(devices) == {"meter-01", "meter-02", "plc-01", "gone"}
    assert devices["meter-01"]["status"] == "online" and devices["gone"]["status"] == "offline"
    assert [d["device"] for d in api.get("/api/devices?status=offline")["items"]] == ["gone"]
    db = api.get("/api/database/status")
    assert db["revision"] == db["expected_revision"] == "0001" and db["backend"] in ("mysql", "mariadb")
    assert db["tables"]["readings"] > 0 and db["tables"]["attack_detections"] >= 1


def test_power_data_filters_and_pages_with_two_queries(api: Api) -> None:
    everything = api.get("/api/power-data?device=meter-01&limit=1000")
    assert everything["total"] == len(everything["items"]) >= 5
    assert {row["device"] for row in everything["items"]} == {"meter-01"}
    stamps = [row["timestamp"] for row in everything["items"]]
    assert stamps == sorted(stamps, reverse=True)
    first, second = api.get("/api/power-data?device=meter-01&limit=2"), api.get(
        "/api/power-data?device=meter-01&limit=2&offset=2")
    assert [r["id"] for r in first["items"] + second["items"]] == [r["id"] for r in everything["items"][:4]]
    since = everything["items"][2]["timestamp"]
    assert api.get(f"/api/power-data?device=meter-01&since={since}")["total"] == 3
    before = len(api.statements)
    api.get("/api/power-data?limit=1000")
    assert len(api.statements) - before == 2, "one count, one page: no query per row"


def test_alert_workflow_needs_the_token_and_is_idempotent(api: Api) -> None:
    open_alerts = api.get("/api/alerts?resolved=false")["items"]
    attack = next(a for a in open_alerts if a["alert_type"] == "attack_detected")
    path = f"/api/alerts/{attack['id']}"
    assert api.call("POST", path + "/acknowledge", {"by": "j.doe"})[0] == 401
    assert api.call("POST", path + "/acknowledge", {"by": "j.doe"}, token="wrong")[0] == 401
    code, acked = api.call("POST", path + "/acknowledge", {"by": "j.doe"}, token=TOKEN)
    assert code == 200 and acked["acknowledged"] and acked["acknowledged_by"] == "j.doe"
    _, again = api.call("POST", path + "/acknowledge", {"by": "someone.else"}, token=TOKEN)
    assert again["acknowledged_by"] == "j.doe" and again["acknowledged_at"] == acked["acknowledged_at"]
    code, resolved = api.call("POST", path + "/resolve", token=TOKEN)
    assert code == 200 and resolved["resolved"] and resolved["resolved_at"]
    assert attack["id"] not in [a["id"] for a in api.get("/api/alerts?resolved=false&limit=1000")["items"]]
    assert api.call("POST", "/api/alerts/999999/resolve", token=TOKEN) == (404, {"error": "no alert 999999"})
    code, created = api.call("POST", "/api/alerts", {"alert_type": "maintenance", "severity": "low",
                                                     "title": "pump 1 service"}, token=TOKEN)
    assert code == 201 and created["id"] and created["system"] == "central"
    assert api.get("/api/alerts?severity=low&limit=1")["items"][0]["title"] == "pump 1 service"


def test_attack_analysis_statistics_and_system_status(api: Api) -> None:
    analysis = api.get("/api/attack-analysis?gateway=gw-api")
    assert analysis["total"] >= 1
    row = analysis["items"][0]
    assert row["target_system"] == "tank 1" and 50 <= row["confidence"] <= 100
    indicators = row["indicators"] if isinstance(row["indicators"], dict) else json.loads(row["indicators"])
    assert indicators["findings"]
    by_type = {t["attack_type"]: t for t in analysis["summary"]["by_attack_type"]}
    assert by_type[row["attack_type"]]["count"] >= 1
    stats = api.get("/api/statistics?gateway=gw-api")
    # 4 devices: the down one has bad-quality readings
    assert stats["readings"]["readings"] > 0 and stats["readings"]["devices"] == 4
    assert {p["device"] for p in stats["power"]} == {"meter-01", "meter-02"}
    assert all(p["min_kw"] <= p["avg_kw"] <= p["max_kw"] for p in stats["power"])
    assert sum(stats["attack_detections"].values()) >= 1
    status = api.get("/api/system-status")
    (gw,) = status["gateways"]
    assert gw["gateway_id"] == "gw-api" and gw["devices"]["online"] == 3 and gw["devices"]["offline"] == 1
    assert gw["metrics"]["readings_taken_total"]["value"] > 0


@pytest.mark.parametrize(("path", "message"), [
    ("/api/power-data?limit=0", "limit: Input should be greater than or equal to 1"),
    ("/api/power-data?since=yesterday", "since: Input should be a valid datetime"),
    ("/api/alerts?severity=urgent", "severity: Input should be 'low', 'medium', 'high' or 'critical'"),
    ("/api/power-data?since=2026-01-02T00:00:00&until=2026-01-01T00:00:00", "since must be before until"),
])
def test_bad_input_is_400_with_a_clear_message(api: Api, path: str, message: str) -> None:
    code, body = api.call("GET", path)
    assert code == 400 and message in body["error"]


def test_bad_write_body_and_openapi(api: Api) -> None:
    code, body = api.call("POST", "/api/alerts", {"severity": "low", "title": "x"}, token=TOKEN)
    assert code == 400 and "alert_type: Field required" in body["error"]
    spec = api.get("/openapi.json")
    assert {"/api/power-data", "/api/system-status", "/api/alerts", "/api/alerts/{alert_id}/acknowledge",
            "/api/alerts/{alert_id}/resolve", "/api/attack-analysis", "/api/statistics", "/api/health",
            "/api/devices", "/api/database/status"} <= set(spec["paths"])
