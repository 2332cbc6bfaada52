"""Central database faults: killed, read-only, permissions revoked, lock waits -> nothing lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from agent.central.engine import make_engine
from agent.central.migrate import upgrade
from agent.pipeline.service import Agent
from agent.settings import CentralConfig
from tests.faults.conftest import FaultRow
from tests.faults.plant import count_rows, plant
from tests.helpers import async_wait_until, device_map, query, run_agent
from tests.infra.private_mariadb import PrivateMariaDB

EDGE_GRANTS = "GRANT SELECT, INSERT, UPDATE ON hacksky.* TO 'edge'@'127.0.0.1'"


def least_privileged(server: PrivateMariaDB, tmp_path: Path) -> dict[str, str]:
    """Schema created by root; the agent gets an INSERT/SELECT/UPDATE-only user (password from a file)."""
    engine = make_engine(CentralConfig(url=server.url()))
    upgrade(engine)
    engine.dispose()
    server.execute("CREATE USER 'edge'@'127.0.0.1' IDENTIFIED BY 'edge-pw'", EDGE_GRANTS)
    secret = tmp_path / "mysql.pass"
    secret.write_text("edge-pw\n")
    return {"url": server.url(user="edge"), "password_file": str(secret), "auto_migrate": False}


async def drained(agent: Agent, timeout: float = 90) -> float:
    """Seconds until the buffer is (nearly) empty again."""
    started = time.monotonic()
    await async_wait_until(lambda: agent.stats.central_state == "up" and agent.delivery.buffer is not None
                           and agent.delivery.buffer.reading_rows < 200, timeout=timeout)
    return time.monotonic() - started


def outage_run(server: PrivateMariaDB, tmp_path: Path, central: dict[str, str], fault: str, injected: str,
               inject: Callable[[], None], clear: Callable[[], None], report: list[FaultRow],
               outage_s: float = 5.0, state: str = "down", alert_type: str = "central_unavailable") -> None:
    """Load the plant, inject a fault for ``outage_s`` under load, clear it, then count; the writer is in
    ``state`` meanwhile, and ``alert_type`` is raised and resolved."""
    observed: dict[str, float] = {}
    with plant(meters=10) as p:
        async def scenario(agent: Agent) -> None:
            await async_wait_until(lambda: agent.stats.rows_written > 1000)
            await asyncio.to_thread(inject)
            written = agent.stats.rows_written
            await async_wait_until(lambda: agent.stats.central_state == state, timeout=30)
            await asyncio.sleep(outage_s)
            assert agent.delivery.buffer is not None
            observed["buffered"] = agent.delivery.buffer.reading_rows
            observed["written_while_down"] = agent.stats.rows_written - written
            await asyncio.to_thread(clear)
            observed["recovery"] = await drained(agent)
            await async_wait_until(lambda: not any(key.startswith("central/") for key in agent.tracker.open))
            await asyncio.sleep(1.0)

        agent = run_agent(device_map("gw-faults", url=central.pop("url"), buffer=str(tmp_path / "buf"),
                                     devices=p.devices(), batch_size=2000, writer="process", **central), scenario)
        served = p.readings_served()
    total, distinct = count_rows(server.url())
    taken = agent.stats.readings_taken
    assert observed["buffered"] > 500, "polling went on into the buffer while the database was away"
    assert observed["written_while_down"] < 2000  # at most the pack in flight when the fault hit
    assert served == taken, "every reading the simulator served was taken by the agent"
    assert total == distinct == taken, f"lost {taken - distinct}, duplicated {total - distinct}"
    alerts = query(server.url(), f"SELECT resolved FROM alerts WHERE alert_type = '{alert_type}'")
    assert alerts and all(r[0] for r in alerts), "the outage was alerted and the alert resolved"
    report.append(FaultRow(fault, injected, served, total, served - distinct, total - distinct,
                           observed["recovery"], f"{int(observed['buffered'])} readings buffered during it; "
                           f"{sum(s.missed for s in agent.device_stats.values())} poll cycles missed"))


def test_mariadb_killed_under_load_then_restarted(private_mariadb: PrivateMariaDB, tmp_path: Path,
                                                  fault_report: list[FaultRow]) -> None:
    central = least_privileged(private_mariadb, tmp_path)
    outage_run(private_mariadb, tmp_path, central, "MySQL killed (kill -9) under load, restarted",
               "SIGKILL mariadbd for 5 s, restart", private_mariadb.kill9, private_mariadb.start, fault_report)


def test_mariadb_read_only(private_mariadb: PrivateMariaDB, tmp_path: Path, fault_report: list[FaultRow]) -> None:
    central = least_privileged(private_mariadb, tmp_path)
    outage_run(private_mariadb, tmp_path, central, "MySQL read-only", "SET GLOBAL read_only = 1 for 5 s",
               lambda: private_mariadb.execute("SET GLOBAL read_only = 1"),
               lambda: private_mariadb.execute("SET GLOBAL read_only = 0"), fault_report)


def test_insert_permission_revoked(private_mariadb: PrivateMariaDB, tmp_path: Path,
                                   fault_report: list[FaultRow]) -> None:
    central = least_privileged(private_mariadb, tmp_path)

    def revoke() -> None:
        # database-level privileges are cached per session: a DBA revokes, then ends the sessions
        private_mariadb.execute("REVOKE INSERT ON hacksky.* FROM 'edge'@'127.0.0.1'")
        conn = private_mariadb.admin()
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM information_schema.processlist WHERE user = 'edge'")
            for (session,) in cur.fetchall():
                cur.execute(f"KILL {int(session)}")
        conn.close()

    outage_run(private_mariadb, tmp_path, central, "INSERT permission revoked",
               "REVOKE INSERT and kill the sessions, 5 s later GRANT again",
               revoke, lambda: private_mariadb.execute(EDGE_GRANTS), fault_report,
               state="misconfigured", alert_type="central_config_error")


def test_lock_wait_timeouts(private_mariadb: PrivateMariaDB, tmp_path: Path, fault_report: list[FaultRow]) -> None:
    central = least_privileged(private_mariadb, tmp_path)
    private_mariadb.execute("SET GLOBAL innodb_lock_wait_timeout = 1")
    holder: dict[str, object] = {}

    def lock() -> None:
        conn = private_mariadb.admin("hacksky")
        conn.autocommit(False)
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM readings FOR UPDATE")  # locks every gap: inserts wait
        holder["conn"] = conn

    def release() -> None:
        conn = holder.pop("conn")
        conn.rollback()  # type: ignore[attr-defined]
        conn.close()  # type: ignore[attr-defined]

    outage_run(private_mariadb, tmp_path, central, "Lock wait timeouts", "a session holds FOR UPDATE locks for 5 s",
               lock, release, fault_report)
