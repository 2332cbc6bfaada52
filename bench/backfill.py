"""Backfill: the central MariaDB down for 10 minutes under the scale load, then the catch-up.

The agent polls 500 devices x 20 points every second into a MariaDB server of its own, which is
shut down for ``OUTAGE_S`` and started again. Measured: the backlog at restart, the time until
it is delivered, the rate rows reached MariaDB while catching up as a multiple of the live rate,
and polling (lag, missed cycles) before the outage and during the catch-up.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from bench.load import AgentProcess, Farm, Scrape, cpu_seconds, device_map, window
from simulators.server import free_port
from tests.infra.private_mariadb import PrivateMariaDB

TITLE = "Backfill after a central outage (500 devices x 20 points at 1 s)"
COLUMNS = ["phase", "seconds", "rows written/s", "vs live rate", "missed", "lag p50 ms", "lag p99 ms",
           "agent CPU %", "MariaDB CPU %", "note"]
DEFAULT_SECONDS = 30.0
OUTAGE_S = 600.0
DEVICES, POINTS = 500, 20
#: caught up when less than this many seconds of live readings wait in the buffer
CAUGHT_UP_S = 2.0
SERVER_OPTIONS = ["--innodb-buffer-pool-size=512M", "--innodb-log-file-size=256M"]


def _row(phase: str, w: dict[str, float], live: float, server_cpu: float | None, note: str) -> dict[str, Any]:
    return {"phase": phase, "seconds": w["seconds"], "rows written/s": w["rows_written_per_s"],
            "vs live rate": w["rows_written_per_s"] / live if live else None, "missed": w["missed"],
            "lag p50 ms": w["lag_p50_ms"], "lag p99 ms": w["lag_p99_ms"], "agent CPU %": w["cpu_percent"],
            "MariaDB CPU %": server_cpu, "note": note}


def _server_cpu(server: PrivateMariaDB) -> float:
    assert server.proc is not None
    return cpu_seconds(server.proc.pid)


def run(seconds: float = DEFAULT_SECONDS, outage: float = OUTAGE_S) -> dict[str, Any]:
    """Live window of ``seconds``, an outage of ``outage`` seconds, then the catch-up."""
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        server = PrivateMariaDB(tmp / "mariadb", options=SERVER_OPTIONS)
        server.start()
        server.execute("CREATE DATABASE bench")
        farm = Farm(DEVICES, POINTS, tmp)
        agent: AgentProcess | None = None
        try:
            port = free_port()
            agent = AgentProcess(device_map(farm, server.url("bench"), tmp, 1.0, port), port, tmp)
            time.sleep(10)
            start, s0 = agent.scrape(), _server_cpu(server)
            time.sleep(seconds)
            before, s1 = agent.scrape(), _server_cpu(server)
            live = window(start, before)
            live_server = 100 * (s1 - s0) / live["seconds"]
            server.stop()
            time.sleep(outage)
            down = agent.scrape()
            server.start()
            back, s2 = agent.scrape(), _server_cpu(server)
            backlog = back.values["hacksky_buffer_readings"]
            first_write: Scrape | None = None
            last = back
            while True:
                time.sleep(1.0)
                last = agent.scrape()
                if first_write is None and last.values["hacksky_rows_written_total"] > back.values[
                        "hacksky_rows_written_total"]:
                    first_write = last
                if last.values["hacksky_buffer_readings"] < CAUGHT_UP_S * live["points_per_s"]:
                    break
                if last.at - back.at > 3 * outage:
                    break
            catch_up = window(back, last)
            catch_up_server = 100 * (_server_cpu(server) - s2) / catch_up["seconds"]
        finally:
            if agent is not None:
                agent.stop()
            farm.stop()
            server.stop()
    rate = live["rows_written_per_s"]
    return {
        "outage_s": outage, "backlog_at_restart": backlog, "catch_up_s": last.at - back.at,
        "first_write_after_s": (first_write.at - back.at) if first_write else None,
        "multiple_of_live_rate": catch_up["rows_written_per_s"] / rate if rate else None,
        "results": [
            _row("live, before the outage", live, rate, live_server, f"{live['points_per_s']:,.0f} points/s polled"),
            _row("outage", window(before, down), rate, None,
                 f"MariaDB stopped {outage:.0f} s; {backlog:,.0f} readings buffered on disk"),
            _row("catch-up (server back -> backlog < 2 s of live data)", catch_up, rate, catch_up_server,
                 f"{backlog:,.0f} readings delivered beside live polling"),
        ]}
