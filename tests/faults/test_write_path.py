"""The write path never stalls on a record: any failure isolates it; a stuck writer is said out loud."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest
from asyncua import ua
from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from agent.buffer.disk import DiskBuffer, Pack
from agent.central import migrate
from agent.central.engine import make_engine
from agent.central.writer import CentralWriter
from agent.pipeline.service import Agent
from agent.records import DeviceInfo
from agent.settings import CentralConfig
from drivers.base import Reading
from drivers.opcua.driver import quality_of, status_of
from simulators.power_meter import HOLDING_MAP, PowerMeter
from simulators.server import ModbusSimulator, SimulatorThread
from tests.conftest import MARIADB_HOST, MARIADB_PORT
from tests.faults.conftest import FaultRow
from tests.helpers import async_wait_until, device_map, query, run_agent

T0 = 1_764_000_000_000_000  # 2025-11-24, pinned: no test reads the clock
METER_POINTS = [{"name": n, "address": HOLDING_MAP[n], "type": "float32"} for n in ("voltage_l1", "active_power")]


def meter_device(port: int) -> dict[str, object]:
    return {"id": "meter", "type": "power_meter", "host": "127.0.0.1", "port": port, "unit_id": 1,
            "interval": "100ms", "timeout": "90ms", "points": METER_POINTS}


def _admin() -> pymysql.connections.Connection:
    return pymysql.connect(host=MARIADB_HOST, port=MARIADB_PORT, user="root", password="", autocommit=True)


@pytest.fixture
def limited_user(mariadb_url: str, tmp_path: Path) -> Iterator[tuple[str, Path, str]]:
    """A migrated database and a user who may only read it: (url without password, password file, user)."""
    engine = make_engine(CentralConfig(url=mariadb_url))
    migrate.upgrade(engine)
    engine.dispose()
    database = mariadb_url.rsplit("/", 1)[1]
    user = f"edge_{uuid.uuid4().hex[:10]}"
    secret = tmp_path / "central.pw"
    secret.write_text("s3cret-pw\n")
    secret.chmod(0o600)
    admin = _admin()
    with admin.cursor() as cur:
        cur.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY 's3cret-pw'")
        cur.execute(f"CREATE USER '{user}'@'localhost' IDENTIFIED BY 's3cret-pw'")
        for host in ("%", "localhost"):
            cur.execute(f"GRANT SELECT ON `{database}`.* TO '{user}'@'{host}'")
    try:
        yield f"mysql+pymysql://{user}@{MARIADB_HOST}:{MARIADB_PORT}/{database}", secret, user
    finally:
        with admin.cursor() as cur:
            for host in ("%", "localhost"):
                cur.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")
        admin.close()


def test_text_no_database_can_encode_is_quarantined_and_a_healthy_device_loses_nothing(
        central_url: str, tmp_path: Path, fault_report: list[FaultRow]) -> None:
    """A lone surrogate (what asyncua makes of byte 0xFF) fails in PyMySQL and sqlite3 alike, not as a
    database error: the pack is bisected all the same, the record quarantined, the rest delivered."""
    buffer_dir = tmp_path / "buf"
    held = DiskBuffer(buffer_dir, 10**9)
    hostile = [Reading("ua-plc", "label", T0 + i, None, "bad\udcff" if i == 5 else f"ok {i}") for i in range(40)]
    held.put(hostile)
    held.close()
    sim = ModbusSimulator({1: PowerMeter(seed=1)})

    async def scenario(agent: Agent) -> None:
        await async_wait_until(lambda: agent.stats.quarantined == 1 and agent.device_stats["meter"].polls >= 20)
        await async_wait_until(lambda: agent.delivery.buffer is not None and agent.delivery.buffer.reading_rows == 0
                               and agent.stats.central_state == "up")
        health = await agent.health()
        assert health["ready"] and health["checks"]["central"] == "up"

    with SimulatorThread([sim]):
        agent = run_agent(device_map("gw-text", central_url, str(buffer_dir), [meter_device(sim.port)]), scenario)
    labels = query(central_url, "SELECT value_text FROM readings WHERE point = 'label' ORDER BY ts")
    assert [r[0] for r in labels] == [f"ok {i}" for i in range(40) if i != 5]
    total = query(central_url, "SELECT count(*) FROM readings WHERE point <> 'label'")[0][0]
    distinct = query(central_url, "SELECT count(*) FROM (SELECT DISTINCT point, ts FROM readings "
                                  "WHERE point <> 'label') AS d")[0][0]
    assert total == distinct == agent.stats.readings_taken, "the healthy meter lost nothing"
    assert agent.stats.write_errors >= 1
    alerts = query(central_url, "SELECT alert_type, severity FROM alerts WHERE alert_type = 'records_quarantined'")
    assert alerts == [("records_quarantined", "high")]
    buffer = DiskBuffer(buffer_dir, 10**9)
    [(kind, payload, error)] = buffer.quarantined()
    buffer.close()
    assert kind == "reading" and payload["text"] == "bad\udcff" and "UnicodeEncodeError" in error
    backend = "SQLite" if central_url.startswith("sqlite") else "MariaDB"
    fault_report.append(FaultRow(f"Undecodable device text (lone surrogate), {backend}",
                                 "1 record in a 40-record backlog beside a live meter", 40 + agent.stats.readings_taken,
                                 39 + agent.stats.readings_taken, 0, 0, None,
                                 "not a database error, bisected all the same: quarantined with the "
                                 "UnicodeEncodeError and alerted; the meter's rows all landed"))


def test_grants_that_refuse_writes_are_a_configuration_error_then_a_stall_and_nothing_is_lost(
        limited_user: tuple[str, Path, str], mariadb_url: str, tmp_path: Path,
        fault_report: list[FaultRow]) -> None:
    url, secret, user = limited_user
    database = mariadb_url.rsplit("/", 1)[1]
    sim = ModbusSimulator({1: PowerMeter(seed=2)})
    seen: dict[str, object] = {}

    async def scenario(agent: Agent) -> None:
        await async_wait_until(lambda: agent.stats.central_state == "misconfigured")
        health = await agent.health()
        seen["misconfigured"] = health
        await async_wait_until(lambda: "central/stalled" in agent.tracker.open
                               and "central/misconfigured" in agent.tracker.open)
        seen["stalled"] = await agent.health()
        seen["snapshot"] = agent.snapshot()["central"]
        admin = _admin()
        with admin.cursor() as cur:
            for host in ("%", "localhost"):
                cur.execute(f"GRANT INSERT, UPDATE ON `{database}`.* TO '{user}'@'{host}'")
        admin.close()
        await async_wait_until(lambda: agent.stats.central_state == "up" and not agent.stalled()
                               and "central/stalled" not in agent.tracker.open, timeout=30)
        await async_wait_until(lambda: agent.delivery.buffer is not None and not agent.delivery.buffer.event_rows)
        seen["recovered"] = await agent.health()

    with SimulatorThread([sim]):
        agent = run_agent(device_map("gw-grants", url, str(tmp_path / "buf"), [meter_device(sim.port)],
                                     password_file=str(secret), stall_after="1s"), scenario)
    misconfigured = seen["misconfigured"]
    assert isinstance(misconfigured, dict) and not misconfigured["ready"]
    assert misconfigured["checks"]["central"].startswith("configuration error: (1142")
    stalled = seen["stalled"]
    assert isinstance(stalled, dict) and stalled["checks"]["central"].startswith("stalled: nothing delivered for")
    snap = seen["snapshot"]
    assert isinstance(snap, dict) and snap["stalled"] and snap["state"] == "misconfigured"
    assert "s3cret" not in str(snap)
    recovered = seen["recovered"]
    assert isinstance(recovered, dict) and recovered["ready"] and recovered["checks"]["central"] == "up"
    rows = query(mariadb_url, "SELECT count(*), count(DISTINCT point, ts) FROM readings")[0]
    assert rows[0] == rows[1] == agent.stats.readings_taken, "everything buffered while refused landed once"
    alerts = dict(query(mariadb_url, "SELECT alert_type, resolved FROM alerts WHERE alert_type IN "
                                     "('central_stalled', 'central_config_error')"))
    assert alerts == {"central_stalled": 1, "central_config_error": 1}, "both raised, both cleared"
    assert agent.stats.write_errors >= 2
    fault_report.append(FaultRow("Central user without INSERT grant, then granted", "GRANT SELECT only",
                                 rows[0], rows[0], 0, 0, None, "/health 503 'configuration error' at once, "
                                 "'stalled' after stall_after; central_config_error and central_stalled alerts; "
                                 "every reading landed after the GRANT"))


def test_wrong_password_is_a_configuration_error_not_an_outage(
        limited_user: tuple[str, Path, str], tmp_path: Path) -> None:
    url, secret, _ = limited_user
    secret.write_text("not-the-password\n")
    seen: dict[str, object] = {}

    async def scenario(agent: Agent) -> None:
        await async_wait_until(lambda: agent.stats.central_state != "starting")
        seen["health"] = await agent.health()
        seen["state"] = agent.stats.central_state

    run_agent(device_map("gw-pw", url, str(tmp_path / "buf"), [], password_file=str(secret)), scenario)
    health = seen["health"]
    assert seen["state"] == "misconfigured"
    assert isinstance(health, dict) and not health["ready"]
    assert "(1045, \"Access denied for user" in health["checks"]["central"]


def _writer_rows(engine: Engine) -> list[tuple[str, str | None]]:
    with engine.connect() as conn:
        return [(r[0], r[1]) for r in conn.execute(text("SELECT point, value_text FROM readings ORDER BY ts"))]


def test_cached_literals_are_right_in_both_backslash_modes(mariadb_url: str) -> None:
    """The MariaDB fast path caches escaped point names; a literal escaped for one mode means something
    else in the other, so the cache follows the server's NO_BACKSLASH_ESCAPES flag."""
    engine = make_engine(CentralConfig(url=mariadb_url))
    migrate.upgrade(engine)
    modes: list[str] = ["default"]

    @event.listens_for(engine, "connect")
    def set_mode(dbapi_connection, record) -> None:  # type: ignore[no-untyped-def]
        if modes[-1] == "no_backslash_escapes":
            with dbapi_connection.cursor() as cur:
                cur.execute("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')")

    writer = CentralWriter(engine, "gw-modes")
    writer.sync_devices([DeviceInfo("plc")])
    tricky = ["back\\slash", "it's", "\\'", "end\\", "%_\\n"]
    written: list[tuple[str, str | None]] = []
    ts = T0
    for mode in ("default", "no_backslash_escapes", "default"):
        modes.append(mode)
        engine.dispose()  # new connections in the new mode; the writer (and its cache) stays
        pack = []
        for name in tricky:
            ts += 1
            pack.append(Reading("plc", name, ts, 1.0, f"{mode}:{name}"))
            written.append((name, f"{mode}:{name}"))
        writer.write(Pack(readings=pack))
    assert _writer_rows(engine) == written
    engine.dispose()


def test_every_opcua_status_name_round_trips_through_the_quality_column(central_url: str) -> None:
    """36 of the non-good names were longer than the old 32-character column: cut in lenient mode,
    refused in strict mode. Every quality the OPC UA driver makes must come back as it went in."""
    engine = make_engine(CentralConfig(url=central_url))
    migrate.upgrade(engine)
    codes = sorted({getattr(ua.StatusCodes, name) for name in dir(ua.StatusCodes) if not name.startswith("_")})
    qualities = sorted({quality_of(ua.StatusCode(code)) for code in codes} - {"good"})
    writer = CentralWriter(engine, "gw-status")
    writer.sync_devices([DeviceInfo("ua")])
    writer.write(Pack(readings=[Reading("ua", "p", T0 + i, None, None, q) for i, q in enumerate(qualities)]))
    with engine.connect() as conn:
        stored = [r[0] for r in conn.execute(text("SELECT quality FROM readings ORDER BY ts"))]
    engine.dispose()
    assert stored == qualities and len(qualities) > 200
    back = {status.value for status in map(status_of, stored) if status is not None}
    assert back == {c & 0xFFFF0000 for c in codes if not ua.StatusCode(c).is_good()}, "each name maps back"
