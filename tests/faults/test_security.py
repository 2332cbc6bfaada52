"""Security basics: TLS to MariaDB with a CA made here, secrets never logged."""

from __future__ import annotations

import asyncio
import logging
import subprocess
from pathlib import Path

import pymysql
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from agent.central import make_engine
from agent.service import Agent
from agent.settings import CentralConfig, TlsConfig
from bench.mariadb import PrivateMariaDB
from tests.faults.plant import count_rows, plant
from tests.helpers import async_wait_until, device_map, run_agent


def make_ca(directory: Path, name: str) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it (openssl)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    cert, key, csr = directory / "server.pem", directory / "server.key", directory / "server.csr"
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
        "-days", "2", "-subj", f"/CN={name}")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return {"ca": ca, "cert": cert, "key": key}


def session_cipher(cfg: CentralConfig) -> str | None:
    """The TLS cipher of a session opened with ``cfg``, or None when it cannot connect."""
    engine = make_engine(cfg)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SHOW SESSION STATUS LIKE 'Ssl_cipher'")).one()[1])
    except OperationalError:
        return None
    finally:
        engine.dispose()


def test_tls_to_mariadb_with_a_verified_certificate(tmp_path: Path) -> None:
    pki = make_ca(tmp_path / "pki", "HackSky test CA")
    impostor = make_ca(tmp_path / "other", "Some other CA")
    server = PrivateMariaDB(tmp_path / "db", ssl=pki)
    server.start()
    try:
        server.execute("CREATE DATABASE hacksky",
                       "CREATE USER 'edge'@'127.0.0.1' IDENTIFIED BY 'tls-pw' REQUIRE SSL",
                       "GRANT ALL ON hacksky.* TO 'edge'@'127.0.0.1'")
        secret = tmp_path / "pw"
        secret.write_text("tls-pw")
        url = server.url(user="edge")
        with pytest.raises(pymysql.err.OperationalError, match="Access denied"):
            pymysql.connect(host="127.0.0.1", port=server.port, user="edge", password="tls-pw", ssl_disabled=True)
        assert session_cipher(CentralConfig(url=url, password_file=secret, tls=TlsConfig(ca=impostor["ca"]))) \
            is None, "a server certificate from another CA is refused"
        assert session_cipher(CentralConfig(url=url, password_file=secret, tls=TlsConfig(ca=pki["ca"]))), \
            "with the right CA the session is encrypted"
        with plant(meters=2) as p:
            async def scenario(agent: Agent) -> None:
                await async_wait_until(lambda: agent.stats.rows_written >= 100)

            run_agent(device_map("gw-tls", url, str(tmp_path / "buf"), p.devices(), password_file=str(secret),
                                 tls={"ca": str(pki["ca"]), "verify_hostname": True}), scenario)
        total, distinct = count_rows(server.url())
        assert total == distinct >= 100
    finally:
        server.stop()


def test_password_never_appears_in_logs_or_state(private_mariadb: PrivateMariaDB, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    password = "Sup3r-Secret-Pa55"
    private_mariadb.execute("CREATE USER 'edge'@'127.0.0.1' IDENTIFIED BY 'the-real-one'",
                            "GRANT ALL ON hacksky.* TO 'edge'@'127.0.0.1'")
    secret = tmp_path / "mysql.pass"
    secret.write_text(password)
    with plant(meters=1) as p:
        async def scenario(agent: Agent) -> None:
            await async_wait_until(lambda: agent.stats.central_state == "down")
            await asyncio.sleep(2.5)  # let the state file be written with the error

        with caplog.at_level(logging.DEBUG):
            agent = run_agent(device_map("gw-secret", private_mariadb.url(user="edge"), str(tmp_path / "buf"),
                                         p.devices(), password_file=str(secret)), scenario)
    assert "Access denied" in agent.stats.central_error
    assert "Access denied" in caplog.text
    assert password not in caplog.text
    assert password not in (tmp_path / "buf" / "state.json").read_text()
