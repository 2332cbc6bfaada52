"""The central read API over HTTP, on data a real agent wrote into MariaDB."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, func, insert, select

import agent
from agent.api.app import create_app
from agent.central import migrate, schema
from agent.pipeline.service import Agent
from simulators.power_meter import PowerMeter
from simulators.server import ModbusSimulator, SimulatorThread, free_port
from simulators.water_plant import WaterPlant
from tests.helpers import async_wait_until, device_map, run_agent
from tests.infra.api_server import TOKEN, Api, serve

PLANT_POINTS = [{"name": n, "address": a, "type": "float32"} for n, a in
                [("tank1_level", 0), ("pump1_flow", 2), ("outflow", 4), ("valve1_open", 6), ("pressure_out", 8)]]
PLANT_POINTS.append({"name": "pump1_running", "table": "coil", "address": 0, "type": "bool"})


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
    with serve(create_app(engine, TOKEN), statements) as api:
        yield api
    engine.dispose()


def test_health_devices_and_database_status(api: Api) -> None:
    health = api.get("/api/health")
    assert (health["status"], health["database"]) == ("ok", "up")
    assert datetime.fromisoformat(health["now"].replace("Z", "")) > datetime(2026, 1, 1)  # the API's clock
    devices = {d["device"]: d for d in api.get("/api/devices")["items"]}
    assert set(devices) == {"meter-01", "meter-02", "plc-01", "gone"}
    # the agent that filled the database stopped cleanly: every device says so, and when it was last seen
    assert {d["status"] for d in devices.values()} == {"unknown"}
    assert {d["status_reason"] for d in devices.values()} == {"agent stopped"}
    assert devices["meter-01"]["last_seen"] is not None and devices["gone"]["last_seen"] is None
    assert [d["device"] for d in api.get("/api/devices?status=unknown&type=plc")["items"]] == ["plc-01"]
    assert api.get("/api/devices?status=online")["items"] == []
    db = api.get("/api/database/status")
    assert db["revision"] == db["expected_revision"] == migrate.head_revision()
    assert db["backend"] in ("mysql", "mariadb")
    assert db["tables"]["readings"] > 0 and db["tables"]["attack_detections"] >= 1


def test_power_data_filters_and_pages_with_a_fixed_number_of_queries(api: Api) -> None:
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
    for window in ("", "&since=2026-01-01T00:30:00&until=2026-01-01T02:00:00"):
        before = len(api.statements)
        api.get(f"/api/power-data?limit=1000{window}")
        # the page; the total: where stored rows start, the devices, power_1h, the marked hours, and the
        # raw rows of partial and marked hours (one statement per 500 device-ranges)
        queries = 6
        assert 2 <= len(api.statements) - before <= queries, "no query per row"


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


def test_points_say_what_the_agent_declared(api: Api) -> None:
    """The agent registered its map's points: kind, unit and role, filterable by device and role."""
    meter = {p["point"]: p for p in api.get("/api/points?device=meter-01")["items"]}
    assert {k: (p["kind"], p["role"], p["device_type"]) for k, p in meter.items()} == {
        "power": ("number", "power", "power_meter"), "voltage": ("number", "voltage", "power_meter")}
    plc = {p["point"]: p["kind"] for p in api.get("/api/points?device=plc-01")["items"]}
    assert plc["pump1_running"] == "boolean" and plc["tank1_level"] == "number"
    assert {(p["device"], p["point"]) for p in api.get("/api/points?role=power")["items"]} == {
        ("meter-01", "power"), ("meter-02", "power")}


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
    assert gw["gateway_id"] == "gw-api" and gw["devices"]["unknown"] == 4, "stopped cleanly: none claims online"
    assert gw["metrics"]["readings_taken_total"]["value"] > 0


def test_gateways_say_version_map_clock_and_a_clean_stop(populated: str) -> None:
    engine = create_engine(populated)
    with engine.connect() as conn:
        seen = conn.execute(select(schema.gateways.c.last_seen)).scalar_one()
    try:
        with serve(create_app(engine, TOKEN, clock=lambda: seen + timedelta(seconds=1))) as api:
            (gw,) = api.get("/api/gateways")["items"]
            status = api.get("/api/system-status")
            assert api.get("/api/gateways?status=online")["items"] == []
            assert api.call("GET", "/api/gateways?status=lost")[0] == 400
    finally:
        engine.dispose()
    assert gw["gateway_id"] == "gw-api" and gw["agent_version"] == agent.__version__
    assert len(gw["device_map_hash"]) == 64 and gw["heartbeat_interval"] == 1.0 and gw["beat_seq"] >= 3
    assert gw["status"] == "offline" and gw["stopped_at"] == gw["last_seen"], "stopped cleanly: offline at once"
    assert (gw["devices_up"], gw["devices_degraded"], gw["devices_down"]) == (0, 0, 0), "the stop's beat"
    assert abs(gw["clock_offset"]) < 1.0, "the agent and MariaDB share this machine's clock"
    assert status["gateways"][0]["fleet"]["status"] == "offline"


