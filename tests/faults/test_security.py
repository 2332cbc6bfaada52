"""Security basics: TLS to MariaDB with a CA made here, secrets never logged, private keys born private."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from agent.central.engine import make_engine
from agent.cli import build_parser, cmd_opcua_cert
from agent.pipeline.service import Agent
from agent.settings import CentralConfig, TlsConfig
from tests.faults.plant import count_rows, plant
from tests.helpers import async_wait_until, device_map, run_agent
from tests.infra.certs import make_ca
from tests.infra.private_mariadb import PrivateMariaDB


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
                                                 caplog: pytest.LogCaptureFixture,
                                                 capfd: pytest.CaptureFixture[str]) -> None:
    """Neither the agent's log nor its writer process's (on stderr) nor the state file holds it."""
    password = "Sup3r-Secret-Pa55"
    private_mariadb.execute("CREATE USER 'edge'@'127.0.0.1' IDENTIFIED BY 'the-real-one'",
                            "GRANT ALL ON hacksky.* TO 'edge'@'127.0.0.1'")
    secret = tmp_path / "mysql.pass"
    secret.write_text(password)
    with plant(meters=1) as p:
        async def scenario(agent: Agent) -> None:
            # the state's name is not the point here ("down", or "misconfigured" for a wrong password)
            await async_wait_until(lambda: "Access denied" in agent.stats.central_error)
            await asyncio.sleep(2.5)  # let the state file be written with the error

        with caplog.at_level(logging.DEBUG):
            agent = run_agent(device_map("gw-secret", private_mariadb.url(user="edge"), str(tmp_path / "buf"),
                                         p.devices(), password_file=str(secret)), scenario)
    logs = caplog.text + capfd.readouterr().err  # the writer logs here, or on stderr from its own process
    assert "Access denied" in agent.stats.central_error
    assert "Access denied" in logs
    assert password not in logs
    assert password not in (tmp_path / "buf" / "state.json").read_text()


def opcua_cert(out: Path, *extra: str) -> int:
    """``hacksky-edge opcua-cert --gateway gw-key --out OUT ...`` in this process."""
    return cmd_opcua_cert(build_parser().parse_args(["opcua-cert", "--gateway", "gw-key", "--out", str(out),
                                                     "--hostname", "edge.local", *extra]))


@pytest.fixture
def no_umask() -> Iterator[None]:
    """umask 0: a file's mode is then whatever it was created with."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_opcua_key_is_created_0600_never_chmodded_afterwards(tmp_path: Path, no_umask: None,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    opened: dict[str, tuple[int, int]] = {}
    real_open = os.open

    def recording_open(path: Any, flags: int, mode: int = 0o777, *args: Any, **kw: Any) -> int:
        opened[Path(path).name] = (flags, mode)
        return real_open(path, flags, mode, *args, **kw)

    def no_chmod(*args: Any, **kw: Any) -> None:
        raise AssertionError("the key must not be readable by others even for an instant: no chmod afterwards")

    monkeypatch.setattr(os, "open", recording_open)
    monkeypatch.setattr(os, "chmod", no_chmod)
    monkeypatch.setattr(os, "fchmod", no_chmod)
    assert opcua_cert(tmp_path / "client") == 0
    key = tmp_path / "client" / "key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600, "with umask 0 this can only come from the create call"
    flags, mode = opened["key.pem"]
    assert mode == 0o600
    for flag in (os.O_CREAT, os.O_EXCL, os.O_NOFOLLOW, os.O_WRONLY):
        assert flags & flag == flag
    assert b"PRIVATE KEY" in key.read_bytes()
    assert stat.S_IMODE((tmp_path / "client" / "cert.der").stat().st_mode) == 0o644


@pytest.mark.parametrize("dangling", [False, True])
def test_opcua_cert_refuses_a_planted_symlink_and_leaves_its_target_alone(tmp_path: Path, dangling: bool,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    out, target = tmp_path / "client", tmp_path / "etc-shadow"
    out.mkdir()
    if not dangling:
        target.write_text("precious\n")
        target.chmod(0o644)
    (out / "key.pem").symlink_to(target)
    assert opcua_cert(out) == 1
    told = capsys.readouterr().err
    assert f"{out / 'key.pem'} (a symbolic link)" in told and "not overwritten" in told and "--force" in told
    if dangling:
        assert not target.exists(), "nothing was created through the link"
    else:
        assert target.read_text() == "precious\n" and stat.S_IMODE(target.stat().st_mode) == 0o644
    assert not (out / "cert.der").exists(), "nothing half-made either"
    assert (out / "key.pem").is_symlink()

    assert opcua_cert(out, "--force") == 0, "--force replaces the link itself"
    assert not (out / "key.pem").is_symlink() and stat.S_IMODE((out / "key.pem").stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in (out / "key.pem").read_bytes()
    assert (target.read_text() == "precious\n") if not dangling else not target.exists()
    assert sorted(p.name for p in out.iterdir()) == ["cert.der", "key.pem"], "no temporary file left"


def test_opcua_cert_keeps_an_existing_key_unless_forced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "client"
    assert opcua_cert(out) == 0
    first = (out / "key.pem").read_bytes(), (out / "cert.der").read_bytes()
    assert opcua_cert(out) == 1
    assert "already there; not overwritten" in capsys.readouterr().err
    assert ((out / "key.pem").read_bytes(), (out / "cert.der").read_bytes()) == first
    assert opcua_cert(out, "--force") == 0
    assert (out / "key.pem").read_bytes() != first[0] and (out / "cert.der").read_bytes() != first[1]
    assert stat.S_IMODE((out / "key.pem").stat().st_mode) == 0o600
