"""Buffer faults: a full disk, and a damaged buffer file at start."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.buffer.disk import FILE_NAME, DiskBuffer
from agent.pipeline.service import Agent
from drivers.base import Reading
from simulators.server import SimulatorThread
from tests.faults.conftest import FaultRow
from tests.faults.plant import count_rows, plant
from tests.helpers import TcpProxy, async_wait_until, device_map, query, run_agent


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: the buffer's disk really fills up (the tests run as root)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_applies_the_policy_counts_alerts_and_keeps_polling(
        small_disk: Path, mariadb_url: str, mariadb_server: str, fault_report: list[FaultRow]) -> None:
    host, port = mariadb_server.rsplit("@", 1)[1].split(":")
    proxy = TcpProxy(host, int(port))
    helper = SimulatorThread([])
    helper.start()
    helper.call(proxy.start).result(5)
    seen: dict[str, int] = {}
    try:
        with plant(meters=40) as p:
            async def scenario(agent: Agent) -> None:
                await async_wait_until(lambda: agent.stats.rows_written > 500)
                helper.run_sync(proxy.cut)
                await async_wait_until(lambda: agent.stats.readings_dropped > 2000, timeout=120)
                polls = sum(s.polls for s in agent.device_stats.values())
                await asyncio.sleep(2)
                seen["polls_while_full"] = sum(s.polls for s in agent.device_stats.values()) - polls
                helper.run_sync(proxy.restore)
                await async_wait_until(lambda: agent.delivery.buffer is not None
                                       and agent.delivery.buffer.reading_rows < 100, timeout=60)
                await asyncio.sleep(1.5)

            url = mariadb_url.replace(f"{host}:{port}", f"127.0.0.1:{proxy.port}")
            agent = run_agent(device_map("gw-disk", url, str(small_disk / "buf"), p.devices("100ms"),
                                         metrics_interval="1s"), scenario)
            served = p.readings_served()
    finally:
        helper.call(proxy.stop).result(5)
        helper.stop()
    stored, distinct = count_rows(mariadb_url)
    dropped = agent.stats.readings_dropped
    assert seen["polls_while_full"] >= 100, "polling went on while the disk was full"
    assert served == agent.stats.readings_taken
    assert stored == distinct and stored + dropped == served, "every reading is stored or counted as dropped"
    alerts = query(mariadb_url, "SELECT severity FROM alerts WHERE alert_type = 'buffer_overflow'")
    assert alerts == [("critical",)]
    metric = query(mariadb_url, "SELECT max(value) FROM system_metrics WHERE metric_name = 'readings_dropped_total'")
    assert metric[0][0] > 0
    fault_report.append(FaultRow("Buffer disk full", "4 MiB tmpfs under the buffer, MySQL unreachable",
                                 served, stored, served - stored, stored - distinct, None,
                                 f"{dropped} dropped by drop_oldest, counted and alerted; 0 unaccounted"))


def _filled_buffer(directory: Path, rows: int) -> None:
    buf = DiskBuffer(directory, 10**9)
    for start in range(0, rows, 1000):
        buf.put([Reading("meter-01", f"p{i % 10}", 1_700_000_000_000_000 + i * 1000, float(i))
                 for i in range(start, start + 1000)])
    buf.close()


@pytest.mark.parametrize("damage", ["pages overwritten", "whole file garbage"])
def test_damaged_buffer_is_salvaged_and_the_agent_starts(damage: str, tmp_path: Path, sqlite_url: str,
                                                         fault_report: list[FaultRow]) -> None:
    buffer_dir = tmp_path / "buf"
    _filled_buffer(buffer_dir, 20_000)
    path = buffer_dir / FILE_NAME
    size = path.stat().st_size
    with open(path, "r+b") as f:
        if damage == "pages overwritten":
            f.seek(size // 2)
            f.write(os.urandom(3 * 4096))
        else:
            f.write(os.urandom(size))
    with plant(meters=1) as p:
        async def scenario(agent: Agent) -> None:
            await async_wait_until(lambda: agent.delivery.buffer is not None
                                   and agent.delivery.buffer.reading_rows == 0 and agent.stats.rows_written > 0)
            await asyncio.sleep(0.5)

        agent = run_agent(device_map("gw-salvage", sqlite_url, str(buffer_dir), p.devices()), scenario)
    moved = [f for f in buffer_dir.iterdir() if ".corrupt-" in f.name]
    assert moved, "the damaged file is kept aside for inspection"
    salvaged = query(sqlite_url, "SELECT count(*) FROM readings r JOIN devices d ON d.id = r.device_id "
                                 "WHERE d.device_id_str = 'meter-01' AND r.ts < '2024-01-01'")[0][0]
    if damage == "pages overwritten":
        assert 15_000 <= salvaged < 20_000
    else:
        assert salvaged == 0
    alerts = query(sqlite_url, "SELECT severity, message FROM alerts WHERE alert_type = 'buffer_corrupt'")
    assert len(alerts) == 1 and alerts[0][0] == "high" and "moved to" in alerts[0][1]
    assert agent.stats.readings_taken > 0
    fault_report.append(FaultRow(f"Buffer file damaged: {damage}", "random bytes written over the file",
                                 20_000, salvaged, 20_000 - salvaged, 0, None,
                                 f"agent started; {salvaged} rows salvaged and delivered; file moved aside; alerted"))