def test_series_over_http_raw_and_minutes_agree(populated: str) -> None:
    engine = create_engine(populated)
    r, d = schema.readings, schema.devices
    with engine.connect() as conn:
        count, last = conn.execute(select(func.count(), func.max(r.c.ts)).join(d, d.c.id == r.c.device_id).where(
            d.c.device_id_str == "meter-01", r.c.point == "power")).one()
    try:
        with serve(create_app(engine, TOKEN, clock=lambda: last + timedelta(seconds=1))) as api:
            raw = api.get("/api/series?device=meter-01&point=power")  # the last hour by default
            minutes = api.get("/api/series?device=meter-01&point=power&step=1m")
            unknown = api.call("GET", "/api/series?device=meter-09&point=power")
            bad_step = api.call("GET", "/api/series?device=meter-01&point=power&step=soon")
    finally:
        engine.dispose()
    assert raw["resolution"] == "raw" and len(raw["points"]) == count > 0
    assert raw["points"][-1]["ts"] == last.isoformat() + "Z"
    # no maintain ran: the minutes come from the raw rows of the hours writers marked, and say the same
    assert minutes["resolution"] == "1m" and sum(p["count"] for p in minutes["points"]) == count
    assert unknown == (404, {"error": "no device 'meter-09'"})
    assert bad_step[0] == 400 and bad_step[1]["error"].startswith("step: 'soon' is not a duration")


@pytest.mark.parametrize(("path", "message"), [
    ("/api/power-data?limit=0", "limit: Input should be greater than or equal to 1"),
    ("/api/power-data?since=yesterday", "since: Input should be a valid datetime"),
    ("/api/alerts?severity=urgent", "severity: Input should be 'low', 'medium', 'high' or 'critical'"),
    ("/api/power-data?since=2026-01-02T00:00:00&until=2026-01-01T00:00:00", "since must be before until"),
    ("/api/power-data?since=2026-01-01T01:30:00%2B01:00&until=2026-01-01T00:30:00Z", "since must be before until"),
    ("/api/alerts?limit=1001", "limit: Input should be less than or equal to 1000"),
    ("/api/power-data?offset=1000001", "offset: Input should be less than or equal to 1000000"),
    ("/api/attack-analysis?offset=-1", "offset: Input should be greater than or equal to 0"),
    # an unencoded '+' arrives as a space: say so instead of only "extra characters"
    ("/api/statistics?until=2026-11-29T23:22:00+01:00", "until: Input should be a valid datetime"),
    ("/api/statistics?until=2026-11-29T23:22:00+01:00", "send it as %2B"),
])
def test_bad_input_is_400_with_a_clear_message(api: Api, path: str, message: str) -> None:
    code, body = api.call("GET", path)
    assert code == 400 and message in body["error"]


def test_deepest_page_allowed_is_answered(api: Api) -> None:
    assert api.get("/api/power-data?offset=1000000&limit=1000")["items"] == []


def test_bad_write_body_and_openapi(api: Api) -> None:
    code, body = api.call("POST", "/api/alerts", {"severity": "low", "title": "x"}, token=TOKEN)
    assert code == 400 and "alert_type: Field required" in body["error"]
    code, body = api.call("POST", "/api/alerts/1/acknowledge", raw=b"[1, 2]", token=TOKEN)
    assert (code, body) == (400, {"error": "body: Input should be a valid dictionary or object to extract fields from"})
    spec = api.get("/openapi.json")
    assert {"/api/power-data", "/api/system-status", "/api/alerts", "/api/alerts/{alert_id}/acknowledge",
            "/api/alerts/{alert_id}/resolve", "/api/attack-analysis", "/api/statistics", "/api/health",
            "/api/devices", "/api/database/status", "/api/gateways", "/api/series"} <= set(spec["paths"])


