"""``discover opcua`` against the water plant's OPC UA simulator on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509

from agent.configload import load_config_text
from agent.settings import AgentConfig, OpcUaDevice
from agent.sources import SourceContext, source_for
from drivers.base import Reading
from drivers.modbus import ConnectionPool
from drivers.opcua.security import fingerprint, make_certificate
from simulators.opcua_plant import NAMESPACE, VARIABLES, OpcUaPlant
from simulators.server import SimulatorThread
from simulators.water_plant import WaterPlant
from tests.discover.conftest import SIM_START, Run

#: the services a browse may send: session, Browse and Read
READ_ONLY = {"CreateSessionRequest", "ActivateSessionRequest", "CloseSessionRequest", "BrowseRequest",
             "BrowseNextRequest", "ReadRequest"}
UNITS = {"Plant.Tank1.Level": "m", "Plant.Outlet.Pressure": "bar"}


@pytest.fixture(scope="module")
def plant() -> Iterator[OpcUaPlant]:
    """The plant server (its analog variables carry EngineeringUnits, as AnalogItems do)."""
    server = OpcUaPlant(WaterPlant(seed=7, start=SIM_START))
    with SimulatorThread([server]):
        yield server


def read_once(cfg: AgentConfig) -> list[Reading]:
    """One read of the map's one device by the agent's own OPC UA driver."""
    (device,) = cfg.devices

    async def read() -> list[Reading]:
        driver = source_for("opcua").driver(device, cfg.resolved(device), SourceContext(ConnectionPool(), "gw"))
        try:
            return await driver.read()
        finally:
            await driver.close()

    return asyncio.run(read())


def points(run: Run) -> dict[str, dict[str, str]]:
    assert run.status == 0, run.err
    return {p["name"]: p for p in run.device()["points"]}


def test_every_variable_with_its_namespace_uri_node_id_unit_and_comment(
        plant: OpcUaPlant, discover: Callable[..., Run]) -> None:
    run = discover("opcua", plant.endpoint)
    found = points(run)
    assert set(found) == set(VARIABLES)
    assert found["Plant.Tank1.Level"] == {"name": "Plant.Tank1.Level", "unit": "m",
                                          "node": f"nsu={NAMESPACE};s=Plant.Tank1.Level"}
    assert found["Plant.Outlet.Pressure"]["unit"] == "bar"
    assert "unit" not in found["Plant.Pump1.Running"]
    assert all(p["node"] == f"nsu={NAMESPACE};s={name}" for name, p in found.items())
    comments = run.comments()
    assert comments["Plant.Tank1.Level"].startswith("Double, read, ")
    assert comments["Plant.Pump1.Running"].startswith("Boolean, read, ")
    device = run.device()
    assert (device["protocol"], device["endpoint"], device["mode"]) == ("opcua", plant.endpoint, "poll")
    assert run.out.startswith(f"# hacksky-edge discover opcua {plant.endpoint}\n")
    assert f"namespace {plant.namespace_index}: {NAMESPACE}" in run.out
    assert plant.write_services() == set()
    assert set(plant.services) <= READ_ONLY, plant.services


def test_match_filters_on_browse_name_or_dotted_path(plant: OpcUaPlant, discover: Callable[..., Run]) -> None:
    assert set(points(discover("opcua", plant.endpoint, "--match", "Flow"))) == {"Plant.Pump1.Flow",
                                                                                "Plant.Outlet.Flow"}
    assert set(points(discover("opcua", plant.endpoint, "--match", "Plant.Tank1.*"))) == {"Plant.Tank1.Level"}
    nothing = discover("opcua", plant.endpoint, "--match", "*Temperature*")
    assert nothing.status == 0 and nothing.device()["points"] == [] and "matches" in nothing.err


def test_depth_and_root_limit_the_browse(plant: OpcUaPlant, discover: Callable[..., Run]) -> None:
    assert points(discover("opcua", plant.endpoint, "--depth", "2")) == {}
    assert set(points(discover("opcua", plant.endpoint, "--depth", "3"))) == set(VARIABLES)
    pump = discover("opcua", plant.endpoint, "--root", "/Objects/2:Plant/2:Pump1", "--depth", "1")
    assert set(points(pump)) == {"Plant.Pump1.Running", "Plant.Pump1.Flow"}
    wrong = discover("opcua", plant.endpoint, "--root", "/Objects/2:Plant/2:Tank9")
    assert wrong.status == 2 and wrong.out == ""
    assert wrong.err.count("\n") == 1 and "has no child '2:Tank9'" in wrong.err and "2:Tank1" in wrong.err


def test_the_generated_device_loads_and_the_agent_reads_it_with_good_quality(
        plant: OpcUaPlant, discover: Callable[..., Run]) -> None:
    run = discover("opcua", plant.endpoint, "--id", "plc-02")
    cfg = load_config_text("gateway: {id: gw-discover}\n" + run.out)
    readings = read_once(cfg)
    assert {r.point for r in readings} == set(VARIABLES)
    assert all(r.quality == "good" and r.value is not None for r in readings), readings
    level = next(r for r in readings if r.point == "Plant.Tank1.Level")
    assert 0.0 < (level.value or 0.0) < WaterPlant.MAX


def test_a_secured_server_with_a_user_login(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            discover: Callable[..., Run]) -> None:
    server_cert, server_key = make_certificate(tmp_path / "server", "urn:hacksky:simulator:water-plant",
                                               "HackSky water plant", "localhost", server=True)
    client_cert, client_key = make_certificate(tmp_path / "client", "urn:hacksky-edge:gw-discover")
    trust = tmp_path / "trusted"
    trust.mkdir()
    (trust / "plant.der").write_bytes(server_cert.read_bytes())
    monkeypatch.setenv("HACKSKY_TEST_UA_PASSWORD", "s3cret")
    server = OpcUaPlant(WaterPlant(seed=7, start=SIM_START), certificate=server_cert, private_key=server_key,
                        users={"operator": "s3cret"}, secure_only=True)
    login = ["--policy", "Basic256Sha256", "--certificate", str(client_cert), "--private-key", str(client_key),
             "--username", "operator", "--password-env", "HACKSKY_TEST_UA_PASSWORD", "--match", "Level"]
    with SimulatorThread([server]):
        unverified = discover("opcua", server.endpoint, *login)
        trusted = discover("opcua", server.endpoint, *login, "--trust-dir", str(trust))
        cfg = load_config_text("gateway: {id: gw-discover}\n" + trusted.out)
        (device,) = cfg.devices
        (level,) = read_once(cfg)
    assert set(points(unverified)) == set(points(trusted)) == {"Plant.Tank1.Level"}
    fp = fingerprint(x509.load_der_x509_certificate(server_cert.read_bytes()))
    assert f"# server certificate SHA-256 {fp} was NOT verified" in unverified.out
    assert "NOT verified" not in trusted.out
    assert trusted.device()["security"] == {"policy": "Basic256Sha256", "mode": "SignAndEncrypt",
                                            "certificate": str(client_cert.resolve()),
                                            "private_key": str(client_key.resolve()), "trust_dir": str(trust.resolve())}
    assert isinstance(device, OpcUaDevice)
    assert (device.username, device.password_env) == ("operator", "HACKSKY_TEST_UA_PASSWORD")
    assert level.quality == "good" and level.point == "Plant.Tank1.Level"
    assert server.write_services() == set()
