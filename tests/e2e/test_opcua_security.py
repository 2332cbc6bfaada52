"""OPC UA trust and identity against real asyncua servers on loopback: pinning on first use,
certificates from a plant's own PKI, and server-supplied text kept out of log structure."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path

import pytest
from asyncua import ua
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.pipeline.service import Agent
from drivers.base import Reading
from drivers.opcua.driver import OpcUaDriver
from drivers.opcua.security import fingerprint, make_certificate, pin_file
from drivers.opcua.spec import Endpoint, NodeSpec
from simulators.opcua_plant import OpcUaPlant
from simulators.server import SimulatorThread, free_port
from simulators.water_plant import WaterPlant
from tests.faults.hostile_opcua import APPLICATION_URI as HOSTILE_URI
from tests.faults.hostile_opcua import NAMESPACE, HostileOpcUaServer
from tests.helpers import async_wait_until, device_map, query, run_agent

LEVEL = NodeSpec("level", node="nsu=urn:hacksky:water-plant;s=Plant.Tank1.Level")
#: certificates valid from 2000 to 2100: no test depends on today's date beyond that
NOT_BEFORE, NOT_AFTER = dt.datetime(2000, 1, 1, tzinfo=dt.UTC), dt.datetime(2100, 1, 1, tzinfo=dt.UTC)


def der(path: Path) -> x509.Certificate:
    return x509.load_der_x509_certificate(path.read_bytes())


def plant_pki(directory: Path, uri: str | None) -> tuple[Path, Path]:
    """A client certificate and key issued by a plant CA, carrying ``uri`` (or only a DNS name), as PEM files
    named ``.crt``/``.key`` the way a PKI hands them out."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Plant Issuing CA")])
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    names: list[x509.GeneralName] = [x509.DNSName("edge-07.plant.example")]
    if uri is not None:
        names.insert(0, x509.UniformResourceIdentifier(uri))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Plant"),
                                     x509.NameAttribute(NameOID.COMMON_NAME, "edge-07")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOT_BEFORE).not_valid_after(NOT_AFTER)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=True,
                                         data_encipherment=True, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path, key_path = directory / "edge-07.crt", directory / "edge-07.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def server_cert(directory: Path, name: str = "HackSky water plant",
                uri: str = "urn:hacksky:simulator:water-plant") -> tuple[Path, Path]:
    return make_certificate(directory, uri, name, "localhost", server=True)


def secure(url: str, client: tuple[Path, Path], trust: Path, tofu: bool = False) -> Endpoint:
    return Endpoint(url, timeout=2.0, policy="Basic256Sha256", security_mode="SignAndEncrypt",
                    certificate=client[0], private_key=client[1], trust_dir=trust, trust_on_first_use=tofu,
                    application_uri="urn:hacksky-edge:gw-test")