@pytest.mark.parametrize(("raw", "message"), [
    (b"{oops", "request body is not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
    (b"\n\n  nope", "request body is not valid JSON: Expecting value at line 3 column 3"),
    (b'{"by": "x"} {}', "request body is not valid JSON: Extra data at line 1 column 13"),
])
def test_malformed_json_body_says_where_it_breaks(api: Api, raw: bytes, message: str) -> None:
    assert api.call("POST", "/api/alerts/1/acknowledge", raw=raw, token=TOKEN) == (400, {"error": message})


# Seeded rows at fixed instants (naive UTC, as stored): no wall clock anywhere.
T0 = datetime(2026, 11, 29, 22, 0)
STAMPS = [T0 + timedelta(minutes=m) for m in (0, 20, 22, 40, 60)]
#: one instant, 22:22 UTC, spelled five ways: rows from it on are 3, rows before it 2
SAME_INSTANT = ["2026-11-29T22:22:00Z", "2026-11-29T22:22:00", "2026-11-29T23:22:00+01:00",
                "2026-11-29T16:52:00-05:30", "2026-11-30T07:22:00+09:00"]


@pytest.fixture
def seeded(migrated_engine: Engine) -> Iterator[Api]:
    """The API over SQLite and MariaDB holding one meter's rows at STAMPS in every time-filtered table."""
    with migrated_engine.begin() as conn:
        device = conn.execute(insert(schema.devices).values(gateway_id="gw-t", device_id_str="meter-a",
                                                             type="power_meter", status="online"))
        dev = int(device.inserted_primary_key[0])  # type: ignore[index]
        conn.execute(insert(schema.readings), [{"device_id": dev, "point": "power", "ts": t, "value": 1.0}
                                               for t in STAMPS])
        conn.execute(insert(schema.power_readings), [
            {"device_id": dev, "timestamp": t, "power_consumption": 10.0 + i, "is_anomaly": i in (1, 3)}
            for i, t in enumerate(STAMPS)])
        # what a writer does with them: their hours marked for the rollups
        conn.execute(insert(schema.rollup_pending), [{"device_id": dev, "hour": hour, "marked_at": T0}
                                                     for hour in {t.replace(minute=0) for t in STAMPS}])
        conn.execute(insert(schema.alerts), [
            {"alert_type": "threshold", "severity": "high", "title": f"alert {i}", "event_key": f"a{i}",
             "created_at": t, "updated_at": t, "gateway_id": "gw-t", "device_id": dev, "resolved": i < 2}
            for i, t in enumerate(STAMPS)])
        conn.execute(insert(schema.attack_detections), [
            {"attack_type": "level_spoof", "confidence": 90.0, "threat_level": "high", "detected_at": t,
             "ended_at": t if i == 0 else None, "event_key": f"x{i}", "created_at": t, "updated_at": t,
             "gateway_id": "gw-t", "device_id": dev}
            for i, t in enumerate(STAMPS)])
    with serve(create_app(migrated_engine, TOKEN)) as api:
        yield api


def counts(api: Api, query: dict[str, str]) -> dict[str, int]:
    """Rows each time-filtered endpoint finds for ``query`` (statistics: one figure per table it reads)."""
    qs = urllib.parse.urlencode(query)
    stats = api.get(f"/api/statistics?{qs}")
    return {"power-data": api.get(f"/api/power-data?{qs}")["total"],
            "alerts": api.get(f"/api/alerts?{qs}")["total"],
            "attack-analysis": api.get(f"/api/attack-analysis?{qs}")["total"],
            "statistics.readings": stats["readings"]["readings"],
            "statistics.power": sum(p["samples"] for p in stats["power"]),
            "statistics.alerts": sum(a["total"] for a in stats["alerts"].values()),
            "statistics.attack_detections": sum(stats["attack_detections"].values())}


def test_every_time_filter_converts_offsets_to_utc(seeded: Api) -> None:
    endpoints = counts(seeded, {})
    assert set(endpoints.values()) == {5}
    found = {(bound, instant): counts(seeded, {bound: instant})
             for bound in ("since", "until") for instant in SAME_INSTANT}
    assert found == {(bound, instant): dict.fromkeys(endpoints, 3 if bound == "since" else 2)
                     for bound, instant in found}


def test_naive_and_aware_bounds_mix(seeded: Api) -> None:
    # 22:10Z (written +01:00) up to 22:30Z: the rows at 22:20 and 22:22
    window = {"since": "2026-11-29T23:10:00+01:00", "until": "2026-11-29T22:30:00"}
    assert set(counts(seeded, window).values()) == {2}


def _ints(value: Any) -> list[Any]:
    """Every leaf of a JSON value that is not an int."""
    if isinstance(value, dict):
        return [bad for v in value.values() for bad in _ints(v)]
    if isinstance(value, list):
        return [bad for v in value for bad in _ints(v)]
    return [] if type(value) is int else [value]


def test_counts_are_integers_on_every_backend(seeded: Api) -> None:
    stats = seeded.get("/api/statistics")
    (power,) = stats["power"]
    assert (power["samples"], power["anomalies"]) == (5, 2)
    assert stats["alerts"] == {"high": {"total": 5, "open": 3}}
    counted = {"readings": stats["readings"]["readings"], "devices": stats["readings"]["devices"],
               "power": {"samples": power["samples"], "anomalies": power["anomalies"]}, "alerts": stats["alerts"],
               "attack_detections": stats["attack_detections"]}
    analysis = seeded.get("/api/attack-analysis")
    (by_type,) = analysis["summary"]["by_attack_type"]
    assert (by_type["count"], by_type["open"]) == (5, 4)
    counted["analysis"] = {"total": analysis["total"], "count": by_type["count"], "open": by_type["open"],
                           "by_threat_level": analysis["summary"]["by_threat_level"]}
    status = seeded.get("/api/system-status")
    counted["status"] = {"devices": status["gateways"][0]["devices"], "open_alerts": status["open_alerts"],
                         "open_attack_detections": status["open_attack_detections"]}
    counted["tables"] = seeded.get("/api/database/status")["tables"]
    assert _ints(counted) == [], counted
