"""`central grants` roles on real MariaDB: the agent as the gateway role, maintain as the maintain role,
the API as the api and reader roles; each can do its job and nothing the others do."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pymysql
import pytest
from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from agent.api.app import create_app
from agent.central import migrate, schema
from agent.central.grants import ROLES
from agent.central.maintain import maintain
from agent.central.writer import CentralWriter
from agent.pipeline.service import Agent
from agent.records import DeviceInfo, PointInfo
from agent.settings import RetentionConfig
from simulators.power_meter import PowerMeter
from simulators.server import ModbusSimulator, SimulatorThread
from tests.helpers import async_wait_until, device_map, run_agent
from tests.infra.api_server import TOKEN, serve

ROOT = Path(__file__).resolve().parents[2]
USERS = {"gateway": "hacksky_gateway", "maintain": "hacksky_maintain", "api": "hacksky_api", "reader": "hacksky_reader"}


def admin() -> pymysql.connections.Connection:
    return pymysql.connect(host="127.0.0.1", user="root", password="", autocommit=True)


@pytest.fixture
def roles(mariadb_server: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A database with the schema, the printed grants applied, and one user per role: kind -> URL."""
    name = f"hacksky_lp_{os.getpid()}_{int(time.time())}"
    root = admin()
    root.cursor().execute(f"CREATE DATABASE `{name}`")
    engine = create_engine(f"{mariadb_server}/{name}")
    migrate.upgrade(engine)
    engine.dispose()
    config = tmp_path / "central.yaml"
    config.write_text(device_map("gw-lp", f"{mariadb_server}/{name}", str(tmp_path / "buf"), []))
    printed = subprocess.run([sys.executable, "-m", "agent", "central", "grants", "-c", str(config)],
                             capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert printed.returncode == 0, printed.stderr
    statements = [line for line in printed.stdout.splitlines() if line and not line.startswith("--")]
    assert len(statements) == len(ROLES) + sum(len(tables) for grants in ROLES.values() for _, tables in grants)
    users = {kind: f"lp_{kind}_{os.getpid()}" for kind in USERS}
    cur = root.cursor()
    for statement in statements:
        cur.execute(statement)
    for kind, user in users.items():
        cur.execute(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'pw-{kind}'")
        cur.execute(f"GRANT {USERS[kind]} TO '{user}'@'127.0.0.1'")
        cur.execute(f"SET DEFAULT ROLE {USERS[kind]} FOR '{user}'@'127.0.0.1'")
    try:
        yield {kind: f"mysql+pymysql://{user}:pw-{kind}@127.0.0.1:3306/{name}" for kind, user in users.items()}
    finally:
        for user in users.values():
            cur.execute(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")
        for role in USERS.values():
            cur.execute(f"DROP ROLE IF EXISTS {role}")
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        root.close()


def test_each_role_does_its_job_and_no_more(roles: dict[str, str], tmp_path: Path) -> None:
    server = ModbusSimulator({1: PowerMeter(seed=1)})

    async def scenario(agent: Agent) -> None:
        await async_wait_until(lambda: agent.stats.rows_written >= 30)

    # the agent as a plant runs it: the user in the URL, its password in a file
    password = tmp_path / "gateway.pass"
    password.write_text("pw-gateway\n")
    password.chmod(0o600)
    with SimulatorThread([server]):
        agent = run_agent(device_map("gw-lp", roles["gateway"].replace(":pw-gateway@", "@"), str(tmp_path / "buf"), [
            {"id": "meter", "type": "power_meter", "host": "127.0.0.1", "port": server.port, "unit_id": 1,
             "interval": "100ms", "points": [{"name": "power", "address": 12, "type": "float32", "role": "power"}]}],
            auto_migrate=False, password_file=str(password)), scenario)
    assert agent.stats.write_errors == 0 and agent.stats.quarantined == 0
    assert agent.delivery.buffer is not None and agent.delivery.buffer.reading_rows == 0

    gateway = create_engine(roles["gateway"])
    with gateway.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM readings")).scalar_one() == agent.stats.readings_taken
        assert conn.execute(text("SELECT count(*) FROM rollup_pending")).scalar_one() >= 1
        assert conn.execute(text("SELECT stopped_at IS NOT NULL FROM gateways")).scalar_one() == 1
        with pytest.raises((OperationalError, ProgrammingError), match="1142"):
            conn.execute(text("DELETE FROM readings"))
        assert conn.execute(text("SELECT point, role FROM device_points")).all() == [("power", "power")]
    gateway.dispose()

    engine = create_engine(roles["maintain"])
    report = maintain(engine, RetentionConfig())
    assert report.ran and report.readings_rolled_up == agent.stats.readings_taken
    assert len(report.partitions.added) > 3, "today and the days ahead: ALTER on readings"
    with engine.connect() as conn:
        with pytest.raises((OperationalError, ProgrammingError), match="1142"):
            conn.execute(text("UPDATE gateways SET host = 'x'"))
        with pytest.raises((OperationalError, ProgrammingError), match="1142"):
            conn.execute(text("INSERT INTO readings (device_id, point, ts) VALUES (1, 'forged', UTC_TIMESTAMP())"))
    engine.dispose()

    for kind, allowed in (("api", True), ("reader", False)):
        engine = create_engine(roles[kind])
        with engine.connect() as conn:
            last = conn.execute(select(func.max(schema.readings.c.ts))).scalar_one()
        if allowed:  # an alert to acknowledge (raised by the central team through the API itself)
            with engine.begin() as conn:
                conn.execute(insert(schema.alerts).values(alert_type="t", severity="low", title="t", event_key="lp"))
        with engine.connect() as conn:
            alert_id = conn.execute(select(schema.alerts.c.id).limit(1)).scalar()
        try:
            with serve(create_app(engine, TOKEN, clock=lambda last=last: last + timedelta(seconds=1))) as api:
                minutes = api.get("/api/series?device=meter&point=power&step=1m")
                gateways = api.get("/api/gateways")
                ack = api.call("POST", f"/api/alerts/{alert_id or 1}/acknowledge", {"by": "ops"}, token=TOKEN)
        finally:
            engine.dispose()
        assert sum(p["count"] for p in minutes["points"]) == agent.stats.readings_taken
        assert gateways["items"][0]["status"] == "offline", "stopped cleanly"
        if allowed:
            assert ack[0] == 200 and ack[1]["acknowledged"] is True
        else:
            assert ack == (403, {"error": "the API's database user is not allowed to do this: grant it the "
                                          "hacksky_api role (hacksky-edge central grants)"})

    # a month and more later: the maintain role drops whole days of readings (DROP on readings)
    engine = create_engine(roles["maintain"])
    with engine.connect() as conn:
        today = conn.execute(select(func.utc_timestamp())).scalar_one()
    report = maintain(engine, RetentionConfig(), now=today + timedelta(days=40))
    engine.dispose()
    assert len(report.partitions.dropped) > 3 and report.deleted["readings"] == 0


def test_a_gateway_role_granted_before_device_points_still_registers_its_devices(
        roles: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    """Grants printed by an older version (no device_points): the devices register, the points are
    left out with a warning that says what to grant, and readings keep landing."""
    root = admin()
    root.cursor().execute("REVOKE SELECT, INSERT, UPDATE ON "
                          f"`{roles['gateway'].rsplit('/', 1)[1]}`.`device_points` FROM hacksky_gateway")
    root.close()
    engine = create_engine(roles["gateway"])
    try:
        pks = CentralWriter(engine, "gw-old").sync_devices(
            [DeviceInfo("m1", type="power_meter", points=(PointInfo("power", role="power"),))])
        with engine.connect() as conn:
            assert conn.execute(select(schema.devices.c.id).where(schema.devices.c.gateway_id == "gw-old")
                                ).scalar_one() == pks["m1"]
    finally:
        engine.dispose()
    assert "hacksky-edge central grants" in caplog.text and "device points not registered" in caplog.text