def test_first_certificate_per_endpoint_is_pinned_and_any_other_refused(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    real_a, real_c = server_cert(tmp_path / "a"), server_cert(tmp_path / "c")  # same ApplicationName, both
    client = make_certificate(tmp_path / "client", "urn:hacksky-edge:gw-test")
    trust = tmp_path / "trusted"
    port_a = free_port()
    outcome: dict[str, object] = {}

    async def reads_until(driver: OpcUaDriver, plant: OpcUaPlant, sessions: int) -> list[Reading]:
        """Read through the reconnect backoff until ``plant`` has been asked for ``sessions`` sessions."""
        readings = await driver.read()
        while plant.services["CreateSessionRequest"] < sessions:
            await asyncio.sleep(0.1)
            readings = await driver.read()
        return readings

    async def main() -> None:
        a = OpcUaPlant(WaterPlant(seed=1), port=port_a, certificate=real_a[0], private_key=real_a[1],
                       secure_only=True)
        c = OpcUaPlant(WaterPlant(seed=2), certificate=real_c[0], private_key=real_c[1], secure_only=True)
        await a.start()
        await c.start()
        to_a = OpcUaDriver("plc-a", secure(a.endpoint, client, trust, tofu=True), [LEVEL])
        to_c = OpcUaDriver("plc-c", secure(c.endpoint, client, trust, tofu=True), [LEVEL])
        try:
            outcome["first"] = [(await to_a.read())[0].quality, (await to_c.read())[0].quality]
            outcome["trusted_after_first"] = {p.name: p.read_bytes() for p in trust.iterdir()}
            await to_a.close()
            await a.stop()
            # the endpoint of A now answers with C's certificate: trusted in the directory, not pinned for A
            impostor = OpcUaPlant(WaterPlant(seed=3), port=port_a, certificate=real_c[0], private_key=real_c[1],
                                  secure_only=True)
            await impostor.start()
            refused = await asyncio.wait_for(reads_until(to_a, impostor, 3), 30)
            outcome["refused"] = (refused[0].quality, to_a.health.state, to_c.health.state)
            await to_a.close()
            await impostor.stop()
            back = OpcUaPlant(WaterPlant(seed=4), port=port_a, certificate=real_a[0], private_key=real_a[1],
                              secure_only=True)
            await back.start()
            outcome["back"] = (await asyncio.wait_for(reads_until(to_a, back, 1), 30))[0].quality
            await back.stop()
        finally:
            await to_a.close()
            await to_c.close()
            await c.stop()

    with caplog.at_level(logging.INFO):
        asyncio.run(main())
    fp_a, fp_c = fingerprint(der(real_a[0])), fingerprint(der(real_c[0]))
    assert outcome["first"] == ["good", "good"]
    trusted = outcome["trusted_after_first"]
    assert trusted == {fp_a.replace(":", "").lower() + ".der": real_a[0].read_bytes(),
                       fp_c.replace(":", "").lower() + ".der": real_c[0].read_bytes()}, \
        "two certificates with one ApplicationName: two files, named by fingerprint"
    url_a = f"opc.tcp://127.0.0.1:{port_a}/hacksky/plant"
    assert pin_file(secure(url_a, client, trust)).read_text().splitlines() == [fp_a, url_a]
    assert outcome["refused"] == ("bad:connection", "down", "up")
    assert {p.name: p.read_bytes() for p in trust.iterdir()} == trusted, "nothing added, nothing overwritten"
    told = [r.getMessage() for r in caplog.records if "not the one pinned" in r.getMessage()]
    assert len(told) == 1, "refused at every attempt, logged once"
    assert url_a in told[0] and f"pinned SHA-256 {fp_a}" in told[0] and f"presented SHA-256 {fp_c}" in told[0]
    assert str(pin_file(secure(url_a, client, trust))) in told[0], "and it says how to accept a new certificate"
    assert (tmp_path / "rejected" / (fp_c.replace(":", "").lower() + ".der")).read_bytes() == real_c[0].read_bytes()
    assert len([r for r in caplog.records if r.getMessage().startswith("trusting ")]) == 2, "one per endpoint"
    assert outcome["back"] == "good", "the pinned server, back, is accepted again"



VALUE = {"Level": ua.DataValue(ua.Variant(2.5, ua.VariantType.Double))}


def test_a_certificate_from_the_plant_pki_presents_its_own_application_uri(sqlite_url: str, tmp_path: Path) -> None:
    pki_cert, pki_key = plant_pki(tmp_path / "pki", "urn:plant-pki:edge-07")  # not urn:hacksky-edge:<gateway>
    cert, key = server_cert(tmp_path / "server", "Strict PLC", HOSTILE_URI)
    trust = tmp_path / "trusted"
    trust.mkdir()
    (trust / "plc.der").write_bytes(cert.read_bytes())
    server = HostileOpcUaServer(VALUE, "Strict PLC", cert, key, check_client_uri=True)
    device = {"id": "strict", "type": "plc", "protocol": "opcua", "endpoint": server.endpoint, "interval": "1s",
              "timeout": "900ms", "points": [{"name": "level", "node": f"nsu={NAMESPACE};s=Level"}],
              "security": {"policy": "Basic256Sha256", "mode": "SignAndEncrypt", "certificate": str(pki_cert),
                           "private_key": str(pki_key), "trust_dir": str(trust)}}

    async def scenario(agent: Agent) -> None:
        await async_wait_until(lambda: agent.stats.rows_written >= 3, timeout=30)

    with SimulatorThread([server]):
        agent = run_agent(device_map("gw-pki", sqlite_url, str(tmp_path / "buf"), [device]), scenario)
    assert agent.drivers["strict"].health.state == "up", "the server checked the URI and opened the session"
    assert {v for (v,) in query(sqlite_url, "SELECT value FROM readings WHERE quality = 'good'")} == {2.5}


def test_a_certificate_without_the_uri_the_server_expects_is_refused_with_a_hint(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dns_only = plant_pki(tmp_path / "pki", None)
    cert, key = server_cert(tmp_path / "server", "Strict PLC", HOSTILE_URI)
    trust = tmp_path / "trusted"
    trust.mkdir()
    (trust / "plc.der").write_bytes(cert.read_bytes())

    async def main() -> tuple[str, str]:
        server = HostileOpcUaServer(VALUE, "Strict PLC", cert, key, check_client_uri=True)
        await server.start()
        driver = OpcUaDriver("strict", secure(server.endpoint, dns_only, trust),
                             [NodeSpec("level", node=f"nsu={NAMESPACE};s=Level")])
        try:
            return (await driver.read())[0].quality, driver.health.state
        finally:
            await driver.close()
            await server.stop()

    with caplog.at_level(logging.INFO):
        assert asyncio.run(main()) == ("bad:connection", "down")
    told = [r.getMessage() for r in caplog.records if r.name == "drivers.opcua.driver" and r.levelno == logging.ERROR]
    assert len(told) == 1 and "BadCertificateUriInvalid" in told[0]
    assert (f"the server refused the application URI urn:hacksky-edge:gw-test: the certificate {dns_only[0]} "
            "carries none") in told[0]


FORGED = "PLC\n2026-01-01 00:00:00 CRITICAL agent: forged\x1b[8m"


@pytest.mark.parametrize("tofu", [False, True])
def test_certificate_subject_and_server_name_cannot_forge_log_lines(tmp_path: Path, tofu: bool,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    cert, key = server_cert(tmp_path / "server", FORGED, HOSTILE_URI)  # the subject's CN
    client = make_certificate(tmp_path / "client", "urn:hacksky-edge:gw-test")

    async def main() -> str:
        server = HostileOpcUaServer(VALUE, FORGED, cert, key)  # and the ApplicationName
        await server.start()
        driver = OpcUaDriver("plc", secure(server.endpoint, client, tmp_path / "trusted", tofu=tofu),
                             [NodeSpec("level", node=f"nsu={NAMESPACE};s=Level")])
        try:
            return (await driver.read())[0].quality
        finally:
            await driver.close()
            await server.stop()

    with caplog.at_level(logging.DEBUG, logger="drivers"):
        quality = asyncio.run(main())
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("drivers")]
    mentions = [m for m in ours if "forged" in m]
    assert mentions, "the subject or name is logged ..."
    assert all("\n" not in m and "\x1b" not in m for m in ours), "... but never as a line of its own"
    assert all("PLC\\n2026-01-01 00:00:00 CRITICAL agent: forged\\x1b[8m" in m for m in mentions)
    assert quality == ("good" if tofu else "bad:connection")
