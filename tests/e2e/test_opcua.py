"""OPC UA end to end: the simulated plant's OPC UA server -> agent -> central database."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.pipeline.service import Agent
from simulators.opcua_plant import OpcUaPlant
from simulators.power_meter import PowerMeter
from simulators.server import ModbusSimulator, SimulatorThread
from simulators.water_plant import WaterPlant
from tests.faults.hostile_opcua import HOSTILE_TEXT, NAMESPACE, HostileOpcUaServer
from tests.helpers import async_wait_until, device_map, query, run_agent

ROOT = Path(__file__).resolve().parents[2]
NSU = "nsu=urn:hacksky:water-plant;s="
POINTS = [
    {"name": "tank1_level", "node": f"{NSU}Plant.Tank1.Level"},
    {"name": "pump1_running", "node": f"{NSU}Plant.Pump1.Running"},
    {"name": "pump1_flow", "node": f"{NSU}Plant.Pump1.Flow", "scale": 1000, "unit": "L/s"},
    {"name": "valve1_open", "node": f"{NSU}Plant.Valve1.Opening"},
    {"name": "outflow", "path": "/Objects/2:Plant/2:Outlet/2:Flow"},
    {"name": "pressure_out", "path": "/Objects/2:Plant/2:Outlet/2:Pressure"},
    {"name": "level_again", "path": "/Objects/2:Plant/2:Tank1/2:Level"},
    {"name": "ghost", "node": "ns=2;s=Plant.Tank9.Level"},
]


def pki(tmp_path: Path, gateway: str) -> tuple[Path, Path, Path, Path, Path]:
    """Server and client certificates, the server's already in the client's trust directory."""
    from drivers.opcua.security import make_certificate

    server_cert, server_key = make_certificate(tmp_path / "server", "urn:hacksky:simulator:water-plant",
                                               "HackSky water plant", "localhost", server=True)
    client_cert, client_key = make_certificate(tmp_path / "client", f"urn:hacksky-edge:{gateway}")
    trust = tmp_path / "trusted"
    trust.mkdir()
    (trust / "plant.der").write_bytes(server_cert.read_bytes())
    return server_cert, server_key, client_cert, client_key, trust


def ua_device(plant: OpcUaPlant, device_id: str = "ua-plc", **extra: object) -> dict[str, object]:
    return {"id": device_id, "type": "plc", "protocol": "opcua", "endpoint": plant.endpoint, "interval": "500ms",
            "timeout": "450ms", "points": POINTS, **extra}


def test_poll_reads_every_form_of_address_in_batches_within_the_server_limit(mariadb_url: str,
                                                                            tmp_path: Path) -> None:
    plant = OpcUaPlant(WaterPlant(seed=3), max_nodes_per_read=4)

    async def scenario(agent: Agent) -> None:
        await async_wait_until(lambda: agent.device_stats["ua-plc"].polls >= 10 and agent.stats.rows_written >= 60)

    with SimulatorThread([plant]):
        agent = run_agent(device_map("gw-ua", mariadb_url, str(tmp_path / "buf"), [ua_device(plant)]), scenario)
    driver = agent.drivers["ua-plc"]
    polls = agent.device_stats["ua-plc"].polls
    # 6 distinct nodes (level named twice), at most 4 per Read -> 2 Reads per poll, never more than the limit
    assert driver.read_requests == 2 * polls  # type: ignore[attr-defined]
    assert max(plant.read_sizes) <= 4
    assert agent.drivers["ua-plc"].health.state == "up", "the unknown node is skipped, not fatal"
    assert agent.drivers["ua-plc"].health.errors["BadNodeIdUnknown"] == 1, "and reported once"
    rows = query(mariadb_url, """SELECT point, value, quality FROM readings r JOIN devices d ON d.id = r.device_id
        WHERE d.device_id_str = 'ua-plc'""")
    by_point: dict[str, list[float]] = {}
    for point, value, quality in rows:
        assert quality == "good"
        by_point.setdefault(point, []).append(value)
    assert set(by_point) == {p["name"] for p in POINTS} - {"ghost"}
    assert by_point["tank1_level"] == by_point["level_again"], "NodeId and browse path reach the same variable"
    assert all(0 < v < 6 for v in by_point["tank1_level"]) and set(by_point["pump1_running"]) <= {0.0, 1.0}
    assert all(100 < v < 140 for v in by_point["pump1_flow"] if v), "scale applied (m3/s -> L/s)"
    assert not plant.write_services(), f"the agent sent {plant.write_services()}"
    assert set(plant.services) <= {"CreateSessionRequest", "ActivateSessionRequest", "ReadRequest",
                                   "TranslateBrowsePathsToNodeIdsRequest", "CloseSessionRequest"}


def test_subscription_feeds_changes_with_source_timestamps(sqlite_url: str, tmp_path: Path) -> None:
    plant = OpcUaPlant(WaterPlant(seed=4), update_every=0.1)

    async def scenario(agent: Agent) -> None:
        await async_wait_until(lambda: agent.device_stats["ua-sub"].readings >= 60)

    with SimulatorThread([plant]):
        device = ua_device(plant, "ua-sub", mode="subscribe", interval="500ms",
                           points=[dict(POINTS[0], sampling_interval="100ms", queue_size=20), POINTS[5]])
        agent = run_agent(device_map("gw-sub", sqlite_url, str(tmp_path / "buf"), [device]), scenario)
    levels = query(sqlite_url, """SELECT ts, value FROM readings WHERE point = 'tank1_level' ORDER BY ts""")
    polls = agent.device_stats["ua-sub"].polls
    assert len(levels) > 2 * polls, "several changes per publishing interval: queued samples, not a poll"
    assert len({ts for ts, _ in levels}) == len(levels), "each change keeps its own source timestamp"
    assert {"CreateSubscriptionRequest", "CreateMonitoredItemsRequest", "PublishRequest"} <= set(plant.services)
    assert not plant.write_services()


@pytest.mark.parametrize("mode", ["poll", "subscribe"])
def test_server_restart_recovers_without_touching_other_devices(sqlite_url: str, tmp_path: Path, mode: str) -> None:
    plant = OpcUaPlant(WaterPlant(seed=5))
    meter = ModbusSimulator({1: PowerMeter(seed=1)})
    seen: dict[str, int] = {}

    with SimulatorThread([plant, meter]) as sims:
        async def scenario(agent: Agent) -> None:
            ua, mb = agent.device_stats["ua"], agent.device_stats["meter"]
            await async_wait_until(lambda: ua.readings >= 10)
            await asyncio.to_thread(lambda: sims.call(plant.stop).result(10))
            await async_wait_until(lambda: agent.drivers["ua"].health.state == "down", timeout=15)
            seen["meter_polls_at_outage"] = mb.polls
            await asyncio.sleep(1.0)
            seen["meter_polls_during"] = mb.polls - seen["meter_polls_at_outage"]
            await asyncio.to_thread(lambda: sims.call(plant.start).result(10))  # same port: a PLC reboot
            before = ua.readings
            await async_wait_until(lambda: agent.drivers["ua"].health.state == "up" and ua.readings > before + 5,
                                   timeout=30)
            seen["recovered"] = 1

        devices = [ua_device(plant, "ua", mode=mode, points=POINTS[:3]),
                   {"id": "meter", "host": "127.0.0.1", "port": meter.port, "interval": "100ms", "timeout": "90ms",
                    "points": [{"name": "p", "address": 12, "type": "float32"}]}]
        run_agent(device_map("gw-rst", sqlite_url, str(tmp_path / "buf"), devices), scenario)
    assert seen["recovered"] == 1
    assert 8 <= seen["meter_polls_during"] <= 11, "the Modbus meter kept its 100 ms schedule"


def test_secure_channel_with_username_and_server_trust(sqlite_url: str, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    from drivers.opcua.security import make_certificate

    server_cert, server_key = make_certificate(tmp_path / "server", "urn:hacksky:simulator:water-plant",
                                               "HackSky water plant", "localhost", server=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    made = subprocess.run([sys.executable, "-m", "agent", "opcua-cert", "--gateway", "gw-sec", "--out",
                           str(tmp_path / "client")], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert made.returncode == 0, made.stderr
    (tmp_path / "ua.pass").write_text("s3cret\n")
    plant = OpcUaPlant(WaterPlant(seed=6), certificate=server_cert, private_key=server_key,
                       users={"edge": "s3cret"}, secure_only=True)
    trust = tmp_path / "trusted"
    trust.mkdir()
    security = {"policy": "Basic256Sha256", "mode": "SignAndEncrypt", "certificate": str(tmp_path / "client/cert.der"),
                "private_key": str(tmp_path / "client/key.pem"), "trust_dir": str(trust)}
    identity = {"username": "edge", "password_file": str(tmp_path / "ua.pass")}
    refused_log: list[str] = []

    async def refused(agent: Agent) -> None:
        await async_wait_until(lambda: agent.device_stats["ua"].polls >= 2, timeout=20)
        refused_log.append(agent.drivers["ua"].health.reason)

    async def accepted(agent: Agent) -> None:
        await async_wait_until(lambda: agent.device_stats["ua"].readings >= 6 and
                               agent.drivers["ua"].health.state == "up", timeout=20)

    with SimulatorThread([plant]):
        device = ua_device(plant, "ua", points=POINTS[:3], security=security, **identity)
        first = run_agent(device_map("gw-sec", sqlite_url, str(tmp_path / "buf1"), [device]), refused)
        assert first.drivers["ua"].health.state == "down"
        rejected = list((tmp_path / "rejected").glob("*.der"))
        assert len(rejected) == 1, "the untrusted certificate is kept for the operator to inspect"
        told = [r.getMessage() for r in caplog.records if "is not trusted" in r.getMessage()]
        assert len(told) == 1 and f"move {rejected[0]} into {trust}/" in told[0], "the error says which file to trust"
        rejected[0].rename(trust / rejected[0].name)  # the operator trusts it
        second = run_agent(device_map("gw-sec", sqlite_url, str(tmp_path / "buf2"), [device]), accepted)
        wrong = dict(identity, password_file=str(tmp_path / "wrong.pass"))
        (tmp_path / "wrong.pass").write_text("guess")
        meter = ModbusSimulator({1: PowerMeter(seed=2)})
        with SimulatorThread([meter]):
            other = {"id": "meter", "host": "127.0.0.1", "port": meter.port, "interval": "100ms", "timeout": "90ms",
                     "points": [{"name": "p", "address": 12, "type": "float32"}]}
            caplog.clear()
            third = run_agent(device_map("gw-sec", sqlite_url, str(tmp_path / "buf3"),
                                         [dict(device, **wrong), other]), refused)
    assert second.drivers["ua"].health.state == "up"
    assert third.drivers["ua"].health.state == "down", "a wrong password gets no session"
    assert any("BadUserAccessDenied" in r.getMessage() for r in caplog.records), "and the error says why"
    assert third.drivers["meter"].health.state == "up" and third.device_stats["meter"].polls >= 5
    values = [v for (v,) in query(sqlite_url, "SELECT value FROM readings WHERE point = 'tank1_level' "
                                              "AND quality = 'good'")]
    assert values and all(math.isfinite(v) for v in values)
    assert not plant.write_services()


@pytest.mark.parametrize("mode", ["poll", "subscribe"])
def test_500_points_signed_and_encrypted_with_username_into_mariadb(mariadb_url: str, tmp_path: Path,
                                                                    mode: str) -> None:
    from simulators.opcua_plant import sensor_node

    server_cert, server_key, client_cert, client_key, trust = pki(tmp_path, "gw-500")
    (tmp_path / "ua.pass").write_text("s3cret")
    plant = OpcUaPlant(WaterPlant(seed=8), certificate=server_cert, private_key=server_key, users={"edge": "s3cret"},
                       secure_only=True, max_nodes_per_read=50, sensors=500)
    points = [{"name": f"s{k:03d}", "node": f"{NSU}{sensor_node(k)}"} for k in range(500)]

    async def scenario(agent: Agent) -> None:
        await async_wait_until(lambda: agent.device_stats["ua"].readings >= 2000 and agent.stats.rows_written >= 2000,
                               timeout=60)

    with SimulatorThread([plant]):
        device = ua_device(plant, "ua", mode=mode, interval="1s", timeout="900ms", points=points,
                           security={"policy": "Basic256Sha256", "mode": "SignAndEncrypt",
                                     "certificate": str(client_cert), "private_key": str(client_key),
                                     "trust_dir": str(trust)},
                           username="edge", password_file=str(tmp_path / "ua.pass"))
        agent = run_agent(device_map("gw-500", mariadb_url, str(tmp_path / "buf"), [device]), scenario)
    stored = dict(query(mariadb_url, "SELECT point, count(*) FROM readings WHERE quality = 'good' GROUP BY point"))
    assert len(stored) == 500, "every one of the 500 points landed"
    assert max(plant.read_sizes) <= 50
    if mode == "poll":
        assert agent.drivers["ua"].read_requests == 10 * agent.device_stats["ua"].polls  # type: ignore[attr-defined]
    else:
        assert {"CreateSubscriptionRequest", "CreateMonitoredItemsRequest"} <= set(plant.services)
    assert not plant.write_services()


def test_x509_user_identity_is_accepted_where_nothing_else_is(sqlite_url: str, tmp_path: Path) -> None:
    server_cert, server_key, client_cert, client_key, trust = pki(tmp_path, "gw-x509")
    plant = OpcUaPlant(WaterPlant(seed=9), certificate=server_cert, private_key=server_key, secure_only=True,
                       certificate_users_only=True)
    security = {"policy": "Basic256Sha256", "mode": "Sign", "certificate": str(client_cert),
                "private_key": str(client_key), "trust_dir": str(trust)}

    async def scenario(agent: Agent) -> None:
        await async_wait_until(lambda: agent.device_stats["x509"].polls >= 4 and agent.device_stats["anon"].polls >= 4,
                               timeout=20)

    with SimulatorThread([plant]):
        devices = [ua_device(plant, "x509", points=POINTS[:2], security=security, identity="certificate"),
                   ua_device(plant, "anon", points=POINTS[:2], security=security)]
        agent = run_agent(device_map("gw-x509", sqlite_url, str(tmp_path / "buf"), devices), scenario)
    assert agent.drivers["x509"].health.state == "up", "the certificate identity opened a session"
    assert agent.drivers["anon"].health.state == "down", "an anonymous session on the same channel is refused"


def test_strings_that_are_not_utf8_are_stored_repaired_and_marked(central_url: str, tmp_path: Path) -> None:
    server = HostileOpcUaServer({name: dv for name, (dv, _, _) in HOSTILE_TEXT.items()})
    device = {"id": "texts", "type": "plc", "protocol": "opcua", "endpoint": server.endpoint, "interval": "200ms",
              "timeout": "190ms", "points": [{"name": name, "node": f"nsu={NAMESPACE};s={name}"}
                                             for name in HOSTILE_TEXT]}

    async def scenario(agent: Agent) -> None:
        await async_wait_until(lambda: agent.stats.rows_written >= 3 * len(HOSTILE_TEXT), timeout=30)

    with SimulatorThread([server]):
        agent = run_agent(device_map("gw-text", central_url, str(tmp_path / "buf"), [device]), scenario)
    assert agent.stats.quarantined == 0, "the central database refused none of it (UnicodeEncodeError before)"
    stored = set(query(central_url, "SELECT point, value_text, quality FROM readings"))
    assert stored == {(name, text, quality) for name, (_, text, quality) in HOSTILE_TEXT.items()}
